"""Lesson 1: tensor types: figures.

The idea: how each float format splits its bits, and how far apart its neighbouring numbers lie.
Each function takes results computed elsewhere in tutorlib and returns a matplotlib Figure with
labelled axes and a title that states the finding; the notebook decides whether to display it.

Left out on purpose: figures of integer types (a table says it better).
"""

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from tutorlib._checks import check_int, dtype_name
from tutorlib.formats.float_bits import (
    _check_dtypes,
    exponent_and_mantissa_bits,
    smallest_subnormal,
    spacing,
)
from tutorlib.plotting._figure import new_figure

__all__ = ["plot_bit_layouts", "plot_spacing"]

# The zoomed panels of plot_spacing: the magnitudes where float16 and both float8 formats live
# (float16's smallest subnormal is 6e-8, its max 65504), so their lines are readable there.
ZOOM_MAGNITUDES = (1e-9, 1e6)

# Colours of the three fields of a float (matplotlib's tab10 red, blue and orange).
_FIELD_COLOURS = {"sign": "#d62728", "exponent": "#1f77b4", "mantissa": "#ff7f0e"}


def plot_bit_layouts(
    dtypes: tuple[torch.dtype, ...] = (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
    ),
) -> Figure:
    """One row of boxes per float dtype, one box per bit: sign, exponent and mantissa fields.

    The field widths come from ``exponent_and_mantissa_bits`` (derived from ``torch.finfo``),
    and each field is labelled with its bit count, e.g. float32 is 1 | 8 | 23.
    """
    dtypes = _check_dtypes(dtypes)
    # A bare Figure, not pyplot: nothing global to close, and the notebook shows it once.
    fig = new_figure(10, 0.75 * len(dtypes) + 1.2)
    ax = fig.subplots()
    for row, dtype in enumerate(dtypes):
        exponent_bits, mantissa_bits = exponent_and_mantissa_bits(dtype)
        fields = [("sign", 1), ("exponent", exponent_bits), ("mantissa", mantissa_bits)]
        start = 0
        for field, width in fields:
            for bit in range(start, start + width):
                box = Rectangle((bit, row - 0.35), 1, 0.7, facecolor=_FIELD_COLOURS[field])
                box.set_edgecolor("white")
                ax.add_patch(box)
            ax.text(
                start + width / 2,
                row,
                str(width),  # the field's bit count, centred on the field
                ha="center",
                va="center",
                color="white",
                fontweight="bold",
            )
            start += width
    ax.set_xlim(0, max(torch.finfo(dtype).bits for dtype in dtypes))
    ax.set_ylim(len(dtypes) - 0.5, -0.5)
    ax.set_yticks(range(len(dtypes)), [dtype_name(dtype) for dtype in dtypes])
    ax.set_xlabel("bit position, most significant first (bits)")
    ax.set_title("bfloat16 keeps float32's 8 exponent bits; float16 spends them on mantissa")
    legend = [Patch(facecolor=colour, label=field) for field, colour in _FIELD_COLOURS.items()]
    ax.legend(handles=legend, loc="lower right", ncols=3)
    ax.spines[["top", "right", "left"]].set_visible(False)
    return fig


def plot_spacing(
    dtypes: tuple[torch.dtype, ...] = (
        torch.float32,
        torch.bfloat16,
        torch.float16,
        torch.float8_e5m2,
        torch.float8_e4m3fn,
    ),
    points: int = 2000,
) -> Figure:
    """Gap between neighbouring numbers against magnitude, per float dtype (log-log).

    Top row: the gap from ``tutorlib.dtypes.spacing``, flat across subnormals, then doubling
    every binade. Bottom row: the same gap relative to |x|, which stays between eps/2 and eps
    over the normal range: its height is the precision, its width the range. Left column: every
    magnitude, each line from the dtype's smallest subnormal to its largest finite number
    (float32 spans 83 decades, which squeezes the small formats). Right column: the same lines
    zoomed to ``ZOOM_MAGNITUDES`` (1e-9 to 1e6), recomputed there with ``points`` samples so
    float16's and float8's steps are readable.
    """
    dtypes = _check_dtypes(dtypes)
    points = check_int(points, "points", minimum=2)
    fig = new_figure(10, 8)
    axes = fig.subplots(2, 2, sharex="col")  # rows: gap, relative gap; columns: all, zoom
    for dtype in dtypes:
        low, high = smallest_subnormal(dtype), torch.finfo(dtype).max
        zoom_low, zoom_high = max(low, ZOOM_MAGNITUDES[0]), min(high, ZOOM_MAGNITUDES[1])
        for column, (start, stop) in enumerate([(low, high), (zoom_low, zoom_high)]):
            magnitudes = np.geomspace(start, stop, points)
            gaps = spacing(torch.from_numpy(magnitudes), dtype).numpy()
            axes[0, column].step(magnitudes, gaps, where="post", label=dtype_name(dtype))
            axes[1, column].step(magnitudes, gaps / magnitudes, where="post")
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[:, 0]:  # where the right column zooms in
        ax.axvspan(*ZOOM_MAGNITUDES, color="grey", alpha=0.12, label="zoomed at right")
    axes[0, 0].set_ylabel("gap to the next number (same unit as x)")  # each row, both columns
    axes[1, 0].set_ylabel("relative gap, gap / |x| (dimensionless)")
    for ax in axes[1]:
        ax.set_xlabel("magnitude |x| (dimensionless)")
    axes[0, 1].set_xlim(*ZOOM_MAGNITUDES)
    axes[0, 0].set_title("all magnitudes, smallest subnormal to max")
    low_power, high_power = (round(np.log10(m)) for m in ZOOM_MAGNITUDES)  # -9 and 6
    axes[0, 1].set_title(f"zoom: |x| from $10^{{{low_power}}}$ to $10^{{{high_power}}}$")
    fig.suptitle("bfloat16 spans float32's range with wider gaps; float16 and fp8 stop sooner")
    axes[0, 0].legend(title="dtype", loc="upper left")
    return fig
