"""Lessons 3 to 6: the course's search task: a corpus, queries and their relevant passages.

Written for this course (tutorlib/data/search_task.json). Left out on purpose: public
benchmarks, which would need a download.
"""

import json
from dataclasses import dataclass

from tutorlib._loading import data_file

__all__ = ["SearchTask", "load_search_task", "search_sentences"]


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
