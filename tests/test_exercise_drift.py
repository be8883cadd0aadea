"""Each exercise's solution is written twice: keep the notebook's copy and the reference equal.

A learner reads the solution cell in the notebook; ``check`` compares their answer with the
reference solution registered in ``tutorlib/exercises/lessonN.py``. For a function answer, the
cell's definition and the reference's must be the same syntax tree, docstring included (``ast.dump``
leaves out only line and column numbers), with the same comments (which the tree drops). For a
value answer, the cell's arithmetic must give exactly the registered value: the values are integers
or short binary fractions computed by the same formula, so no tolerance is needed.

The same cells are turned into stubs in the learner copies, so their names belong to them alone:
every function a solution cell defines is named ``my_...`` (it can never shadow tutorlib's), and no
other code cell binds or reads a name that a solution cell defines or assigns.
"""

import ast
import difflib
import inspect
import io
import json
import re
import tokenize
from pathlib import Path

import pytest
from conftest import ROOT

from tutorlib.exercises import EXERCISES
from tutorlib.exercises.learner_copies import SOLUTION_TAG

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _is_solution(cell: dict) -> bool:
    return cell["cell_type"] == "code" and SOLUTION_TAG in cell["metadata"].get("tags", [])


def _parse_code(source: str) -> ast.Module:
    """A code cell's statements, with IPython's line magics (``%matplotlib``) left out."""
    return ast.parse("\n".join(line for line in source.splitlines() if not line.startswith("%")))


def _checked(tree: ast.Module) -> tuple[str, str]:
    """(exercise id, answer name) of a solution cell's last statement, check("<id>", name)."""
    last = tree.body[-1]
    call = last.value if isinstance(last, ast.Expr) else None
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check", (
        'a solution cell must end with check("<id>", answer)'
    )
    exercise_id, answer = call.args
    assert isinstance(exercise_id, ast.Constant) and isinstance(answer, ast.Name), ast.unparse(call)
    return exercise_id.value, answer.id


SOLUTIONS = [
    (path, index, *_checked(ast.parse(_source(cell))))
    for path in NOTEBOOKS
    for index, cell in enumerate(_cells(path))
    if _is_solution(cell)
]
SOLUTION_IDS = [f"{path.stem[:2]}-{exercise_id}" for path, _, exercise_id, _ in SOLUTIONS]


def _comments(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [token.string for token in tokens if token.type == tokenize.COMMENT]


def _drift_message(where: str, cell_text: str, reference: object) -> str:
    reference_name = f"{reference.__module__}.{reference.__name__}"
    diff = difflib.unified_diff(
        inspect.getsource(reference).splitlines(),
        cell_text.splitlines(),
        reference_name,
        where,
        lineterm="",
    )
    return (
        f"{where} and {reference_name} differ; make them equal (the notebook is what learners "
        "read):\n" + "\n".join(diff)
    )


def test_every_exercise_has_one_solution_cell_in_its_lesson():
    ids = [exercise_id for _, _, exercise_id, _ in SOLUTIONS]
    assert sorted(ids) == sorted(EXERCISES), "one solution cell per registered exercise"
    for path, _, exercise_id, _ in SOLUTIONS:
        assert int(path.stem[:2]) == EXERCISES[exercise_id].lesson, (path.name, exercise_id)


@pytest.mark.parametrize("path, index, exercise_id, answer", SOLUTIONS, ids=SOLUTION_IDS)
def test_solution_cell_is_the_reference_solution(path, index, exercise_id, answer):
    source = _source(_cells(path)[index])
    tree = ast.parse(source)
    where = f"notebooks/{path.name} cell {index}"
    reference = EXERCISES[exercise_id].solution
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if not callable(reference):
        assert not functions, f"{where}: {exercise_id} asks for a value, not a function"
        namespace: dict = {}
        exec(compile(ast.Module(tree.body[:-1], type_ignores=[]), where, "exec"), namespace)
        value = namespace[answer]
        assert (value, type(value)) == (reference, type(reference)), (
            f"{where} computes {answer} = {value!r}, but {exercise_id}'s registered answer is "
            f"{reference!r}; make them equal"
        )
        return
    assert [f.name for f in functions] == [answer] == [reference.__name__], (
        f"{where} should define one function, {reference.__name__}, and check it"
    )
    cell_text = "\n".join(source.splitlines()[functions[0].lineno - 1 : functions[0].end_lineno])
    reference_tree = ast.parse(inspect.getsource(reference)).body[0]
    same_code = ast.dump(functions[0]) == ast.dump(reference_tree)
    same_comments = _comments(cell_text) == _comments(inspect.getsource(reference))
    assert same_code and same_comments, _drift_message(where, cell_text, reference)


@pytest.mark.parametrize("path, index, exercise_id, answer", SOLUTIONS, ids=SOLUTION_IDS)
def test_the_exercise_directive_gives_the_registered_prompt(path, index, exercise_id, answer):
    before = [_source(cell) for cell in _cells(path)[:index] if cell["cell_type"] == "markdown"]
    directives = [text for text in before if re.search(rf":label: {exercise_id}\n", text)]
    assert directives and "{exercise}" in directives[-1], f"{path.name}: no {exercise_id} directive"
    assert EXERCISES[exercise_id].prompt in directives[-1], (
        f"{path.name}: the {{exercise}} directive of {exercise_id} should state its prompt, "
        f"{EXERCISES[exercise_id].prompt!r}"
    )
    if callable(EXERCISES[exercise_id].solution):
        assert f"Complete `{answer}`" in directives[-1], f"{path.name}: name `{answer}`"


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a cell binds at the notebook's top level: assignments, defs, classes, imports."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        else:
            names |= {
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and type(n.ctx) is ast.Store
            }
    return names


def _stubbed_names(tree: ast.Module) -> set[str]:
    """What a learner copy turns into a stub: a solution cell's functions and assigned names."""
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return _top_level_names(ast.Module([n for n in tree.body if n not in imports], []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solution_names_are_the_learners_alone(path):
    trees = {
        index: (_is_solution(cell), _parse_code(_source(cell)))
        for index, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code"
    }
    stubbed = set().union(*(_stubbed_names(tree) for solution, tree in trees.values() if solution))
    functions = {
        node.name
        for solution, tree in trees.values()
        if solution
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    assert all(name.startswith("my_") for name in functions), (
        f"{path.name}: name every exercise function my_..., so that it never shadows tutorlib's: "
        f"{sorted(n for n in functions if not n.startswith('my_'))}"
    )
    for index, (solution, tree) in trees.items():
        if solution:
            continue
        read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        clash = stubbed & (_top_level_names(tree) | read)
        assert not clash, (
            f"{path.name}: cell {index} binds or reads {sorted(clash)}, which a solution cell "
            "defines; in the learner copy that name is a stub (use tutorlib's function there)"
        )
