"""Exercises with instant feedback for every lesson, and the learner copies of the notebooks.

``check("l4-scale-zero-point", my_function)`` runs the exercise's checker on the learner's answer
and returns a ``Feedback`` that shows as "✅ Correct: ..." or "❌ Not yet: ..." in a notebook.
Each lesson's exercises live in their own module, ``lesson1`` ... ``lessonN``, which registers
them in ``EXERCISES`` when imported; ``check`` and ``EXERCISES`` import a lesson's module the
first time one of its ids is used, so that importing this package loads no lesson's
dependencies.
``learner_copies`` turns the notebooks into copies with the solutions replaced by stubs.

Leaves out: grading and progress tracking; every check runs in the learner's own kernel.
"""

from tutorlib.exercises.core import EXERCISES, Exercise, Feedback, check

__all__ = ["EXERCISES", "Exercise", "Feedback", "check"]
