"""Lesson 6: four-bit weights: figures.

The idea: GPTQ against round-to-nearest layer by layer and on the size-accuracy frontier, and
two 4-bit integers packed into one byte. Each function takes results computed elsewhere in
tutorlib and returns a matplotlib Figure with labelled axes and a title that states the finding.

Left out on purpose: figures of the Hessian itself, and of every group's grid.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tutorlib._checks import check_int
from tutorlib.plotting._figure import new_figure

__all__ = ["plot_layer_errors", "plot_size_accuracy_frontier", "plot_nibble_packing"]

_COLORS = {"RTN": "#1f77b4", "GPTQ": "#d62728"}


def _check_errors(errors: object, name: str) -> dict[str, float]:
    if not isinstance(errors, Mapping) or not errors:
        raise TypeError(f"{name} must be a non-empty dict {{layer name: relative error}}")
    values = {}
    for layer, value in errors.items():
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name}[{layer!r}] must be a finite number, got {value!r}")
        values[str(layer)] = float(value)
    return values


def plot_layer_errors(rtn_errors: Mapping[str, float], gptq_errors: Mapping[str, float]) -> Figure:
    """Relative output error ||X (W - W_hat)^T|| / ||X W^T|| of each Linear, RTN against GPTQ.

    Both dicts map the same layer names (in model order) to errors, e.g. from
    fake_quantize_linear_weights(...)[name].relative_error. The title gives the median ratio.
    """
    rtn = _check_errors(rtn_errors, "rtn_errors")
    gptq = _check_errors(gptq_errors, "gptq_errors")
    if list(rtn) != list(gptq):
        raise ValueError("rtn_errors and gptq_errors must name the same layers in the same order")
    names = list(rtn)
    x = np.arange(len(names))
    ratio = float(np.median([gptq[n] / rtn[n] for n in names if rtn[n] > 0] or [math.nan]))
    fig = new_figure(9, 4)
    ax = fig.subplots()
    ax.plot(x, [100 * rtn[n] for n in names], "o-", color=_COLORS["RTN"], label="RTN")
    ax.plot(x, [100 * gptq[n] for n in names], "s-", color=_COLORS["GPTQ"], label="GPTQ")
    short = [n.replace("encoder.layer.", "").replace("attention.", "") for n in names]
    ax.set_xticks(x, short, rotation=90, fontsize=7)
    ax.set_xlabel("layer, in the order the model calls them")
    ax.set_ylabel("relative output error (%)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(f"GPTQ's output error is {ratio:.2f} times RTN's (median over layers)")
    return fig


def plot_size_accuracy_frontier(
    bits_per_weight: Mapping[str, Sequence[float]], min_cosine: Mapping[str, Sequence[float]]
) -> Figure:
    """Bits per weight (group parameters included) against the smallest cosine to FP32.

    One line per method (e.g. "RTN", "GPTQ"), its points sorted by size; up and left is better.
    """
    if not isinstance(bits_per_weight, Mapping) or not isinstance(min_cosine, Mapping):
        raise TypeError("bits_per_weight and min_cosine must be dicts {method: [values]}")
    if not bits_per_weight or set(bits_per_weight) != set(min_cosine):
        raise ValueError("bits_per_weight and min_cosine must name the same methods")
    fig = new_figure(7, 4)
    ax = fig.subplots()
    for method, sizes in bits_per_weight.items():
        cosines = min_cosine[method]
        if isinstance(sizes, str) or isinstance(cosines, str) or len(sizes) != len(cosines):
            raise ValueError(f"method {method!r}: give one cosine per size")
        points = sorted(zip(map(float, sizes), map(float, cosines), strict=True))
        if not all(math.isfinite(v) for point in points for v in point):
            raise ValueError(f"method {method!r}: sizes and cosines must be finite numbers")
        color = _COLORS.get(method)
        ax.plot(*zip(*points, strict=True), "o-", label=method, color=color)
    ax.set_xlabel("bits per weight (scales and zero points included)")
    ax.set_ylabel("smallest cosine to FP32 embeddings")
    ax.legend()
    ax.set_title("Accuracy against size: RTN and GPTQ at each bit width")
    return fig


def plot_nibble_packing(low: int, high: int) -> Figure:
    """Two 4-bit integers packed into one byte: byte = low | (high << 4), bits drawn as boxes.

    Example: low = 3 (0011), high = 12 (1100) -> byte 1100 0011 = 195.
    """
    low = check_int(low, "low", 0, 15)
    high = check_int(high, "high", 0, 15)
    byte = low | (high << 4)
    fig = new_figure(8, 2.6)
    ax = fig.subplots()
    rows = [
        (f"high = {high}", f"{high:04b}", 4, "#d62728"),
        (f"low = {low}", f"{low:04b}", 0, "#1f77b4"),
    ]
    for y, (label, bits, offset, color) in zip((2.0, 1.0), rows, strict=True):
        ax.text(-0.3, y + 0.4, label, ha="right", va="center")
        for i, bit in enumerate(bits):  # most significant first, drawn from the left
            x = 7 - (offset + 3 - i)
            ax.add_patch(_box(x, y, color))
            ax.text(x + 0.5, y + 0.4, bit, ha="center", va="center", color="white")
    ax.text(-0.3, 0.4, f"byte = {byte}", ha="right", va="center")
    for i, bit in enumerate(f"{byte:08b}"):
        ax.add_patch(_box(i, 0.0, "#d62728" if i < 4 else "#1f77b4"))
        ax.text(i + 0.5, 0.4, bit, ha="center", va="center", color="white")
    ax.set_xlim(-2.5, 8.2)
    ax.set_ylim(-0.3, 3.0)
    ax.set_xticks(np.arange(8) + 0.5, [f"bit {7 - i}" for i in range(8)], fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("bit position in the byte (bit 7 is the most significant)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"Two 4-bit integers in one byte: {low} | ({high} << 4) = {byte}")
    return fig


def _box(x: float, y: float, color: str) -> Rectangle:
    """One bit's box: a unit cell at (x, y), slightly narrowed so neighbours stay apart."""
    return Rectangle((x + 0.05, y), 0.9, 0.8, color=color)
