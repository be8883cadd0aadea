"""Lesson 7: English text to score a language model on, from a package the course installs.

The text is numpy's reference documentation of ndarray and its methods: the docstrings that
numpy 2.4.6 writes in numpy/_core/_add_newdocs.py (BSD-3-Clause, the same file in every wheel,
Linux and macOS alike), read from the source with `ast` and cleaned with inspect.cleandoc, each
without its Examples section (code, not prose). The extract is pinned by numpy's version and by
its SHA-256; it is split into calibration text and evaluation text that share no docstring.

Left out on purpose: literary prose (no pinned PyPI package was found that ships a
public-domain book; Debian's jargon-text and dict-devil do, on Linux only), any download, and
text in other languages.
"""

import ast
import hashlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy

__all__ = ["NUMPY_VERSION", "CORPUS_SHA256", "Corpus", "numpy_docstrings", "load_corpus"]

NUMPY_VERSION = "2.4.6"  # requirements.txt pins it; another version has other docstrings
# SHA-256 of "\n\n".join(numpy_docstrings()) encoded as UTF-8, for numpy 2.4.6.
CORPUS_SHA256 = "123118b5d8151d22670957a44e719eee8051935e59c9024b9e76db69d23ffd74"

_SOURCE = Path(numpy.__file__).parent / "_core" / "_add_newdocs.py"
_EXAMPLES = re.compile(r"\nExamples\n-{3,}\n")  # numpydoc's section heading


@dataclass(frozen=True)
class Corpus:
    """Calibration text and evaluation text, disjoint, with where they came from."""

    calibration: str
    evaluation: str
    source: str


def _docstring(call: ast.Call) -> str | None:
    """The literal docstring of add_newdoc(module, name, doc) or of (attribute, doc), if any."""
    doc = call.args[-1] if call.args else None
    if isinstance(doc, ast.Tuple) and doc.elts:
        doc = doc.elts[-1]
    is_text = isinstance(doc, ast.Constant) and isinstance(doc.value, str)
    return doc.value if is_text else None


def numpy_docstrings() -> tuple[str, ...]:
    """numpy's ndarray docstrings in file order: dedented, Examples cut, empty and repeats dropped.

    Docstrings built at import time (an f-string, a variable) are skipped: only the literal
    text of the file counts, so the extract depends on numpy's version and nothing else.
    Example (numpy 2.4.6): 168 docstrings, 99,750 characters; the first begins "Flat iterator
    object to iterate over arrays."
    """
    calls = [
        node
        for node in ast.walk(ast.parse(_SOURCE.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "add_newdoc"
    ]
    docs = (_docstring(call) for call in sorted(calls, key=lambda call: call.lineno))
    prose = (_EXAMPLES.split(inspect.cleandoc(doc))[0].strip() for doc in docs if doc)
    return tuple(dict.fromkeys(text for text in prose if text))  # dict: ordered, unique


def load_corpus() -> Corpus:
    """The pinned extract, checked by SHA-256, split at a docstring boundary near its middle.

    calibration = the first docstrings up to half of the characters, evaluation = the rest;
    no docstring is in both. Raises ValueError if numpy is not 2.4.6 or the extract changed.
    Example: 13,835 and 13,351 tokens under SmolLM2's tokenizer, both above the 4,097 ids
    (4,096 scored) that the lesson evaluates.
    """
    if numpy.__version__ != NUMPY_VERSION:
        raise ValueError(
            f"the corpus is numpy {NUMPY_VERSION}'s docstrings, but numpy {numpy.__version__} is "
            f"installed; install the course's version: pip install numpy=={NUMPY_VERSION}"
        )
    docs = numpy_docstrings()
    digest = hashlib.sha256("\n\n".join(docs).encode("utf-8")).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(
            f"SHA-256 mismatch for the numpy docstring extract: expected {CORPUS_SHA256}, got "
            f"{digest}. numpy's files were changed; reinstall: pip install --force-reinstall "
            f"numpy=={NUMPY_VERSION}"
        )
    lengths = [len(doc) for doc in docs]
    split = next(i for i in range(len(docs)) if sum(lengths[: i + 1]) >= sum(lengths) / 2)
    source = f"numpy {NUMPY_VERSION}, numpy/_core/_add_newdocs.py (BSD-3-Clause)"
    return Corpus("\n\n".join(docs[: split + 1]), "\n\n".join(docs[split + 1 :]), source)
