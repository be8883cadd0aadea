"""Hygiene of the stored notebooks: what nbval would silently skip or what would break the site.

nbval compares only cells that were executed; the website shows the stored outputs as they are.
So every code cell must have run, in order, without errors, and its outputs must not carry
anything machine-specific.
"""

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, toc_files

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_BYTES = 2 * 1024 * 1024  # 2 MB: a lesson page must stay light to load and to diff
MACHINE_PATH = re.compile(r"(/root/|/tmp/|/work/|/home/|/Users/|[A-Z]:\\\\Users)[\w.-]")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


def test_every_notebook_is_in_the_table_of_contents_and_back():
    in_toc = {f for f in toc_files() if f.startswith("notebooks/")}
    on_disk = {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert in_toc == on_disk


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
class TestNotebook:
    def test_cells_executed_in_order(self, path):
        counts = [cell["execution_count"] for cell in code_cells(load(path))]
        assert counts == list(range(1, len(counts) + 1)), (
            f"{path.name}: execution counts {counts}; re-run it top to bottom with "
            f"`make notebooks NB={path.relative_to(ROOT)}`"
        )

    def test_no_stored_errors(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            tags = cell.get("metadata", {}).get("tags", [])
            errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
            assert not errors or "raises-exception" in tags, (
                f"{path.name}: code cell {i} stores an error"
            )

    def test_no_widget_state(self, path):
        assert "widgets" not in load(path).get("metadata", {})

    def test_no_machine_paths_in_outputs(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            text = json.dumps(cell["outputs"])
            match = MACHINE_PATH.search(text)
            assert match is None, f"{path.name}: code cell {i} output holds a path: {match.group()}"

    def test_small_enough(self, path):
        assert path.stat().st_size < MAX_BYTES

    def test_starts_with_one_title(self, path):
        first = load(path)["cells"][0]
        source = "".join(first["source"])
        assert first["cell_type"] == "markdown" and source.startswith("# "), path.name
        markdown = "\n".join(
            "".join(cell["source"])
            for cell in load(path)["cells"]
            if cell["cell_type"] == "markdown"
        )
        prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # code blocks hold comments
        titles = [line for line in prose.splitlines() if line.startswith("# ")]
        assert len(titles) == 1, f"{path.name}: {len(titles)} H1 titles, want one"

    def test_runs_on_the_python3_kernel(self, path):
        assert load(path)["metadata"]["kernelspec"]["name"] == "python3"


def markdown_text(nb: dict) -> str:
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
class TestLessonShape:
    """A lesson for a learner: objectives first, a summary last, bookkeeping out of sight."""

    def test_opens_with_what_you_will_learn(self, path):
        cells = load(path)["cells"]
        opening = "\n".join("".join(c["source"]) for c in cells[:3] if c["cell_type"] == "markdown")
        assert "What you will learn" in opening, f"{path.name}: no 'What you will learn' box"

    def test_closes_with_a_summary(self, path):
        headings = re.findall(r"(?m)^## (.+)$", markdown_text(load(path)))
        assert "Summary" in headings, f"{path.name}: no '## Summary' section"
        last_markdown = [c for c in load(path)["cells"] if c["cell_type"] == "markdown"][-1]
        assert "Summary" in markdown_text({"cells": [last_markdown]}) or headings[-1] == "Summary"

    def test_no_glue_in_shown_code(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            source = "".join(cell["source"])
            tags = cell.get("metadata", {}).get("tags", [])
            if re.search(r"(?m)^\s*glue\(", source):
                assert "remove-input" in tags, f"{path.name}: code cell {i} shows its glue calls"

    def test_nbval_markers_are_tags_not_comments(self, path):
        for i, cell in enumerate(code_cells(load(path))):
            source = "".join(cell["source"])
            assert "NBVAL_" not in source, f"{path.name}: code cell {i} has an nbval comment"

    def test_says_the_original_notes(self, path):
        text = markdown_text(load(path)).lower()
        assert "seed notes" not in text and "the seed" not in text, path.name

    def test_has_at_least_three_checked_exercises(self, path):
        nb = load(path)
        exercises = re.findall(r"\{exercise\}", markdown_text(nb))
        solutions = [c for c in code_cells(nb) if "solution" in c["metadata"].get("tags", [])]
        assert len(exercises) >= 3, f"{path.name}: {len(exercises)} exercises, want 3 or more"
        assert len(solutions) == len(exercises), f"{path.name}: one solution cell per exercise"
        for cell in solutions:
            last = "".join(cell["source"]).strip().splitlines()[-1]
            assert last.startswith("check("), f"{path.name}: a solution cell must end with check"
            shown = json.dumps(cell["outputs"])
            assert "Correct" in shown, f"{path.name}: a stored solution does not pass its check"

    def test_time_estimate_is_glued_not_guessed(self, path):
        # Issue 22: the reading time from the page's words and the run time measured, both glued.
        nb = load(path)
        n = int(path.stem[:2])
        opening = "\n".join("".join(c["source"]) for c in nb["cells"][:3])
        for key in (f"l{n}_reading_minutes", f"l{n}_run_minutes"):
            assert f"{{glue:text}}`{key}" in opening, f"{path.name}: its **Time:** needs {key}"
        sources = [("".join(c["source"]), c) for c in code_cells(nb)]
        assert any("LessonClock()" in s for s, _ in sources[:3]), (
            f"{path.name}: no clock at the top"
        )
        last, cell = sources[-1]
        assert f'glue("l{n}_run_minutes", lesson_clock.minutes()' in last, path.name
        assert "nbval-ignore-output" in cell["metadata"].get("tags", []), path.name

    def test_links_the_glossary_and_which_method_when(self, path):
        text = markdown_text(load(path))
        assert "../book/glossary.md" in text and "../book/which_method.md" in text, path.name


# Phrases of the project's own history, targets and tooling: they belong on the reproduction
# page or in benchmarks/README.md, not in a lesson a learner reads.
PROJECT_LOG_PHRASES = (
    "acceptance target",
    "required target",
    "targets were met",
    "an earlier version",
    "used to call",
    "a test with one input",
    "caught it",
    "this course was built on",
    "an earlier run of this notebook",
    "stored a different",
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lessons_carry_no_project_log(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = " ".join(
        " ".join("".join(c["source"]).split()).lower()
        for c in cells
        if c["cell_type"] == "markdown"
    )
    found = [phrase for phrase in PROJECT_LOG_PHRASES if phrase in text]
    assert not found, f"{path.name} reads like a project log: {found}"
