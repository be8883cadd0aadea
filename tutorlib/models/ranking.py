"""Lessons 3 to 6: how far a quantized model's embeddings and rankings move from FP32's.

Cosines to a reference, rankings by cosine similarity, and their agreement with FP32's
(right first, top 3, misses). Left out on purpose: retrieval metrics beyond these.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from tutorlib._checks import check_float_tensor, check_int, check_integer_tensor
from tutorlib.models.search_task import SearchTask

__all__ = [
    "cosines_to_reference",
    "rank",
    "RankingComparison",
    "compare_rankings",
    "rankings_table",
    "Miss",
    "find_misses",
    "SearchAgreement",
    "search_agreement",
]


def _check_embeddings(value: object, name: str) -> torch.Tensor:
    """A finite, non-empty (rows, hidden) float tensor of embeddings."""
    tensor = check_float_tensor(value, name)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (sentences, hidden), got shape {tuple(tensor.shape)}")
    return tensor


def cosines_to_reference(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """cos(e_i, r_i) for each row i: how far each embedding turned from the reference's.

    cos(e, r) = e . r / (||e|| ||r||), computed in float64 from the float32 rows.
    Example: e = [[1, 0], [1, 1]], r = [[1, 0], [1, 0]] -> [1.0, 0.7071].
    Returns (n,) float64. NaN or inf rows are refused (their cosine would be NaN).
    """
    embeddings = _check_embeddings(embeddings, "embeddings")
    reference = _check_embeddings(reference, "reference")
    if embeddings.shape != reference.shape:
        raise ValueError(
            f"embeddings {tuple(embeddings.shape)} and reference {tuple(reference.shape)} "
            "must have the same shape: embed the same sentences with both models"
        )
    e = nn.functional.normalize(embeddings.detach().double(), dim=1)
    r = nn.functional.normalize(reference.detach().double(), dim=1)
    return (e * r).sum(dim=1)


def rank(query_embeddings: torch.Tensor, corpus_embeddings: torch.Tensor) -> torch.Tensor:
    """Corpus indices of each query, by descending cosine similarity.

    similarity[i, j] = q_i . c_j / (||q_i|| ||c_j||);  rank[i] = argsort(-similarity[i])

    Returns (n_queries, n_corpus) int64; rank[i, 0] is the best match of query i; ties keep the
    corpus order. NaN or inf embeddings are refused (a NaN similarity has no place in an order).
    Example: q = [[1, 0]], c = [[0, 1], [1, 0], [1, 1]] -> similarities [0, 1, 0.71] -> [[1, 2, 0]].
    """
    query_embeddings = _check_embeddings(query_embeddings, "query_embeddings")
    corpus_embeddings = _check_embeddings(corpus_embeddings, "corpus_embeddings")
    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise ValueError(
            f"Embedding sizes differ: query_embeddings have {query_embeddings.shape[1]}, "
            f"corpus_embeddings {corpus_embeddings.shape[1]}; embed both with the same model."
        )
    queries = nn.functional.normalize(query_embeddings.detach().float(), dim=1)
    corpus = nn.functional.normalize(corpus_embeddings.detach().float(), dim=1)
    similarity = queries @ corpus.T  # (n_queries, n_corpus)
    return torch.argsort(similarity, dim=1, descending=True, stable=True)


@dataclass(frozen=True)
class RankingComparison:
    """How a search ranking changed between FP32 and another precision."""

    top1_accuracy: float  # fraction of queries whose first result is the relevant one
    same_top1: int  # queries with the same first result as the reference
    same_top_k: int  # queries with the same first k results, in the same order
    same_full_ranking: int  # queries with the same order over the whole corpus
    n_queries: int


def _check_ranking(value: object, name: str) -> torch.Tensor:
    """A non-empty (n_queries, n_corpus) integer tensor of corpus indices in [0, n_corpus)."""
    ranking = check_integer_tensor(value, name)
    if ranking.ndim != 2 or ranking.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D ranking (n_queries, n_corpus) as rank returns, "
            f"got shape {tuple(ranking.shape)}"
        )
    if bool(((ranking < 0) | (ranking >= ranking.shape[1])).any()):
        raise ValueError(f"{name} must hold corpus indices in [0, {ranking.shape[1] - 1}]")
    return ranking


def _check_relevant(relevant: object, n_queries: int, n_corpus: int) -> torch.Tensor:
    """One corpus index (an int in [0, n_corpus)) per query, as an int64 tensor."""
    if torch.is_tensor(relevant):
        relevant = check_integer_tensor(relevant, "relevant").tolist()
    if isinstance(relevant, str) or not isinstance(relevant, Sequence):
        raise TypeError(f"relevant must be a sequence of corpus indices, got {relevant!r}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in relevant):
        raise TypeError(f"relevant must hold ints (corpus indices), got {list(relevant)!r}")
    if len(relevant) != n_queries:
        raise ValueError(f"relevant needs one index per query: {n_queries}, got {len(relevant)}")
    if not all(0 <= i < n_corpus for i in relevant):
        raise ValueError(f"relevant must hold corpus indices in [0, {n_corpus - 1}]")
    return torch.tensor(relevant, dtype=torch.int64)


def compare_rankings(
    reference: torch.Tensor, other: torch.Tensor, relevant: Sequence[int], k: int = 5
) -> RankingComparison:
    """Compare two (n_queries, n_corpus) rankings, best first, and score `other` on `relevant`.

    top-1 accuracy = mean_i [other_i0 == relevant_i]; same top-k counts the queries whose first
    k indices are equal in both rankings, in the same order.
    Example: reference [[0, 1, 2]], other [[0, 2, 1]], relevant [0], k=1 ->
    top-1 accuracy 1.0, same top-1 1, same top-k 1, same full ranking 0.
    """
    reference, other = _check_ranking(reference, "reference"), _check_ranking(other, "other")
    if reference.shape != other.shape:
        raise ValueError(
            f"reference {tuple(reference.shape)} and other {tuple(other.shape)} must have the "
            "same shape (n_queries, n_corpus): rank the same queries over the same corpus"
        )
    n_queries, n_corpus = reference.shape
    hits = other[:, 0] == _check_relevant(relevant, n_queries, n_corpus)  # (n_queries,)
    k = check_int(k, "k", minimum=1, maximum=n_corpus)
    same = reference == other  # (n_queries, n_corpus)
    return RankingComparison(
        top1_accuracy=hits.double().mean().item(),
        same_top1=int(same[:, 0].sum()),
        same_top_k=int(same[:, :k].all(dim=1).sum()),
        same_full_ranking=int(same.all(dim=1).sum()),
        n_queries=n_queries,
    )


def rankings_table(
    rankings: dict[str, torch.Tensor], relevant: Sequence[int], k: int = 5
) -> pd.DataFrame:
    """compare_rankings of every ranking against the first one, as a table with one row each.

    Columns: "right answer first" (queries whose first result is the relevant one), and the
    queries whose top 1, top k and whole order are the same as the first ranking's.
    Example: {"float32": r, "bfloat16": r} -> two rows, every count equal to the query count.
    """
    if not isinstance(rankings, dict) or not rankings:
        raise TypeError("rankings must be a non-empty dict {name: ranking from rank}")
    reference = next(iter(rankings.values()))
    rows = {}
    for name, ranking in rankings.items():
        result = compare_rankings(reference, ranking, relevant, k=k)
        rows[name] = {
            "right answer first": round(result.top1_accuracy * result.n_queries),
            "same top-1": result.same_top1,
            f"same top-{k}": result.same_top_k,
            "same whole order": result.same_full_ranking,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


@dataclass(frozen=True)
class Miss:
    """A query whose first search result is not its right answer."""

    query: str
    ranked_first: str  # the corpus sentence the search put first
    right_answer: str
    right_answer_position: int  # 1 for first place


def find_misses(ranking: torch.Tensor, task: SearchTask) -> list[Miss]:
    """The queries of `task` whose first result in `ranking` (from rank) is not the relevant one.

    position of the right answer = 1 + its index in the query's row of the ranking.
    Example: a query ranked [4, 7, ...] whose right answer is sentence 7 -> a Miss at position 2.
    """
    if not isinstance(task, SearchTask):
        raise TypeError(
            f"task must be a SearchTask (from load_search_task), got {type(task).__name__}"
        )
    ranking = _check_ranking(ranking, "ranking")
    if ranking.shape != (len(task.queries), len(task.corpus)):
        raise ValueError(
            f"ranking must have shape ({len(task.queries)}, {len(task.corpus)}) for this task, "
            f"got {tuple(ranking.shape)}"
        )
    misses = []
    for order, query, relevant in zip(ranking.tolist(), task.queries, task.relevant, strict=True):
        if order[0] != relevant:
            misses.append(
                Miss(query, task.corpus[order[0]], task.corpus[relevant], order.index(relevant) + 1)
            )
    return misses


@dataclass(frozen=True)
class SearchAgreement:
    """How a quantized model's search compares with FP32's (as in Lessons 3 to 5)."""

    min_cosine: float  # the smallest cosine between a sentence's embedding and its FP32 one
    right_first: int  # queries whose first result is the right answer
    same_top3: int  # queries whose first three results are FP32's, in the same order
    n_queries: int

    def as_row(self) -> dict[str, float | int]:
        """The columns of the lessons' tables: smallest cosine, right answer first, same top 3.

        Example: {"smallest cosine": 0.955, "right answer first": 9, "same top 3 as FP32": 6}.
        """
        return {
            "smallest cosine": self.min_cosine,
            "right answer first": self.right_first,
            "same top 3 as FP32": self.same_top3,
        }


def search_agreement(
    embeddings: torch.Tensor, reference: torch.Tensor, task: SearchTask
) -> SearchAgreement:
    """Score the embeddings of search_sentences(task) against FP32's (`reference`).

    min_cosine = min_i cos(e_i, r_i); the queries' rankings over the corpus are compared with
    compare_rankings(k=3). Example: FP32 against itself on the course's task: min_cosine 1.0,
    right_first 10 of 12, same_top3 12.
    """
    if not isinstance(task, SearchTask):
        raise TypeError(
            f"task must be a SearchTask (load_search_task()), got {type(task).__name__}"
        )
    n_corpus, n_sentences = len(task.corpus), len(task.corpus) + len(task.queries)
    for name, value in (("embeddings", embeddings), ("reference", reference)):
        check_float_tensor(value, name)
        if value.ndim != 2 or value.shape[0] != n_sentences:
            raise ValueError(
                f"{name} must be ({n_sentences}, hidden): one row per sentence of "
                f"search_sentences(task), got {tuple(value.shape)}"
            )
    cosines = cosines_to_reference(embeddings, reference)
    ranking = rank(embeddings[n_corpus:], embeddings[:n_corpus])
    fp32_ranking = rank(reference[n_corpus:], reference[:n_corpus])
    comparison = compare_rankings(fp32_ranking, ranking, task.relevant, k=3)
    return SearchAgreement(
        min_cosine=cosines.min().item(),
        right_first=round(comparison.top1_accuracy * comparison.n_queries),
        same_top3=comparison.same_top_k,
        n_queries=comparison.n_queries,
    )
