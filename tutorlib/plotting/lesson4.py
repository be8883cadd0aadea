"""Lesson 4: linear quantization: figures.

The idea: a weight histogram under its integer grid, SQNR against bits, and SQNR against a
clipping threshold. Each function takes results computed elsewhere in tutorlib and returns a
matplotlib Figure with labelled axes and a title that states the finding; the notebook decides
whether to display it.

Left out on purpose: per-channel grids drawn one by one.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from tutorlib._checks import check_float_tensor, check_int
from tutorlib.plotting._figure import new_figure
from tutorlib.quant.affine import linear_dequantize, linear_quantize
from tutorlib.quant.params import QuantParams

__all__ = ["plot_weight_histogram_with_grid", "plot_sqnr_vs_bits", "plot_clipping_sweep"]


# The 6.02 dB that each bit adds to the SQNR of a uniform quantizer: 20 * log10(2)
# (Analog Devices tutorial MT-001).
_DB_PER_BIT = 20 * np.log10(2.0)


# The widest grid whose levels are drawn one line each: 256 lines for 8 bits.
_MAX_DRAWN_BITS = 8


def plot_weight_histogram_with_grid(weights: torch.Tensor, params: QuantParams) -> Figure:
    """Histogram of weights with the levels s * (q - z) of a per-tensor k-bit grid drawn over it.

    The title counts how many of the 2**k levels hold 90% of the weights: with a bell-shaped
    histogram and a range set by the extremes, most levels sit in the nearly empty tails.
    `params` are per-tensor QuantParams, e.g. get_scale_and_zero_point(weights, bits=4), of at
    most 8 bits (a line per level).
    """
    check_float_tensor(weights, "weights")
    if not isinstance(params, QuantParams):
        raise TypeError(
            "params must be a QuantParams, e.g. get_scale_and_zero_point(weights, bits=4); "
            f"got {type(params).__name__}"
        )
    if params.dim is not None or params.group_size is not None:
        raise ValueError("plot_weight_histogram_with_grid draws one per-tensor grid")
    if params.bits > _MAX_DRAWN_BITS:  # 2**16 vertical lines would take minutes and show nothing
        raise ValueError(
            f"params.bits is {params.bits}: a grid of 2**{params.bits} levels cannot be drawn as "
            f"lines; use at most {_MAX_DRAWN_BITS} bits"
        )
    q = torch.arange(params.q_min, params.q_max + 1, dtype=torch.int32)  # every integer
    levels = linear_dequantize(q, params).double().numpy()  # s * (q - z)
    nearest = linear_quantize(weights.detach(), params).long()  # each weight's integer
    counts = torch.bincount((nearest - params.q_min).flatten(), minlength=len(q))
    share = torch.sort(counts, descending=True).values.cumsum(0) / counts.sum()
    levels_for_90 = int((share < 0.9).sum()) + 1
    values = weights.detach().double().flatten()
    fig = new_figure(8, 4)
    ax = fig.subplots()
    ax.hist(values.numpy(), bins=200, color="#1f77b4", alpha=0.8, label="weights")
    for i, level in enumerate(levels):
        ax.axvline(level, color="#d62728", linewidth=0.8, label="grid levels" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("weight value (dimensionless)")
    ax.set_ylabel("number of weights (log scale)")
    ax.set_title(
        f"{params.bits}-bit grid: {levels_for_90} of its {len(levels)} levels "
        "hold 90% of the weights"
    )
    ax.legend(loc="upper right")
    return fig


def plot_sqnr_vs_bits(bits: list[int], sqnr_db: dict[str, list[float]]) -> Figure:
    """SQNR against bit width, one line per scheme, with a 6.02 dB-per-bit reference line.

    The reference line goes through the last scheme's value at the largest bit width, so a
    curve parallel to it gains exactly 6.02 dB per bit. The title gives the last scheme's fitted
    slope over the bit widths from 4 up (below 4 bits the grid is too coarse for the rule).
    """
    _check_curves(bits, sqnr_db)
    x = np.array(bits, dtype=float)
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    for label, values in sqnr_db.items():
        ax.plot(x, values, marker="o", label=label)
    last = np.array(list(sqnr_db.values())[-1], dtype=float)
    reference = last[-1] + _DB_PER_BIT * (x - x[-1])
    ax.plot(x, reference, color="grey", linestyle="--", label="6.02 dB per bit")
    fit = x >= 4
    ax.set_xlabel("bit width k (bits)")
    ax.set_ylabel("SQNR (dB)")
    if fit.sum() >= 2:  # a slope needs two bit widths from 4 up
        slope = np.polyfit(x[fit], last[fit], 1)[0]
        ax.set_title(
            f"{list(sqnr_db)[-1]}: {slope:.2f} dB per bit from 4 to {bits[-1]} bits (rule: 6.02)"
        )
    else:
        ax.set_title("SQNR against bit width (rule: 6.02 dB per bit)")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    return fig


def plot_clipping_sweep(thresholds: torch.Tensor, sqnr_db: torch.Tensor, bits: int) -> Figure:
    """SQNR of symmetric per-tensor quantization against the clipping threshold c / max|w|.

    The best threshold is marked; the title compares it with no clipping (c = max|w|).
    """
    check_float_tensor(thresholds, "thresholds")
    check_float_tensor(sqnr_db, "sqnr_db")
    bits = check_int(bits, "bits", minimum=1)
    if thresholds.ndim != 1 or sqnr_db.shape != thresholds.shape or thresholds.min() <= 0:
        raise ValueError(
            "thresholds and sqnr_db must be 1-d, of the same length, with positive thresholds "
            f"(from clipping_sweep); got shapes {tuple(thresholds.shape)} and "
            f"{tuple(sqnr_db.shape)}"
        )
    ratio = (thresholds / thresholds[-1]).detach().numpy()
    values = sqnr_db.detach().numpy()
    best = int(np.argmax(values))
    fig = new_figure(8, 4)
    ax = fig.subplots()
    ax.plot(ratio, values, color="#1f77b4", label=f"{bits}-bit, per-tensor, symmetric")
    ax.plot(ratio[best], values[best], "o", color="#d62728", label="best threshold")
    ax.plot(ratio[-1], values[-1], "s", color="grey", label="no clipping")
    ax.set_xlabel("clipping threshold c / max|w| (fraction of the largest weight)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(
        f"Clipping at {ratio[best]:.0%} of max|w| raises the SQNR "
        f"from {values[-1]:.1f} to {values[best]:.1f} dB"
    )
    ax.legend(loc="upper right")
    ax.grid(True, alpha=0.3)
    return fig


def _check_curves(bits: object, sqnr_db: object) -> None:
    """bits: a non-empty list of positive ints; sqnr_db: {name: one finite SQNR per bit width}."""
    if isinstance(bits, str) or not isinstance(bits, Sequence) or not bits:
        raise TypeError(
            f"bits must be a non-empty list of bit widths such as [2, 4, 8], got {bits!r}"
        )
    for width in bits:
        check_int(width, "every entry of bits", minimum=1)
    if not isinstance(sqnr_db, Mapping) or not sqnr_db:
        raise TypeError(
            f"sqnr_db must be a non-empty dict {{name: [SQNR per bit width]}}, got {sqnr_db!r}"
        )
    for name, values in sqnr_db.items():
        numbers = (
            list(values) if isinstance(values, Sequence) and not isinstance(values, str) else []
        )
        finite = all(isinstance(v, int | float) and math.isfinite(v) for v in numbers)
        if len(numbers) != len(bits) or not finite:
            raise ValueError(
                f"sqnr_db[{name!r}] must hold {len(bits)} finite numbers, one per entry of bits"
            )
