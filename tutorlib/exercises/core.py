"""Exercises with instant feedback: the registry, ``check`` and the helpers every checker shares.

An exercise asks for a value or a function. Its checker runs the learner's answer on hidden
cases (seeded random inputs and edges such as constants, zeros, negative values, other shapes and
bit widths) and compares the result with the reference solution; when they differ, it compares
the result with what each common mistake would give, so that the feedback names the mistake.

Leaves out: grading, timing limits and sandboxing. A learner's function runs in the notebook's
own process, like any other cell.
"""

import importlib
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "EXERCISES",
    "KINDS",
    "NOT_SOLVED",
    "Exercise",
    "Feedback",
    "Wrong",
    "NotSolved",
    "register",
    "check",
    "call",
    "expect_callable",
    "expect_number",
    "expect_integer",
    "expect_pair",
    "expect_tensor",
    "first_match",
    "verify",
    "describe",
    "same_number",
    "same_tensor",
]

# What an exercise asks of the learner: write a function that derives a formula, predict a number
# before running, or reason to a choice (which output is which, where the bug is, which method).
KINDS = ("derive", "predict", "reason")

NOT_SOLVED = "not solved yet: replace the `...` with your answer, then run this cell again."
_ID = re.compile(r"l\d+-[a-z0-9]+(-[a-z0-9]+)*")  # e.g. "l4-scale-zero-point"


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: passed or not, and a sentence that says why.

    Shows as the last expression of a notebook cell: "✅ Correct: ..." or "❌ Not yet: ...".
    The text is deterministic (no addresses, timings or unseeded numbers), so nbval can compare it.
    Example: Feedback(True, "s = 4/255 for r in [-1, 3].") shows as
    "✅ Correct: s = 4/255 for r in [-1, 3]."
    """

    passed: bool
    message: str

    @property
    def headline(self) -> str:
        """'✅ Correct' or '❌ Not yet'."""
        return "✅ Correct" if self.passed else "❌ Not yet"

    def __repr__(self) -> str:
        return f"{self.headline}: {self.message}"

    def _repr_markdown_(self) -> str:
        return f"**{self.headline}:** {self.message}"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its lesson, a one-line prompt, the reference solution and its checker.

    ``solution`` is what the learner is asked for (a value or a function); ``checker`` takes the
    learner's answer and returns a success message, or raises ``Wrong`` (or ``NotSolved``).
    ``kind`` says what the learner does (``KINDS``): "derive" a formula as a function,
    "predict" a number before the lesson's code shows it, or "reason" to a choice or a diagnosis.
    Example: Exercise("l2-ones-stall", 2, "Where does a bfloat16 running sum of ones stop?",
    256, checker, kind="predict") with checker(256) == "256 + 1 = 257 is a tie ...".
    """

    id: str
    lesson: int
    prompt: str
    solution: object
    checker: Callable[[object], str]
    kind: str = "derive"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


class Wrong(Exception):
    """Raised by a checker with the message that explains what is wrong with the answer."""


class NotSolved(Exception):
    """Raised by a checker when the answer is a placeholder (None, ..., a stub function)."""


_REGISTRY: dict[str, Exercise] = {}


class _Exercises(Mapping):
    """Every exercise by id, read-only. A lesson's module (``tutorlib.exercises.lessonN``, which
    registers its exercises when imported) is imported the first time one of its ids is asked
    for, so importing tutorlib.exercises loads no lesson's dependencies (Lesson 5's checkers
    need the profiling layer, Lesson 1's only the number formats)."""

    def __getitem__(self, exercise_id: str) -> Exercise:
        _load_lesson_of(exercise_id)
        return _REGISTRY[exercise_id]

    def __iter__(self):
        _load_every_lesson()
        return iter(dict(_REGISTRY))

    def __len__(self) -> int:
        _load_every_lesson()
        return len(_REGISTRY)

    def __contains__(self, exercise_id: object) -> bool:
        if isinstance(exercise_id, str):
            _load_lesson_of(exercise_id)
        return exercise_id in _REGISTRY


def _lesson_modules() -> list[str]:
    package = Path(__file__).resolve().parent
    return sorted(p.stem for p in package.glob("lesson*.py"))


def _load_lesson_of(exercise_id: str) -> None:
    """Import the lesson module that registers `exercise_id` ("l4-..." -> lesson4), if any."""
    lesson = re.match(r"l(\d+)-", exercise_id) if isinstance(exercise_id, str) else None
    if lesson and f"lesson{lesson[1]}" in _lesson_modules():
        importlib.import_module(f"tutorlib.exercises.lesson{lesson[1]}")


def _load_every_lesson() -> None:
    for name in _lesson_modules():
        importlib.import_module(f"tutorlib.exercises.{name}")


EXERCISES: Mapping[str, Exercise] = _Exercises()  # read-only, lessons loaded on first use


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to ``EXERCISES`` (each lesson module registers its own at import).

    The id reads "l<lesson>-<words-with-dashes>" and must be new; its number must be the lesson's.
    Example: register(Exercise("l6-gptq-order", 6, ...)) makes check("l6-gptq-order", ...) work.
    """
    if not _ID.fullmatch(exercise.id) or not exercise.id.startswith(f"l{exercise.lesson}-"):
        raise ValueError(
            f"exercise id {exercise.id!r} must read 'l{exercise.lesson}-words-with-dashes' "
            "(lowercase, starting with its lesson number)"
        )
    if exercise.id in _REGISTRY:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice; pick a new id")
    _REGISTRY[exercise.id] = exercise
    return exercise


def check(exercise_id: str, answer: object) -> Feedback:
    """Run the exercise's checker on ``answer`` and return its ``Feedback``.

    None, ``...`` and a function that returns nothing (a stub whose body is ``...``) give
    "not solved yet"; a learner's function that raises gives a message naming the exception.
    Example: check("l2-ones-stall", 256) -> ✅ Correct: ...; check("l2-ones-stall", ...) ->
    ❌ Not yet: not solved yet: ...
    """
    if not isinstance(exercise_id, str):
        raise TypeError(
            f"exercise_id must be the exercise's id as a str, e.g. 'l2-ones-stall', got "
            f"{type(exercise_id).__name__} {exercise_id!r:.60}"
        )
    if exercise_id not in EXERCISES:
        valid = ", ".join(sorted(EXERCISES))
        raise ValueError(f"unknown exercise id {exercise_id!r}; the valid ids are: {valid}")
    if answer is None or answer is Ellipsis:
        return Feedback(False, NOT_SOLVED)
    try:
        return Feedback(True, _REGISTRY[exercise_id].checker(answer))
    except NotSolved:
        return Feedback(False, NOT_SOLVED)
    except Wrong as wrong:
        return Feedback(False, str(wrong))


# ---------------------------------------------------------------- helpers for the checkers


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed`: each checker's cases draw from their own."""
    return torch.Generator().manual_seed(seed)


def _clone(value: object) -> object:
    """A copy of a tensor argument, so that a learner's in-place edit cannot touch the cases."""
    return value.clone() if isinstance(value, torch.Tensor) else value


def call(function: Callable, *args: object, case: str) -> object:
    """The learner's ``function(*args)``, with placeholders and exceptions turned into feedback.

    Returns the result; raises NotSolved if it is None or ``...`` (a stub or a missing
    ``return``), and Wrong naming the exception if the function raised, on which ``case``.
    Example: call(lambda bits: 2**bits - 1, 8, case="bits=8") -> 255.
    """
    try:
        result = function(*(_clone(arg) for arg in args))
    except Exception as error:  # the learner's code: any exception becomes feedback
        raise Wrong(
            f"your function raised {type(error).__name__}: {error} (on the hidden case {case})"
        ) from None
    if result is None or result is Ellipsis:
        raise NotSolved
    return result


def expect_callable(answer: object, example: str) -> Callable:
    """The answer itself, if it is a function; otherwise Wrong with how to pass one."""
    if not callable(answer):
        raise Wrong(
            f"this exercise asks for a function, got {type(answer).__name__}; pass the function "
            f"itself, without calling it: {example}"
        )
    return answer


def expect_number(value: object, what: str = "the answer") -> float:
    """A Python float from a number or a one-element tensor; Wrong for anything else."""
    if callable(value):
        raise Wrong(f"{what} should be a number, not a function; call it or write the number")
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Wrong(f"{what} should be a number, got {type(value).__name__} {value!r:.60}")
    return float(value)


def expect_pair(value: object, first: str, second: str) -> tuple[object, object]:
    """The two items of a returned pair (a tuple or a list of two); Wrong for anything else.

    Example: expect_pair((0.1, 64), "scale", "zero_point") -> (0.1, 64); expect_pair(0.1, ...)
    raises Wrong("return a pair (scale, zero_point), got float 0.1").
    """
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise Wrong(f"return a pair ({first}, {second}), got {type(value).__name__} {value!r:.60}")
    return value[0], value[1]


def expect_integer(value: object, what: str = "the answer") -> int:
    """A Python int from an integer or a one-element integer tensor; Wrong for floats and others.

    Example: expect_integer(torch.tensor(64)) -> 64; expect_integer(63.75) raises Wrong.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact, even beyond 2**53
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    number = expect_number(value, what)
    is_float = isinstance(value, float) or (
        isinstance(value, torch.Tensor) and value.is_floating_point()
    )
    if is_float or not math.isfinite(number) or number != int(number):
        raise Wrong(f"{what} should be an integer, got {value!r:.60}; round it and make it an int")
    return int(number)


def expect_tensor(
    value: object,
    shape: tuple[int, ...],
    what: str,
    dtype: torch.dtype | None = None,
    integer: bool = False,
) -> torch.Tensor:
    """The value if it is a tensor of ``shape`` (and ``dtype``, or an integer dtype); else Wrong.

    Example: expect_tensor(torch.zeros(2, 3), (2, 3), "q", integer=True) raises Wrong: q should
    hold integers.
    """
    if not isinstance(value, torch.Tensor):
        raise Wrong(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise Wrong(f"{what} should have shape {tuple(shape)}, got {tuple(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        raise Wrong(f"{what} should have dtype {dtype}, got {value.dtype}; convert with .to()")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise Wrong(
            f"{what} should hold integers, got dtype {value.dtype}; convert the rounded values "
            "with .to(torch.int32)"
        )
    return value


def first_match(
    got: object, mistakes: list[tuple[object, str]], same: Callable[[object, object], bool]
) -> str | None:
    """The message of the first mistake whose output is ``same`` as ``got``, or None.

    Each mistake is (what that mistake would return on this case, the message that names it).
    Example: first_match(256, [(255, "2**k - 1 ..."), (256, "2**k instead ...")], eq) ->
    "2**k instead ...".
    """
    for mistaken, message in mistakes:
        if same(got, mistaken):
            return message
    return None


def describe(value: object) -> str:
    """A short deterministic text for a value in a message: numbers to 6 significant digits,
    small tensors in full, large tensors by shape, dtype and their first values.

    Example: describe(torch.tensor([0.5, 2.0])) -> "tensor([0.5, 2]) (torch.float32)".
    """
    if isinstance(value, torch.Tensor):
        flat = [f"{v:.6g}" for v in value.detach().flatten()[:6].double().tolist()]
        if value.numel() <= 6 and value.ndim <= 1:
            return f"tensor([{', '.join(flat)}]) ({value.dtype})"
        return f"a {value.dtype} tensor of shape {tuple(value.shape)} starting {', '.join(flat)}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return f"{value!r:.80}"


def verify(
    got: object,
    expected: object,
    mistakes: list[tuple[object, str]],
    same: Callable[[object, object], bool],
    case: str,
) -> None:
    """Return if ``got`` is ``same`` as ``expected``; else raise Wrong naming the mistake.

    The message is the first matching mistake's, or else both values, with the hidden case.
    Example: verify(256, 255, [(256, "2**k instead of 2**k - 1")], eq, "bits=8") raises
    Wrong("2**k instead of 2**k - 1 (on the hidden case bits=8)").
    """
    if same(got, expected):
        return
    message = first_match(got, mistakes, same)
    if message is not None:
        raise Wrong(f"{message} (on the hidden case {case})")
    raise Wrong(
        f"on the hidden case {case} your answer gave {describe(got)}, "
        f"but the right result is {describe(expected)}"
    )


def same_number(rel_tol: float = 0.0, abs_tol: float = 0.0) -> Callable[[object, object], bool]:
    """A comparison of two numbers within math.isclose's tolerances (exact by default).

    Non-numbers compare unequal. Example: same_number(abs_tol=0.005)(3.02, 3.0238) -> True.
    """

    def same(a: object, b: object) -> bool:
        try:
            a, b = expect_number(a), expect_number(b)
        except Wrong:
            return False
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)

    return same


def same_tensor(rtol: float = 0.0, atol: float = 0.0) -> Callable[[object, object], bool]:
    """A comparison of two tensors of the same shape, elementwise within rtol and atol.

    |a - b| <= atol + rtol * |b|, computed in float64; exact (integers) by default.
    Example: same_tensor(rtol=1e-6)(torch.tensor([1.0]), torch.tensor([1.0000001])) -> True.
    """

    def same(a: object, b: object) -> bool:
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            return False
        if a.shape != b.shape or a.is_complex() or b.is_complex():
            return False
        return torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)

    return same
