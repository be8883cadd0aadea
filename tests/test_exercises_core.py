"""The exercise machinery: the registry, check, Feedback's display, placeholders and errors."""

import re
from pathlib import Path

import pytest

import tutorlib.exercises
from tutorlib.exercises import EXERCISES, Exercise, Feedback, check
from tutorlib.exercises.core import NOT_SOLVED, register

FUNCTION_IDS = [i for i, e in EXERCISES.items() if callable(e.solution)]
LESSON_MODULES = sorted(Path(tutorlib.exercises.__file__).parent.glob("lesson*.py"))


def stub(*args):
    """A function whose body is `...`: what a learner copy holds."""
    ...


def no_return(*args):
    args_seen = len(args)  # noqa: F841 (a body that forgets to return)


def test_exports():
    assert tutorlib.exercises.__all__ == ["EXERCISES", "Exercise", "Feedback", "check"]


@pytest.mark.parametrize("lesson", [1, 2, 3, 4, 5, 6, 7])
def test_at_least_three_exercises_per_lesson(lesson):
    assert sum(e.lesson == lesson for e in EXERCISES.values()) >= 3


def test_every_lesson_module_registers_exercises():
    lessons = {int(re.fullmatch(r"lesson(\d+)", p.stem).group(1)) for p in LESSON_MODULES}
    assert lessons == {e.lesson for e in EXERCISES.values()}


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_ids_and_prompts(exercise_id):
    exercise = EXERCISES[exercise_id]
    assert exercise.id == exercise_id and exercise_id.startswith(f"l{exercise.lesson}-")
    assert "\n" not in exercise.prompt and len(exercise.prompt) <= 100


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_reference_solution_passes(exercise_id):
    feedback = check(exercise_id, EXERCISES[exercise_id].solution)
    assert feedback.passed, feedback.message


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
@pytest.mark.parametrize("placeholder", [None, ...], ids=["None", "Ellipsis"])
def test_placeholders_are_not_solved_yet(exercise_id, placeholder):
    assert check(exercise_id, placeholder) == Feedback(False, NOT_SOLVED)


@pytest.mark.parametrize("exercise_id", FUNCTION_IDS)
@pytest.mark.parametrize("function", [stub, no_return], ids=["stub", "no-return"])
def test_empty_functions_are_not_solved_yet(exercise_id, function):
    assert check(exercise_id, function) == Feedback(False, NOT_SOLVED)


@pytest.mark.parametrize("exercise_id", FUNCTION_IDS)
def test_a_raising_function_gets_the_exception_named(exercise_id):
    def broken(*args):
        raise KeyError("oops")

    feedback = check(exercise_id, broken)
    assert not feedback.passed
    assert feedback.message.startswith("your function raised KeyError: 'oops' (on the hidden case")


@pytest.mark.parametrize("exercise_id", FUNCTION_IDS)
def test_a_value_where_a_function_is_asked(exercise_id):
    feedback = check(exercise_id, 42)
    assert not feedback.passed and "asks for a function" in feedback.message


def test_a_function_where_a_value_is_asked():
    feedback = check("l2-ones-stall", lambda: 256)
    assert not feedback.passed and "not a function" in feedback.message


def test_unknown_id_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown exercise id 'l9-nope'.*l1-integer-range"):
        check("l9-nope", 1)


def test_feedback_display_is_deterministic():
    right, wrong = Feedback(True, "s = 4/255."), Feedback(False, "divide by 2^k - 1.")
    assert repr(right) == "✅ Correct: s = 4/255."
    assert repr(wrong) == "❌ Not yet: divide by 2^k - 1."
    assert right._repr_markdown_() == "**✅ Correct:** s = 4/255."


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_messages_are_the_same_on_every_run(exercise_id):
    solution = EXERCISES[exercise_id].solution
    assert repr(check(exercise_id, solution)) == repr(check(exercise_id, solution))
    assert " at 0x" not in repr(check(exercise_id, solution))


def test_checking_leaves_the_global_random_state_alone():
    import torch

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for exercise_id, exercise in EXERCISES.items():
        check(exercise_id, exercise.solution)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "exercise, message",
    [
        (Exercise("l4-scale-zero-point", 4, "p", 1, str), "registered twice"),
        (Exercise("L4 scale", 4, "p", 1, str), "must read 'l4-words-with-dashes'"),
        (Exercise("l3-scale", 4, "p", 1, str), "must read 'l4-words-with-dashes'"),
    ],
    ids=["duplicate", "badly-formed", "wrong-lesson"],
)
def test_register_refuses_bad_ids(exercise, message):
    with pytest.raises(ValueError, match=message):
        register(exercise)


def test_an_id_that_is_not_a_string_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="exercise_id must be"):
        check(["l1-integer-range"], 1)


@pytest.mark.parametrize("lesson", [1, 2, 3, 4, 5, 6, 7])
def test_at_least_half_of_a_lessons_exercises_make_the_learner_think(lesson):
    # Issue 22's mix: predictions and reasoning, not only formulas transcribed into functions.
    kinds = [e.kind for e in EXERCISES.values() if e.lesson == lesson]
    thinking = sum(kind in ("predict", "reason") for kind in kinds)
    assert 2 * thinking >= len(kinds), f"lesson {lesson}: {kinds}"


def test_an_exercise_of_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        Exercise("l1-x", 1, "p", 1, str, kind="transcribe")
