"""Tests of tutorlib.models.corpus (Lesson 7): a pinned English extract, split without overlap.

The token counts under SmolLM2's tokenizer are checked in test_smollm2.py, where the tokenizer
is already loaded.
"""

import hashlib

import pytest

from tutorlib.models import corpus
from tutorlib.models.corpus import CORPUS_SHA256, NUMPY_VERSION, load_corpus, numpy_docstrings


def test_the_extract_is_the_pinned_one() -> None:
    docs = numpy_docstrings()
    assert len(docs) == 168 and sum(len(doc) for doc in docs) == 99_750
    assert hashlib.sha256("\n\n".join(docs).encode("utf-8")).hexdigest() == CORPUS_SHA256
    assert docs[0].startswith("Flat iterator object to iterate over arrays.")


def test_docstrings_are_prose_without_examples() -> None:
    docs = numpy_docstrings()
    assert len(set(docs)) == len(docs)
    assert not any("\nExamples\n--------" in doc for doc in docs)
    # The code lived in the Examples sections; two Notes sections keep a short snippet each.
    assert sum(">>> " in doc for doc in docs) == 2
    assert all(doc == doc.strip() and not doc.startswith(" ") for doc in docs)


def test_calibration_and_evaluation_are_disjoint_halves() -> None:
    split = load_corpus()
    calibration = split.calibration.split("\n\n")
    evaluation = split.evaluation.split("\n\n")
    docs = numpy_docstrings()
    # The two parts are consecutive runs of whole docstrings, in file order, none in both.
    assert split.calibration + "\n\n" + split.evaluation == "\n\n".join(docs)
    in_calibration = [doc for doc in docs if doc in split.calibration]
    in_evaluation = [doc for doc in docs if doc in split.evaluation]
    assert not set(in_calibration) & set(in_evaluation)
    assert len(in_calibration) + len(in_evaluation) == len(docs)
    assert len(calibration) > 1 and len(evaluation) > 1
    total = len(split.calibration) + len(split.evaluation)
    assert 0.45 < len(split.calibration) / total < 0.6
    assert split.source == "numpy 2.4.6, numpy/_core/_add_newdocs.py (BSD-3-Clause)"


def test_another_numpy_or_a_changed_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.numpy, "__version__", "2.5.0")
    with pytest.raises(ValueError, match=f"numpy 2.5.0 is installed.*numpy=={NUMPY_VERSION}"):
        load_corpus()
    monkeypatch.setattr(corpus.numpy, "__version__", NUMPY_VERSION)
    monkeypatch.setattr(corpus, "numpy_docstrings", lambda: ("An edited docstring.",))
    with pytest.raises(ValueError, match="SHA-256 mismatch for the numpy docstring extract"):
        load_corpus()
