"""Lesson 6: the course's calibration sentences.

48 sentences written for this course on topics the search task does not touch, so that a model
calibrated on them is evaluated on sentences it never saw.
"""

import json

from tutorlib._loading import data_file

__all__ = ["load_calibration_sentences"]


def load_calibration_sentences() -> list[str]:
    """The 48 calibration sentences of tutorlib/data/calibration_sentences.json.

    Written for this course on topics the search task does not touch (glaciers, trains, chess,
    recipes, ...), so that a model calibrated on them is evaluated on sentences it never saw.
    """
    data = json.loads(data_file("calibration_sentences.json").read_text(encoding="utf-8"))
    return list(data["sentences"])
