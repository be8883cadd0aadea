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

from tutorlib.dtypes import (
    dtype_name,
    exponent_and_mantissa_bits,
    smallest_subnormal,
    spacing,
)
from tutorlib.plotting._figure import new_figure

__all__ = ["plot_bit_layouts", "plot_spacing"]

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

    Top: the gap from ``tutorlib.dtypes.spacing``, flat across subnormals, then doubling every
    binade. Bottom: the same gap relative to |x|, which stays between eps/2 and eps over the
    normal range: its height is the precision, its width the range. Each line runs from the
    dtype's smallest subnormal to its largest finite number.
    """
    fig = new_figure(9, 8)
    ax_gap, ax_relative = fig.subplots(2, 1, sharex=True)
    for dtype in dtypes:
        magnitudes = np.geomspace(smallest_subnormal(dtype), torch.finfo(dtype).max, points)
        gaps = spacing(torch.from_numpy(magnitudes), dtype).numpy()
        ax_gap.step(magnitudes, gaps, where="post", label=dtype_name(dtype))
        ax_relative.step(magnitudes, gaps / magnitudes, where="post", label=dtype_name(dtype))
    for ax in (ax_gap, ax_relative):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    ax_gap.set_ylabel("gap to the next number (same unit as x)")
    ax_relative.set_ylabel("relative gap, gap / |x| (dimensionless)")
    ax_relative.set_xlabel("magnitude |x| (dimensionless)")
    ax_gap.set_title("bfloat16 spans float32's range with wider gaps; float16 and fp8 stop sooner")
    ax_gap.legend(title="dtype", loc="upper left")
    return fig
