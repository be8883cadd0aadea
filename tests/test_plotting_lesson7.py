"""Tests of Lesson 7's figures: what each one draws and what its title states."""

import pytest
from matplotlib.figure import Figure

from tutorlib.plotting import plot_decode_speeds, plot_kl_vs_bits


def test_kl_vs_bits_sorts_points_and_uses_a_log_axis():
    fig = plot_kl_vs_bits(
        {"RTN": [4.75, 2.75, 3.75], "GPTQ": [3.75, 4.75]},
        {"RTN": [0.29, 7.6, 0.98], "GPTQ": [0.57, 0.14]},
    )
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["RTN"].get_xdata()) == [2.75, 3.75, 4.75]
    assert list(lines["RTN"].get_ydata()) == [7.6, 0.98, 0.29]
    assert ax.get_yscale() == "log"
    assert "bits per weight" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    assert "GPTQ" in ax.get_title()


@pytest.mark.parametrize(
    ("sizes", "kls", "error", "message"),
    [
        ({"RTN": [4.0]}, {"GPTQ": [0.1]}, ValueError, "same methods"),
        ({"RTN": [4.0, 3.0]}, {"RTN": [0.1]}, ValueError, "one KL per size"),
        ({"RTN": [4.0]}, {"RTN": [0.0]}, ValueError, "finite positive"),
        ({"RTN": "4"}, {"RTN": [0.1]}, TypeError, "list of numbers"),
        ([4.0], {"RTN": [0.1]}, TypeError, "dicts"),
    ],
)
def test_kl_vs_bits_refuses_bad_data(sizes, kls, error, message):
    with pytest.raises(error, match=message):
        plot_kl_vs_bits(sizes, kls)


def test_decode_speeds_names_the_fastest():
    fig = plot_decode_speeds({"FP32": 11.5, "BF16": 23.0}, {"FP32": 6.2, "BF16": 6.2})
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [11.5, 23.0]
    assert ax.get_title() == "Decoding one token at a time: BF16 is fastest on this CPU"
    assert "tokens per second" in ax.get_xlabel()
    assert [t.get_text() for t in ax.texts] == [" 6.2 GB/s", " 6.2 GB/s"]


def test_decode_speeds_refuses_mismatched_variants():
    with pytest.raises(ValueError, match="same variants"):
        plot_decode_speeds({"FP32": 11.5}, {"BF16": 6.2})
    with pytest.raises(ValueError, match="finite positive"):
        plot_decode_speeds({"FP32": float("nan")}, {"FP32": 6.2})
