"""Tests of Lesson 5's figures: they show the rows they are given, with honest labels."""

import matplotlib.pyplot as plt
import pytest

from tutorlib.perf.activations import ActivationStats
from tutorlib.perf.benchmark import BenchmarkRow
from tutorlib.plotting import (
    plot_accuracy_vs_speed,
    plot_activation_sqnr,
    plot_int8_speedups,
    plot_time_breakdown,
)


def _row(variant: str, batch_size: int, ms: float, linear_ms: float, cosine: float) -> BenchmarkRow:
    baseline = 100.0 if batch_size == 32 else 10.0
    return BenchmarkRow(
        variant=variant,
        batch_size=batch_size,
        tokens=22 * batch_size,
        median_ms=ms,
        speedup=baseline / ms,
        size_bytes=1,
        min_cosine=cosine,
        linear_fraction=linear_ms / ms,
        linear_ms=linear_ms,
        linear_ops_per_s=1e11,
        fraction_of_int8_peak=0.2,
    )


ROWS = [
    _row("FP32", 1, 10.0, 6.0, 1.0),
    _row("torch.ao dynamic", 1, 5.0, 2.0, 0.93),
    _row("tutorlib W8A8", 1, 8.0, 4.0, 0.997),
    _row("FP32", 32, 100.0, 80.0, 1.0),
    _row("torch.ao dynamic", 32, 40.0, 20.0, 0.93),
    _row("tutorlib W8A8", 32, 25.0, 10.0, 0.997),
]


def test_speedup_bars_show_every_variant_and_batch() -> None:
    fig = plot_int8_speedups(ROWS, "Test CPU")
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([1.0, 2.0, 1.25, 1.0, 2.5, 4.0])  # batch 1, then batch 32
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "FP32",
        "torch.ao dynamic",
        "tutorlib W8A8",
    ]
    assert ax.get_title() == "tutorlib W8A8 is fastest at batch 32: 4.0x FP32 (Test CPU)"
    assert "speedup over FP32" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["batch 1", "batch 32"]
    plt.close(fig)


def test_time_breakdown_stacks_linear_and_the_rest() -> None:
    fig = plot_time_breakdown(ROWS, batch_size=32)
    ax = fig.axes[0]
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == pytest.approx([80.0, 20.0, 10.0, 20.0, 20.0, 15.0])  # linear, then the rest
    assert ax.get_title().startswith("Batch 32: linear layers take 80% of FP32's time")
    assert "(ms)" in ax.get_xlabel()
    plt.close(fig)


def test_accuracy_vs_speed_marks_the_goal() -> None:
    fig = plot_accuracy_vs_speed(ROWS, batch_size=32, min_cosine=0.995)
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["torch.ao dynamic", "tutorlib W8A8"]  # FP32 is the reference, left out
    points = [float(v) for c in ax.collections for v in c.get_offsets()[0]]
    assert points == pytest.approx([2.5, 0.07, 4.0, 0.003])
    assert ax.get_yscale() == "log"
    goal = ax.get_lines()[0]
    assert goal.get_ydata()[0] == pytest.approx(0.005)
    assert ax.get_title() == (
        "Fastest variant within the accuracy goal at batch 32: tutorlib W8A8 (4.0x)"
    )
    plt.close(fig)


def test_missing_batch_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="batch size 8"):
        plot_time_breakdown(ROWS, batch_size=8)


def test_activation_sqnr_lines_and_title() -> None:
    stats = [
        ActivationStats("0 query", 7.2, 2.6, 30.0, 33.8),
        ActivationStats("0 output", 24.7, 3.5, 14.0, 26.5),
    ]
    fig = plot_activation_sqnr(stats)
    ax = fig.axes[0]
    per_tensor, per_token = ax.get_lines()
    assert list(per_tensor.get_ydata()) == [30.0, 14.0]
    assert list(per_token.get_ydata()) == [33.8, 26.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 query", "0 output"]
    assert ax.get_title() == "Per-token scales gain up to 12.5 dB (0 output)"
    assert ax.get_ylabel() == "SQNR of the int8 input (dB)"
    plt.close(fig)


def test_plots_refuse_what_is_not_benchmark_rows() -> None:
    with pytest.raises(TypeError, match="rows"):
        plot_int8_speedups("rows", "test machine")
    with pytest.raises(TypeError, match="machine"):
        plot_int8_speedups(ROWS, None)
    with pytest.raises(ValueError, match="min_cosine"):
        plot_accuracy_vs_speed(ROWS, batch_size=32, min_cosine=float("nan"))
    with pytest.raises(TypeError, match="stats"):
        plot_activation_sqnr([None])
