"""Tests of Lesson 1's figures: what the boxes and lines show, not that they merely render."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from tutorlib.formats.float_bits import smallest_subnormal, spacing
from tutorlib.plotting import plot_bit_layouts, plot_spacing
from tutorlib.plotting.lesson1 import ZOOM_MAGNITUDES

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


SPACING_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn)


@pytest.fixture(scope="module")
def spacing_figure():
    fig = plot_spacing(SPACING_DTYPES, points=300)
    yield fig
    plt.close(fig)


def _panels(fig):
    (ax_gap, ax_zoom_gap), (ax_relative, ax_zoom_relative) = np.reshape(fig.axes, (2, 2))
    return ax_gap, ax_zoom_gap, ax_relative, ax_zoom_relative


def test_spacing_lines_are_the_computed_gaps(spacing_figure):
    ax_gap, _, ax_relative, _ = _panels(spacing_figure)
    names = ["float32", "bfloat16", "float16", "float8_e4m3fn"]
    assert [line.get_label() for line in ax_gap.get_lines()] == names
    for dtype, line, relative in zip(
        SPACING_DTYPES, ax_gap.get_lines(), ax_relative.get_lines(), strict=True
    ):
        magnitudes, gaps = line.get_xdata(), line.get_ydata()
        assert magnitudes[0] == pytest.approx(smallest_subnormal(dtype))
        assert magnitudes[-1] == pytest.approx(torch.finfo(dtype).max)
        np.testing.assert_array_equal(gaps, spacing(torch.from_numpy(magnitudes), dtype).numpy())
        np.testing.assert_allclose(relative.get_ydata(), gaps / magnitudes)
    assert ax_gap.get_xscale() == ax_gap.get_yscale() == "log"
    assert "gap" in ax_gap.get_ylabel() and "|x|" in ax_relative.get_xlabel()
    assert "bfloat16" in spacing_figure.get_suptitle()


def test_zoomed_panels_show_the_small_formats_within_the_zoom(spacing_figure):
    _, ax_zoom_gap, _, ax_zoom_relative = _panels(spacing_figure)
    low, high = ZOOM_MAGNITUDES
    assert ax_zoom_gap.get_xlim() == pytest.approx((low, high))
    assert "zoom" in ax_zoom_gap.get_title()
    for dtype, line, relative in zip(
        SPACING_DTYPES, ax_zoom_gap.get_lines(), ax_zoom_relative.get_lines(), strict=True
    ):
        magnitudes, gaps = line.get_xdata(), line.get_ydata()
        # each line runs over the part of its dtype's range inside the zoom, with every sample
        assert len(magnitudes) == 300
        assert magnitudes[0] == pytest.approx(max(low, smallest_subnormal(dtype)))
        assert magnitudes[-1] == pytest.approx(min(high, torch.finfo(dtype).max))
        np.testing.assert_array_equal(gaps, spacing(torch.from_numpy(magnitudes), dtype).numpy())
        np.testing.assert_allclose(relative.get_ydata(), gaps / magnitudes)
    # float16 spans 12 of the zoom's 15 decades, against 12 of 83 in the full panel
    float16 = ax_zoom_gap.get_lines()[2].get_xdata()
    assert np.log10(float16[-1] / float16[0]) / np.log10(high / low) > 0.75


def test_the_zoomed_window_is_marked_on_the_full_panels(spacing_figure):
    ax_gap, _, ax_relative, _ = _panels(spacing_figure)
    for ax in (ax_gap, ax_relative):
        (window,) = ax.patches
        x0, x1 = window.get_x(), window.get_x() + window.get_width()
        assert (x0, x1) == pytest.approx(ZOOM_MAGNITUDES)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"dtypes": None}, TypeError, "dtypes"),
        ({"dtypes": ()}, ValueError, "dtypes"),
        ({"dtypes": (torch.int8,)}, ValueError, "dtypes"),
        ({"points": 1}, ValueError, "points"),
        ({"points": 2.5}, TypeError, "points"),
    ],
    ids=["dtypes-none", "dtypes-empty", "dtypes-int8", "points-1", "points-float"],
)
def test_plot_spacing_names_a_bad_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        plot_spacing(**kwargs)


def test_plot_bit_layouts_names_a_bad_argument():
    with pytest.raises(ValueError, match="dtypes"):
        plot_bit_layouts((torch.float32, None))
