"""Tests of Lesson 1's figures: what the boxes and lines show, not that they merely render."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from tutorlib.dtypes import smallest_subnormal, spacing
from tutorlib.plotting import plot_bit_layouts, plot_spacing

LAYOUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn)


@pytest.fixture
def bit_layouts():
    fig = plot_bit_layouts(LAYOUT_DTYPES)
    yield fig
    plt.close(fig)


def test_one_box_per_bit_in_every_row(bit_layouts):
    ax = bit_layouts.axes[0]
    boxes = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert len(boxes) == 32 + 16 + 16 + 8
    boxes_in_bfloat16_row = [box for box in boxes if round(box.get_y() + 0.35) == 2]
    assert len(boxes_in_bfloat16_row) == 16


def test_field_counts_are_labelled(bit_layouts):
    ax = bit_layouts.axes[0]
    labels = [text.get_text() for text in ax.texts]
    # sign | exponent | mantissa for float32, float16, bfloat16, float8_e4m3fn, in drawing order
    assert labels == ["1", "8", "23", "1", "5", "10", "1", "8", "7", "1", "4", "3"]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == [
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
    ]
    assert "8 exponent bits" in ax.get_title()
    assert "bits" in ax.get_xlabel()


def test_spacing_lines_are_the_computed_gaps():
    dtypes = (torch.float32, torch.bfloat16, torch.float16)
    fig = plot_spacing(dtypes, points=300)
    ax_gap, ax_relative = fig.axes
    assert [line.get_label() for line in ax_gap.get_lines()] == ["float32", "bfloat16", "float16"]
    for dtype, line, relative in zip(
        dtypes, ax_gap.get_lines(), ax_relative.get_lines(), strict=True
    ):
        magnitudes, gaps = line.get_xdata(), line.get_ydata()
        assert magnitudes[0] == pytest.approx(smallest_subnormal(dtype))
        assert magnitudes[-1] == pytest.approx(torch.finfo(dtype).max)
        np.testing.assert_array_equal(gaps, spacing(torch.from_numpy(magnitudes), dtype).numpy())
        np.testing.assert_allclose(relative.get_ydata(), gaps / magnitudes)
    assert ax_gap.get_xscale() == ax_gap.get_yscale() == "log"
    assert "gap" in ax_gap.get_ylabel() and "|x|" in ax_relative.get_xlabel()
    assert "bfloat16" in ax_gap.get_title()
    plt.close(fig)
