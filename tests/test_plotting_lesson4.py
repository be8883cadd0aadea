"""Tests of Lesson 4's figures: what each one draws and what its title states."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tutorlib.plotting import (
    plot_clipping_sweep,
    plot_sqnr_vs_bits,
    plot_weight_histogram_with_grid,
)
from tutorlib.quant.clipping import clipping_sweep
from tutorlib.quant.params import get_scale_and_zero_point


def test_histogram_draws_one_line_per_grid_level():
    weights = torch.tensor([-1.0, -0.1, 0.0, 0.0, 0.1, 0.2, 2.0])
    params = get_scale_and_zero_point(weights, bits=2)  # s = 1, z = 1
    fig = plot_weight_histogram_with_grid(weights, params)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    levels = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert levels == pytest.approx([-1.0, 0.0, 1.0, 2.0])  # s * (q - z) for q = 0..3
    # 5 of the 7 weights round to level 0.0; 90% (6.3 weights) need 3 levels: 0, -1 and 2
    assert ax.get_title() == "2-bit grid: 3 of its 4 levels hold 90% of the weights"
    assert "weight value" in ax.get_xlabel()
    assert ax.get_yscale() == "log"


def test_sqnr_figure_draws_each_scheme_and_the_rule():
    bits = [2, 4, 6, 8]
    curves = {"per-tensor": [1.0, 10.0, 20.0, 30.0], "per-channel": [5.0, 17.0, 29.0, 41.0]}
    fig = plot_sqnr_vs_bits(bits, curves)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"per-tensor", "per-channel", "6.02 dB per bit"}
    assert list(lines["per-channel"].get_ydata()) == curves["per-channel"]
    rule = lines["6.02 dB per bit"].get_ydata()
    assert rule[-1] == 41.0  # through the last scheme's 8-bit point
    assert rule[-1] - rule[0] == pytest.approx(6 * 20 * math.log10(2))
    assert ax.get_title() == "per-channel: 6.00 dB per bit from 4 to 8 bits (rule: 6.02)"
    assert ax.get_ylabel() == "SQNR (dB)"


def test_clipping_figure_marks_the_best_threshold():
    r = torch.randn(2048, generator=torch.Generator().manual_seed(0))
    r[0] = 40.0  # one far outlier: clipping it pays at 4 bits
    thresholds, sqnr_db = clipping_sweep(r, bits=4, n_thresholds=50)
    fig = plot_clipping_sweep(thresholds, sqnr_db, bits=4)
    ax = fig.axes[0]
    best = next(line for line in ax.get_lines() if line.get_label() == "best threshold")
    assert best.get_ydata()[0] == pytest.approx(sqnr_db.max().item())
    assert best.get_xdata()[0] < 1.0
    best_ratio = thresholds[sqnr_db.argmax()] / thresholds[-1]
    assert ax.get_title().startswith(f"Clipping at {best_ratio:.0%} of max|w|")
    assert np.isclose(ax.get_lines()[0].get_xdata()[-1], 1.0)


def test_sqnr_figure_without_two_widths_from_4_bits_has_no_slope():
    fig = plot_sqnr_vs_bits([2, 3], {"per-tensor": [1.0, 5.0]})
    assert fig.axes[0].get_title() == "SQNR against bit width (rule: 6.02 dB per bit)"


@pytest.mark.parametrize(
    ("bits", "curves", "match"),
    [
        ([2, 4, None], {"a": [1.0, 2.0, 3.0]}, "bits"),
        ([2, 4, 8], {"a": [1.0, 2.0]}, "sqnr_db"),
        ([2, 4, 8], {"a": [1.0, float("nan"), 3.0]}, "sqnr_db"),
        ([2, 4, 8], {}, "sqnr_db"),
    ],
    ids=["none-in-bits", "too-few-values", "nan", "no-curve"],
)
def test_sqnr_figure_refuses_inconsistent_curves(bits, curves, match):
    with pytest.raises((TypeError, ValueError), match=match):
        plot_sqnr_vs_bits(bits, curves)


def test_clipping_figure_refuses_mismatched_sweeps_and_takes_grad_tensors():
    thresholds = torch.linspace(0.5, 3.0, 10)
    with pytest.raises(ValueError, match="sqnr_db"):
        plot_clipping_sweep(thresholds, torch.ones(9), bits=4)
    with pytest.raises(ValueError, match="sqnr_db"):
        plot_clipping_sweep(thresholds, torch.full((10,), float("inf")), bits=4)
    fig = plot_clipping_sweep(thresholds, torch.linspace(1, 2, 10).requires_grad_(), bits=4)
    assert isinstance(fig, Figure)


def test_histogram_refuses_loose_scale_and_zero_point():
    weights = torch.randn(16)
    params = get_scale_and_zero_point(weights, bits=4)
    with pytest.raises(TypeError, match="params must be a QuantParams"):
        plot_weight_histogram_with_grid(weights, (params.scale, params.zero_point))


def test_a_sixteen_bit_grid_is_refused_rather_than_drawn_line_by_line() -> None:
    weights = torch.randn(100, generator=torch.Generator().manual_seed(0))
    params = get_scale_and_zero_point(weights, bits=16)
    with pytest.raises(ValueError, match="at most 8 bits"):
        plot_weight_histogram_with_grid(weights, params)
