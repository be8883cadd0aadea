"""Tests of Lesson 2's figures: what the panels, lines and markers contain."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tutorlib.formats.dot_products import sequential_partial_sums
from tutorlib.formats.error_bounds import deterministic_bound, unit_roundoff
from tutorlib.formats.error_growth import run_experiment
from tutorlib.plotting import plot_error_vs_length, plot_running_sum


@pytest.fixture(scope="module")
def curves():
    # 300000 all-positive terms sum to ~75000: float16 overflows there (its maximum is 65504).
    return run_experiment([10, 100, 1000, 300_000], draws=3, seed=0)


@pytest.fixture(scope="module")
def figure(curves):
    fig = plot_error_vs_length(curves)
    yield fig
    plt.close(fig)


def _line(ax, label):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def test_one_panel_per_distribution_and_dtype(figure):
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [
        "float32, zero-mean inputs (randn)",
        "float32, all-positive inputs (rand)",
        "float16, zero-mean inputs (randn)",
        "float16, all-positive inputs (rand)",
        "bfloat16, zero-mean inputs (randn)",
        "bfloat16, all-positive inputs (rand)",
    ]
    assert "float32 accumulator" in figure._suptitle.get_text()
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in figure.axes)
    assert figure.axes[4].get_xlabel() == "vector length n (terms)"
    assert figure.axes[1].get_xlabel() == ""  # only the bottom row is labelled
    assert figure.axes[0].get_ylabel().startswith("relative error")


def test_mode_lines_are_medians_over_the_draws(figure, curves):
    ax = figure.axes[5]  # bfloat16, rand
    line = _line(ax, "sequential in the dtype")
    errors = curves.errors[("bfloat16", "rand", "sequential")]
    assert list(line.get_xdata()) == [10, 100, 1000]  # sequential stops at SEQUENTIAL_MAX_N
    np.testing.assert_allclose(line.get_ydata(), errors.median(dim=0).values.numpy())


def test_bounds_are_drawn_where_defined(figure, curves):
    ax = figure.axes[5]  # bfloat16, rand: kappa = 1
    deterministic = _line(ax, "deterministic  κ γ_n")
    # gamma_n is inf from n u >= 1 (n >= 256 in bfloat16): only n = 10 and 100 are drawn.
    assert list(deterministic.get_xdata()) == [10, 100]
    expected = [deterministic_bound(n, torch.bfloat16) for n in (10, 100)]
    np.testing.assert_allclose(deterministic.get_ydata(), expected, rtol=1e-12)
    probabilistic = _line(ax, "probabilistic  κ √n u (λ = 1)")
    np.testing.assert_allclose(
        probabilistic.get_ydata(),
        np.sqrt([10, 100, 1000, 300_000]) * unit_roundoff(torch.bfloat16),
        rtol=1e-12,
    )


def test_float16_overflow_is_marked_not_plotted(figure):
    ax = figure.axes[3]  # float16, rand
    native = _line(ax, "native (float32 accumulator)")
    assert 300_000 not in list(native.get_xdata())
    assert np.isfinite(native.get_ydata()).all()
    marks = [line for line in ax.get_lines() if line.get_label() == "result overflowed to inf"]
    assert [list(mark.get_xdata()) for mark in marks] == [[300_000], [300_000]]  # native, pairwise


def test_running_sum_shows_the_stall():
    x = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    sums = sequential_partial_sums(x, x, torch.bfloat16)
    fig = plot_running_sum(sums, (x.double() ** 2).cumsum(0), torch.bfloat16)
    ax = fig.axes[0]
    assert ax.get_title() == "Summed one by one in bfloat16, the sum stops growing at 256"
    low = _line(ax, "sequential in bfloat16")
    assert low.get_ydata()[-1] == 256.0
    assert _line(ax, "exact (float64)").get_ydata()[-1] == pytest.approx(336.588, abs=1e-3)
    assert ax.get_xlabel() == "number of terms added, k"
    plt.close(fig)


def test_plot_running_sum_refuses_mismatched_or_non_float_sums():
    sums = torch.tensor([1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="one length"):
        plot_running_sum(sums, sums[:2].double(), torch.bfloat16)
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        plot_running_sum(sums, sums.double(), "bfloat16")
    with pytest.raises(TypeError, match="curves must be the ErrorCurves"):
        plot_error_vs_length(None)


def test_plot_running_sum_accepts_sums_that_require_grad():
    sums = torch.tensor([1.0, 2.0, 2.0], requires_grad=True)
    fig = plot_running_sum(sums, sums.double(), torch.bfloat16)
    assert fig.axes[0].get_lines()[0].get_ydata().tolist() == [1.0, 2.0, 2.0]
    plt.close(fig)
