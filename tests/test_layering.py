"""The package's layers: each subpackage imports only the ones below it, and a lesson loads only
what it uses.

tutorlib/__init__.py draws the layers: _checks and _loading (private), then formats, quant,
layers, models, perf, and plotting and exercises on top. Every `import` and `from ... import`
of every module, at the top or inside a function, is read with ast and must point to the same
layer or one below. Lesson 1 imports the number formats, the exercises and the figures; in a
fresh process that must load neither transformers nor optimum-quanto. `python -X importtime`
on an AMD EPYC (2 cores, torch 2.13): Lesson 1's number formats import in about 1.8 s, nearly
all of it torch (1.5 s) and pandas (0.35 s); optimum.quanto would add about 2.4 s, and the
transformers package alone about 0.9 s.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tutorlib"
# rank of each top-level part of tutorlib: a module may import its own rank or a lower one
RANK = {
    "_checks": 0,
    "_loading": 0,
    "formats": 1,
    "quant": 2,
    "layers": 3,
    "models": 4,
    "perf": 5,
    "plotting": 6,
    "exercises": 6,
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__")


def _part(module: str) -> str:
    """'tutorlib.quant.affine' -> 'quant'; 'tutorlib._checks' -> '_checks'."""
    return module.split(".")[1]


def _tutorlib_imports(path: Path) -> list[str]:
    """Every tutorlib module this file imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tutorlib."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("tutorlib.")]
    return found


def test_every_part_of_the_package_has_a_rank() -> None:
    parts = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert parts <= set(RANK) | {"__init__"}, parts - set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = [m for m in _tutorlib_imports(path) if RANK[_part(m)] > RANK[own]]
    sideways = [
        m for m in _tutorlib_imports(path) if RANK[_part(m)] == RANK[own] and _part(m) != own
    ]
    assert not upward, f"{path.name} ({own}) imports from a higher layer: {upward}"
    assert not sideways, f"{path.name} ({own}) imports from a sibling on top: {sideways}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # the test above can fail: a quant module that imports a layer is caught
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tutorlib.layers.w8a8 import W8A8Linear\n")
    (module,) = _tutorlib_imports(bad)
    assert RANK[_part(module)] > RANK["quant"]


def _modules_loaded_by(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the heavy libraries it loaded."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'transformers', 'optimum', 'sklearn', 'skimage', 'safetensors', 'gguf'})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _notebook_imports(name: str) -> str:
    """The `from tutorlib... import ...` lines of a lesson's code cells."""
    cells = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            tree = ast.parse("".join(cell["source"]).replace("%matplotlib inline", ""))
            lines += [ast.unparse(n) for n in tree.body if isinstance(n, ast.ImportFrom)]
    return "\n".join(line for line in lines if "tutorlib" in line)


@pytest.mark.parametrize("lesson", ["01_tensor_types.ipynb", "02_downcasting_error.ipynb"])
def test_lessons_1_and_2_load_no_model_library(lesson: str) -> None:
    code = _notebook_imports(lesson)
    assert "tutorlib.formats" in code  # the lesson's own imports were found
    assert _modules_loaded_by(code) == []


def test_the_figures_and_exercises_of_lesson_1_load_nothing_of_lesson_5() -> None:
    code = (
        "from tutorlib.plotting import plot_spacing\n"
        "from tutorlib.exercises import check\n"
        "check('l1-packed-bytes', None)\n"
        "import sys; assert 'tutorlib.perf.benchmark' not in sys.modules"
    )
    assert _modules_loaded_by(code) == []


# A module holds one idea: past this many lines it holds two, and is split (issue 19's bar).
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_holds_one_idea(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines: split it by idea"
