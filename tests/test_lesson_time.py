"""A lesson's reading time from its words, and its run time from a clock started in its first
cell."""

import json
import time

import pytest
from conftest import ROOT

from tutorlib.perf.lesson_time import (
    WORDS_PER_MINUTE,
    LessonClock,
    prose_words,
    reading_minutes,
)


def _notebook(tmp_path, *markdown: str, code: str = "x = 1") -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [m]} for m in markdown]
    cells.append({"cell_type": "code", "metadata": {}, "source": [code], "outputs": []})
    path = tmp_path / "lesson.ipynb"
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    return path


def test_textbook_case(tmp_path):
    path = _notebook(tmp_path, "Six numbers and {glue:text}`l4_k:.2f` bits.")
    assert prose_words(path) == 5  # Six, numbers, and, the glued value, bits
    path = _notebook(tmp_path, "Six numbers and {glue:text}`l4_k:.2f` bits here.")
    assert prose_words(path) == 6


def test_markup_is_not_read_and_code_is_not_prose(tmp_path):
    text = (
        "```{exercise}\n:label: l1-int8-wrap\n\nWhat does it hold?\n```\nSee {cite:p}`jacob2018`."
    )
    path = _notebook(tmp_path, text, code="many words in code are not prose at all")
    assert prose_words(path) == 5  # What, does, it, hold, See


def test_reading_minutes_is_words_over_the_rate(tmp_path):
    path = _notebook(tmp_path, " ".join(["word"] * 300))
    assert reading_minutes(path) == 300 / WORDS_PER_MINUTE == 2.0
    assert reading_minutes(path, words_per_minute=100) == 3.0


@pytest.mark.parametrize(
    "lesson", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem
)
def test_every_lesson_reads_in_a_plausible_time(lesson):
    # Between a short page and a long chapter: 5 to 90 minutes at 150 words a minute.
    assert 5 <= reading_minutes(lesson) <= 90


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="notebook_path"):
        prose_words(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("not json")
    with pytest.raises(ValueError, match="is not a notebook"):
        prose_words(tmp_path / "bad.ipynb")
    path = _notebook(tmp_path, "a b c")
    with pytest.raises(ValueError, match="words_per_minute"):
        reading_minutes(path, words_per_minute=0)


def test_clock_counts_minutes_from_its_start():
    clock = LessonClock()
    time.sleep(0.05)
    assert 0.05 / 60 <= clock.minutes() < 5 / 60
