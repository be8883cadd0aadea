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
