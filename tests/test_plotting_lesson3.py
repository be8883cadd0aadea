"""Tests of Lesson 3's figures: what they show, not only that they draw."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tutorlib.plotting import plot_embedding_cosines, plot_logit_differences


@pytest.fixture
def differences() -> dict[str, torch.Tensor]:
    return {
        "bfloat16": torch.full((10,), 1e-2),
        "float16": torch.tensor([1e-3] * 9 + [0.0]),  # one logit exactly equal to FP32
    }


def test_logit_differences_figure(differences) -> None:
    fig = plot_logit_differences(differences)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert "logit difference to FP32" in ax.get_xlabel()
    assert ax.get_ylabel() == "fraction of the logits"
    assert "Largest mean change: bfloat16 (1.0e-02)" in ax.get_title()
    assert "smallest: float16 (9.0e-04)" in ax.get_title()
    # One outline per set; all ten bfloat16 differences fall in one bin: its peak is 1.
    assert len(ax.patches) == 2
    assert ax.patches[0].get_path().vertices[:, 1].max() == pytest.approx(1.0)
    # The exact zero cannot sit on the log axis: the legend counts it.
    labels = ax.get_legend_handles_labels()[1]
    assert "float16 (1 of 10 exactly 0)" in labels
    assert "notes' mean (BF16) = 0.00022" in labels and "notes' max (BF16) = 0.00061" in labels
    assert ax.get_xlim()[0] > 1e-4  # the axis starts near the smallest non-zero difference


def test_logit_differences_reference_lines(differences) -> None:
    fig = plot_logit_differences(differences, reference_lines={"bound": 0.5})
    lines = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(lines) == 1 and np.allclose(lines[0].get_xdata(), 0.5)


def test_embedding_cosines_figure() -> None:
    cosines = {"bfloat16": torch.tensor([0.9999, 0.99995]), "float16": torch.tensor([1.0, 1.0])}
    fig = plot_embedding_cosines(cosines)
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["bfloat16", "float16"]
    assert ax.get_xscale() == "log"
    assert "bfloat16 0.999900" in ax.get_title() and "float16 1.000000" in ax.get_title()
    # One dot per sentence, x = 1 - cosine (the exact ones at the 1e-9 floor).
    offsets = [collection.get_offsets()[:, 0] for collection in ax.collections]
    np.testing.assert_allclose(sorted(offsets[0]), [5e-5, 1e-4], rtol=1e-3)
    np.testing.assert_allclose(offsets[1], [1e-9, 1e-9])


@pytest.mark.parametrize(
    ("differences", "error", "match"),
    [
        ({}, TypeError, "differences must be a non-empty dict"),
        ({"bfloat16": torch.zeros(4)}, ValueError, "some of them positive"),
        ({"bfloat16": torch.tensor([-1.0, 1.0])}, ValueError, "absolute differences"),
        ({"bfloat16": torch.tensor([float("nan"), 1.0])}, ValueError, "contains NaN"),
    ],
    ids=["empty", "all-zero", "negative", "nan"],
)
def test_logit_differences_bad_input(differences, error, match) -> None:
    with pytest.raises(error, match=match):
        plot_logit_differences(differences)


def test_embedding_cosines_bad_input() -> None:
    with pytest.raises(TypeError, match="cosines must be a non-empty dict"):
        plot_embedding_cosines([torch.ones(3)])
