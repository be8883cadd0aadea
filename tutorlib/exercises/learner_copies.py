"""Learner copies of the notebooks: every solution replaced by a stub that still runs.

A code cell tagged ``solution`` keeps its imports, the signature lines and docstring of each
function (with ``...`` as the body), ``name = ...`` for each assigned value, and its final
``check(...)`` line, so the learner sees "not solved yet" until they write the answer. Every
code cell loses its outputs and execution count. Pure functions on nbformat dicts, plus a
command line: ``python -m tutorlib.exercises.learner_copies SRC_DIR OUT_DIR``.

Leaves out: removing the solution prose (the ``{solution-start}`` ... ``{solution-end}`` markdown
cells stay; they hold no code) and any other statement in a solution cell, which is refused.
"""

import ast
import copy
import json
import sys
from pathlib import Path

__all__ = ["SOLUTION_TAG", "stub_source", "learner_notebook", "write_learner_copies", "main"]

SOLUTION_TAG = "solution"


def _function_stub(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Decorators, signature and docstring of a function, with ``...`` as its body."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    body = node.body[0]
    if body.lineno == node.lineno:
        raise ValueError(
            f"function {node.name!r} has its body on the def line; put the body on its own lines"
        )
    indent = " " * body.col_offset
    has_docstring = isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant)
    has_docstring = has_docstring and isinstance(body.value.value, str)
    last = body.end_lineno if has_docstring else body.lineno - 1
    return [*lines[first - 1 : last], f"{indent}..."]


def _assigned_name(node: ast.stmt) -> str | None:
    """The name an ``x = ...`` or ``x: T = ...`` statement assigns, or None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _is_check_call(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name | ast.Attribute)
        and (getattr(node.value.func, "id", None) or node.value.func.attr) == "check"
    )


def stub_source(source: str) -> str:
    """The learner's version of a solution cell's code.

    Imports stay; a function keeps its signature and docstring with body ``...``; ``x = <expr>``
    becomes ``x = ...``; the last statement must be the ``check(...)`` call, which stays.
    Example: 'import math\\ndef f(x):\\n    return 2 * x\\ncheck("l1-id", f)' becomes
    'import math\\n\\ndef f(x):\\n    ...\\n\\ncheck("l1-id", f)'.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise ValueError(f"a solution cell must be plain Python (no magics): {error}") from None
    if not tree.body or not _is_check_call(tree.body[-1]):
        raise ValueError('a solution cell must end with its check("<id>", answer) call')
    lines = source.splitlines()
    blocks: list[tuple[bool, list[str]]] = []  # (is a function, its lines)
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) or node is tree.body[-1]:
            blocks.append((False, lines[node.lineno - 1 : node.end_lineno]))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            blocks.append((True, _function_stub(lines, node)))
        elif _assigned_name(node) is not None:
            blocks.append((False, [f"{_assigned_name(node)} = ..."]))
        else:
            kind = type(node).__name__
            raise ValueError(
                f"line {node.lineno} of a solution cell is a {kind} statement, which cannot be "
                "turned into a stub; keep only imports, functions, `name = value` and the check"
            )
    out = list(blocks[0][1])
    for (was_function, _), (is_function, block) in zip(blocks, blocks[1:], strict=False):
        out += ([""] if was_function or is_function else []) + block  # a blank line around defs
    return "\n".join(out)


def learner_notebook(notebook: dict) -> dict:
    """A copy of an nbformat dict with every ``solution`` cell stubbed and every output cleared.

    Example: a code cell tagged "solution" holding 'answer = 256\\ncheck("l2-ones-stall",
    answer)' becomes 'answer = ...\\ncheck("l2-ones-stall", answer)', with no outputs.
    """
    copied = copy.deepcopy(notebook)
    for index, cell in enumerate(copied["cells"]):
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                cell["source"] = stub_source(source)
            except ValueError as error:
                raise ValueError(f"cell {index}: {error}") from None
    return copied


def write_learner_copies(src_dir: Path, out_dir: Path) -> list[Path]:
    """Write the learner copy of every ``src_dir/*.ipynb`` to ``out_dir`` under the same name.

    Example: write_learner_copies(Path("notebooks"), Path("_build/exercises")) ->
    [_build/exercises/01_tensor_types.ipynb, ...].
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob("*.ipynb"))
    if not sources:
        raise ValueError(f"no notebooks (*.ipynb) in {src_dir}; pass the notebooks directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        try:
            copy_ = learner_notebook(json.loads(source.read_text(encoding="utf-8")))
        except ValueError as error:
            raise ValueError(f"{source.name}: {error}") from None
        target = out_dir / source.name
        target.write_text(json.dumps(copy_, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tutorlib.exercises.learner_copies SRC_DIR OUT_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m tutorlib.exercises.learner_copies SRC_DIR OUT_DIR\n")
        return 2
    written = write_learner_copies(Path(args[0]), Path(args[1]))
    sys.stderr.write(f"wrote {len(written)} learner copies to {args[1]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
