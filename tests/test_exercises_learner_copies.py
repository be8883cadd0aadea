"""Learner copies: solution cells become stubs that still run, and every output is cleared."""

import json

import nbformat
import pytest

from tutorlib.exercises import check
from tutorlib.exercises.learner_copies import learner_notebook, stub_source, write_learner_copies

SOLUTION_FUNCTION = '''import torch


def my_pairwise_sum(terms: torch.Tensor) -> torch.Tensor:
    """Sum by halves.

    sum(t) = sum(first half) + sum(second half).
    """
    n = terms.shape[0]
    if n == 1:
        return terms[0]
    return my_pairwise_sum(terms[: n // 2]) + my_pairwise_sum(terms[n // 2 :])


check("l2-pairwise-sum", my_pairwise_sum)'''

STUB_FUNCTION = '''import torch

def my_pairwise_sum(terms: torch.Tensor) -> torch.Tensor:
    """Sum by halves.

    sum(t) = sum(first half) + sum(second half).
    """
    ...

check("l2-pairwise-sum", my_pairwise_sum)'''


def synthetic_notebook() -> dict:
    """Prose, an ordinary code cell, a value answer and a function answer, executed."""
    nb = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output("execute_result", {"text/plain": "✅ Correct: 256 ..."})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Lesson\n\n```{exercise}\n:label: l2-ones-stall\n```"),
        nbformat.v4.new_code_cell("from tutorlib.exercises import check\nx = 1", execution_count=1),
        nbformat.v4.new_code_cell(
            'answer = 2**8  # the stall\ncheck("l2-ones-stall", answer)',
            execution_count=2,
            outputs=[output],
            metadata={"tags": ["solution"]},
        ),
        nbformat.v4.new_code_cell(
            SOLUTION_FUNCTION, execution_count=3, metadata={"tags": ["solution"]}
        ),
    ]
    return nb


def test_value_and_function_stubs():
    assert stub_source('answer = 2**8\ncheck("l2-ones-stall", answer)') == (
        'answer = ...\ncheck("l2-ones-stall", answer)'
    )
    assert stub_source(SOLUTION_FUNCTION) == STUB_FUNCTION


def test_learner_notebook_stubs_solutions_and_clears_outputs():
    original = synthetic_notebook()
    learner = learner_notebook(original)
    sources = [cell["source"] for cell in learner["cells"]]
    assert sources[:2] == [original.cells[0].source, original.cells[1].source]
    assert sources[2:] == ['answer = ...\ncheck("l2-ones-stall", answer)', STUB_FUNCTION]
    for cell in learner["cells"][1:]:
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert original.cells[2].outputs, "the original notebook must not change"
    nbformat.validate(nbformat.from_dict(learner))


def test_learner_cells_run_and_say_not_solved_yet():
    cells = learner_notebook(synthetic_notebook())["cells"]
    namespace: dict = {}
    exec(cells[1]["source"], namespace)  # the ordinary cell: imports check
    results = []
    for cell in cells[2:]:
        *body, last = cell["source"].splitlines()
        exec("\n".join(body), namespace)  # the cell's statements, then its last expression
        results.append(eval(last, namespace))
    assert [repr(feedback) for feedback in results] == [
        "❌ Not yet: not solved yet: replace the `...` with your answer, then run this cell again."
    ] * 2


def test_write_learner_copies(tmp_path):
    source_dir, out_dir = tmp_path / "notebooks", tmp_path / "out"
    source_dir.mkdir()
    nbformat.write(synthetic_notebook(), source_dir / "02_lesson.ipynb")
    written = write_learner_copies(source_dir, out_dir)
    assert written == [out_dir / "02_lesson.ipynb"]
    learner = json.loads(written[0].read_text())
    assert learner["cells"][2]["source"] == 'answer = ...\ncheck("l2-ones-stall", answer)'


def test_real_solution_code_passes_its_check():
    namespace: dict = {}
    exec(SOLUTION_FUNCTION.rsplit("\n", 1)[0], namespace)
    assert check("l2-pairwise-sum", namespace["my_pairwise_sum"]).passed


@pytest.mark.parametrize(
    "source, message",
    [
        ("answer = 1", "must end with its check"),
        ("for i in range(3):\n    pass\ncheck('l2-gamma', f)", "For statement"),
        ("%time x = 1\ncheck('l2-gamma', x)", "plain Python"),
        ("def f(x): return x\ncheck('l2-gamma', f)", "body on the def line"),
    ],
    ids=["no-check", "loop", "magic", "one-line-def"],
)
def test_unstubbable_cells_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        stub_source(source)


def test_the_refusal_names_the_cell(tmp_path):
    nb = synthetic_notebook()
    nb.cells[3].source = "print(1)\ncheck('l2-gamma', 1)"
    with pytest.raises(ValueError, match="cell 3: line 1 of a solution cell is a Expr"):
        learner_notebook(nb)
