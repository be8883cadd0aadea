"""Tests of Lesson 6's figures: what each one draws and what its title states."""

import pytest
from matplotlib.figure import Figure

from tutorlib.plotting import plot_layer_errors, plot_nibble_packing, plot_size_accuracy_frontier


def test_layer_errors_draws_both_methods_in_percent():
    rtn = {"encoder.layer.0.attention.self.query": 0.08, "encoder.layer.0.output.dense": 0.04}
    gptq = {"encoder.layer.0.attention.self.query": 0.04, "encoder.layer.0.output.dense": 0.01}
    fig = plot_layer_errors(rtn, gptq)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["RTN"] == pytest.approx([8.0, 4.0]) and lines["GPTQ"] == pytest.approx([4.0, 1.0])
    assert ax.get_title() == "GPTQ's output error is 0.38 times RTN's (median over layers)"
    assert "%" in ax.get_ylabel()


def test_layer_errors_refuses_different_layers():
    with pytest.raises(ValueError, match="same layers"):
        plot_layer_errors({"a": 0.1}, {"b": 0.1})


def test_frontier_sorts_points_by_size():
    fig = plot_size_accuracy_frontier(
        {"RTN": [4.19, 3.19, 8.19], "GPTQ": [4.19, 3.19]},
        {"RTN": [0.95, 0.80, 0.999], "GPTQ": [0.96, 0.84]},
    )
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["RTN"].get_xdata()) == [3.19, 4.19, 8.19]
    assert list(lines["RTN"].get_ydata()) == [0.80, 0.95, 0.999]
    assert "bits per weight" in fig.axes[0].get_xlabel()


def test_nibble_packing_textbook():
    fig = plot_nibble_packing(3, 12)
    ax = fig.axes[0]
    assert ax.get_title() == "Two 4-bit integers in one byte: 3 | (12 << 4) = 195"
    texts = [t.get_text() for t in ax.texts]
    assert "byte = 195" in texts
    byte_bits = texts[-8:]
    assert "".join(byte_bits) == "11000011"
