"""Every lesson's figures, one section per lesson.

Each function takes results computed elsewhere in tutorlib (or computes them with it) and returns
a ``matplotlib.figure.Figure`` with labelled axes and a title that states the finding; the notebook
decides whether to display it. Nothing here computes a result that a lesson's prose relies on.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

__all__: list[str] = []

# --- Lesson 1: tensor types ---

from tutorlib.dtypes import (  # noqa: E402
    dtype_name,
    exponent_and_mantissa_bits,
    smallest_subnormal,
    spacing,
)

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
    fig = Figure(figsize=(10, 0.75 * len(dtypes) + 1.2), dpi=100, layout="constrained")
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
    fig = Figure(figsize=(9, 8), dpi=100, layout="constrained")
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


__all__ += ["plot_bit_layouts", "plot_spacing"]


# --- Lesson 2: downcast dot product ---

from tutorlib.downcast import ErrorCurves, deterministic_bound, unit_roundoff  # noqa: E402

# One colour per accumulation mode (Tableau colours, distinguishable in grey scale by marker),
# and the height at which an overflowed (inf) result is marked, one height per mode.
_MODE_STYLES = {
    "native": {"color": "#1f77b4", "marker": "o", "label": "native (float32 accumulator)"},
    "pairwise": {"color": "#2ca02c", "marker": "s", "label": "pairwise in the dtype"},
    "sequential": {"color": "#d62728", "marker": "^", "label": "sequential in the dtype"},
}
_OVERFLOW_HEIGHTS = {"native": 4.0, "pairwise": 2.0, "sequential": 1.0}
_DISTRIBUTION_LABELS = {"randn": "zero-mean inputs (randn)", "rand": "all-positive inputs (rand)"}
_ERROR_AXIS_LIMITS = (1e-9, 10.0)  # float32's u is 6e-8; a relative error above 1 is noise


def _draw_error_curve(ax, lengths: list[int], errors: torch.Tensor, mode: str) -> None:
    """Median over the draws as a line, the middle half of the draws as a band, inf as x."""
    style = _MODE_STYLES[mode]
    finite = torch.where(torch.isfinite(errors), errors, torch.nan).double()
    low, median, high = torch.nanquantile(finite, torch.tensor([0.25, 0.5, 0.75]).double(), dim=0)
    overflowed = torch.isinf(errors).any(dim=0)
    n = np.array(lengths, dtype=float)
    shown = ~overflowed.numpy()
    ax.plot(
        n[shown],
        median.numpy()[shown],
        marker=style["marker"],
        color=style["color"],
        markersize=4,
        label=style["label"],
    )
    ax.fill_between(
        n[shown],
        low.numpy()[shown],
        high.numpy()[shown],
        color=style["color"],
        alpha=0.15,
        linewidth=0,
    )
    if overflowed.any():
        ax.plot(
            n[~shown],
            np.full((~shown).sum(), _OVERFLOW_HEIGHTS[mode]),
            linestyle="none",
            marker="x",
            markersize=9,
            color=style["color"],
            label="result overflowed to inf",
        )


def _draw_bounds(ax, lengths: list[int], condition: torch.Tensor, dtype: torch.dtype) -> None:
    """Relative-error bounds kappa gamma_n and kappa sqrt(n) u (median kappa over the draws)."""
    kappa = condition.median(dim=0).values.numpy()  # (len(lengths),)
    n = np.array(lengths, dtype=float)
    u = unit_roundoff(dtype)
    worst = kappa * np.array([deterministic_bound(int(k), dtype) for k in lengths])
    finite = np.isfinite(worst)
    ax.plot(n[finite], worst[finite], "k--", linewidth=1.2, label="deterministic  κ γ_n")
    ax.plot(n, kappa * np.sqrt(n) * u, "k:", linewidth=1.5, label="probabilistic  κ √n u (λ = 1)")
    ax.axhline(u, color="grey", linewidth=0.8, alpha=0.7)
    ax.annotate("u", (n[0], u), textcoords="offset points", xytext=(2, 3), color="grey")


def plot_error_vs_length(curves: ErrorCurves) -> Figure:
    """Relative error of the downcast dot product versus n: rows = dtype, columns = input
    distribution, one line per accumulation mode (median over draws, band = middle half), with
    the deterministic and probabilistic bounds for the median condition number kappa.

    Points where a result overflowed to inf (float16's range ends at 65504) are marked with x
    near the top of the panel, in the mode's colour, instead of being drawn as inf.
    """
    dtypes = list(dict.fromkeys(key[0] for key in curves.errors))
    distributions = list(dict.fromkeys(key[1] for key in curves.errors))
    fig = Figure(figsize=(9.5, 3.3 * len(dtypes) + 2.3), dpi=100)
    axes = fig.subplots(len(dtypes), len(distributions), sharex=True, sharey=True, squeeze=False)
    for row, name in enumerate(dtypes):
        for col, distribution in enumerate(distributions):
            ax = axes[row, col]
            dtype = getattr(torch, name)
            _draw_bounds(ax, curves.all_lengths, curves.condition[distribution], dtype)
            for mode in _MODE_STYLES:
                key = (name, distribution, mode)
                _draw_error_curve(ax, curves.lengths[key], curves.errors[key], mode)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(*_ERROR_AXIS_LIMITS)
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{name}, {_DISTRIBUTION_LABELS[distribution]}", fontsize=10)
            if col == 0:
                ax.set_ylabel("relative error |fl(x·y) − x·y| / |x·y|", fontsize=9)
            if row == len(dtypes) - 1:
                ax.set_xlabel("vector length n (terms)")
    handles, labels = [], []
    for ax in axes.flat:  # one legend entry per label, from every panel
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncols=3, fontsize=9, frameon=False)
    fig.suptitle(
        "PyTorch's float32 accumulator keeps float16 and bfloat16 errors near u at every n;\n"
        "accumulating in the low precision itself grows like √n for zero-mean terms,\n"
        "and like n until it stalls for all-positive terms",
        fontsize=11,
    )
    # Fixed margins rather than tight_layout, which measures every label and costs seconds here.
    bottom, top = 1.1 / fig.get_figheight(), 1 - 1.15 / fig.get_figheight()  # from inches
    fig.subplots_adjust(left=0.1, right=0.98, bottom=bottom, top=top, wspace=0.05, hspace=0.2)
    return fig


def plot_running_sum(
    low_precision_sums: torch.Tensor, exact_sums: torch.Tensor, dtype: torch.dtype
) -> Figure:
    """The running sum of a sequential dot product in ``dtype`` next to the exact one, per term.

    The flat stretch is the stall: once the sum's spacing in ``dtype`` is more than twice every
    remaining term, each addition rounds back to the same number.
    """
    k = np.arange(1, len(exact_sums) + 1)
    low = low_precision_sums.double().numpy()
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    ax.plot(k, exact_sums.double().numpy(), color="black", label="exact (float64)")
    name = str(dtype).removeprefix("torch.")
    ax.plot(k, low, color=_MODE_STYLES["sequential"]["color"], label=f"sequential in {name}")
    ax.axhline(low[-1], color="grey", linestyle=":", linewidth=1)
    ax.annotate(
        f"stalls at {low[-1]:g}",
        (k[-1], low[-1]),
        textcoords="offset points",
        xytext=(-90, -15),
        color="grey",
    )
    ax.set_xlabel("number of terms added, k")
    ax.set_ylabel("running sum s_k (dimensionless)")
    ax.set_title(f"Summed one by one in {name}, the sum stops growing at {low[-1]:g}")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


__all__ += ["plot_error_vs_length", "plot_running_sum"]


# --- Lesson 3: model precision ---

# The notes' SimpleCNN, FP32 vs BF16 logits: mean ~0.00022, max ~0.00061 (seed notes, Lesson 3).
_NOTES_LOGIT_DIFFS = {"notes' mean (BF16)": 0.00022, "notes' max (BF16)": 0.00061}
_DIFF_FLOOR = 1e-9  # an embedding equal to FP32's is drawn at this floor on the log axis


def plot_logit_differences(
    differences: dict[str, torch.Tensor],
    reference_lines: dict[str, float] | None = None,
) -> Figure:
    """Histogram of |logit - FP32 logit| on a log axis, one outline per labelled set of logits.

    ``differences`` maps a label (e.g. "BF16, trained CNN") to absolute differences of any shape.
    Each outline shows the fraction of that set's logits per bin, so sets of different sizes
    compare; differences that are exactly 0 cannot sit on a log axis and are counted in the
    legend instead. ``reference_lines`` (default: the notes' BF16 mean and max) are dashed
    vertical lines. The title names the sets with the largest and smallest mean difference.
    """
    reference_lines = _NOTES_LOGIT_DIFFS if reference_lines is None else reference_lines
    values = {label: diff.detach().double().flatten() for label, diff in differences.items()}
    positive = torch.cat([diff[diff > 0] for diff in values.values()])
    low, high = positive.min().item(), positive.max().item()
    bins = np.logspace(np.log10(low) - 0.1, np.log10(high) + 0.1, 40)
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
    for label, diff in values.items():
        exact = int((diff == 0).sum())
        legend = label if exact == 0 else f"{label} ({exact} of {len(diff)} exactly 0)"
        weights = np.full(len(diff), 1.0 / len(diff))  # each set sums to 1
        ax.hist(diff.numpy(), bins=bins, weights=weights, histtype="step", linewidth=1.8,
                label=legend)  # fmt: skip
    for (label, x), style in zip(reference_lines.items(), ["--", ":"] * 4, strict=False):
        ax.axvline(x, color="black", linestyle=style, linewidth=1.2, label=f"{label} = {x:g}")
    ax.set_xscale("log")
    ax.set_xlabel("|logit difference to FP32| (logit units, log scale)")
    ax.set_ylabel("fraction of the logits")
    means = {label: diff.mean().item() for label, diff in values.items()}
    largest, smallest = max(means, key=means.get), min(means, key=means.get)
    ax.set_title(
        f"Largest mean change: {largest} ({means[largest]:.1e})\n"
        f"smallest: {smallest} ({means[smallest]:.1e})"
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    plt.close(fig)  # the notebook displays the returned figure; pyplot need not keep it
    return fig


def plot_embedding_cosines(cosines: dict[str, torch.Tensor]) -> Figure:
    """One dot per sentence: 1 - cosine(embedding in a dtype, FP32 embedding), log axis.

    ``cosines`` maps a dtype name to the (n_sentences,) cosine similarities to FP32. The title
    gives the smallest cosine of each dtype.
    """
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    for row, (label, cosine) in enumerate(cosines.items()):
        distance = (1.0 - cosine.detach().double()).clamp(min=_DIFF_FLOOR)  # (n_sentences,)
        jitter = np.random.default_rng(row).uniform(-0.15, 0.15, size=len(distance))
        ax.scatter(distance.numpy(), row + jitter, s=14, alpha=0.7, label=label)
    ax.set_yticks(range(len(cosines)), list(cosines))
    ax.set_xscale("log")
    ax.set_xlabel("1 - cosine similarity to the FP32 embedding (dimensionless, log scale)")
    worst = ", ".join(f"{label} {c.min().item():.6f}" for label, c in cosines.items())
    ax.set_title(f"Every sentence embedding stays close to FP32: smallest cosine {worst}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ += ["plot_logit_differences", "plot_embedding_cosines"]


# --- Lesson 4: linear quantization ---

from tutorlib.quantization import integer_range  # noqa: E402

# The 6.02 dB that each bit adds to the SQNR of a uniform quantizer: 20 * log10(2)
# (Analog Devices tutorial MT-001).
_DB_PER_BIT = 20 * np.log10(2.0)


def plot_weight_histogram_with_grid(
    weights: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | int,
    bits: int,
    symmetric: bool = False,
) -> Figure:
    """Histogram of weights with the levels s * (q - z) of a per-tensor k-bit grid drawn over it.

    The title counts how many of the 2**k levels hold 90% of the weights: with a bell-shaped
    histogram and a range set by the extremes, most levels sit in the nearly empty tails.
    """
    q_min, q_max = integer_range(bits, symmetric)
    q = torch.arange(q_min, q_max + 1, dtype=torch.float64)
    levels = (float(scale) * (q - float(zero_point))).numpy()
    values = weights.detach().double().flatten()
    nearest = torch.round(values / float(scale)) + float(zero_point)
    counts = torch.bincount((nearest.clamp(q_min, q_max) - q_min).long(), minlength=len(q))
    share = torch.sort(counts, descending=True).values.cumsum(0) / counts.sum()
    levels_for_90 = int((share < 0.9).sum()) + 1
    fig = Figure(figsize=(8, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.hist(values.numpy(), bins=200, color="#1f77b4", alpha=0.8, label="weights")
    for i, level in enumerate(levels):
        ax.axvline(level, color="#d62728", linewidth=0.8, label="grid levels" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("weight value (dimensionless)")
    ax.set_ylabel("number of weights (log scale)")
    ax.set_title(
        f"{bits}-bit grid: {levels_for_90} of its {len(levels)} levels hold 90% of the weights"
    )
    ax.legend(loc="upper right")
    return fig


def plot_sqnr_vs_bits(bits: list[int], sqnr_db: dict[str, list[float]]) -> Figure:
    """SQNR against bit width, one line per scheme, with a 6.02 dB-per-bit reference line.

    The reference line goes through the last scheme's value at the largest bit width, so a
    curve parallel to it gains exactly 6.02 dB per bit. The title gives the last scheme's fitted
    slope over the bit widths from 4 up (below 4 bits the grid is too coarse for the rule).
    """
    x = np.array(bits, dtype=float)
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for label, values in sqnr_db.items():
        ax.plot(x, values, marker="o", label=label)
    last = np.array(list(sqnr_db.values())[-1], dtype=float)
    reference = last[-1] + _DB_PER_BIT * (x - x[-1])
    ax.plot(x, reference, color="grey", linestyle="--", label="6.02 dB per bit")
    fit = x >= 4
    slope = np.polyfit(x[fit], last[fit], 1)[0]
    ax.set_xlabel("bit width k (bits)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(
        f"{list(sqnr_db)[-1]}: {slope:.2f} dB per bit from 4 to {bits[-1]} bits (rule: 6.02)"
    )
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    return fig


def plot_clipping_sweep(thresholds: torch.Tensor, sqnr_db: torch.Tensor, bits: int) -> Figure:
    """SQNR of symmetric per-tensor quantization against the clipping threshold c / max|w|.

    The best threshold is marked; the title compares it with no clipping (c = max|w|).
    """
    ratio = (thresholds / thresholds[-1]).numpy()
    values = sqnr_db.numpy()
    best = int(np.argmax(values))
    fig = Figure(figsize=(8, 4), dpi=100, layout="constrained")
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


__all__ += ["plot_weight_histogram_with_grid", "plot_sqnr_vs_bits", "plot_clipping_sweep"]


# --- Lesson 5: fast int8 ---

from tutorlib.speed import ActivationStats, BenchmarkRow  # noqa: E402


def _rows_at(rows: "list[BenchmarkRow]", batch_size: int) -> "list[BenchmarkRow]":
    """The rows of one batch size, in their order; ValueError if there are none."""
    selected = [row for row in rows if row.batch_size == batch_size]
    if not selected:
        raise ValueError(f"no benchmark rows at batch size {batch_size}")
    return selected


def plot_int8_speedups(rows: "list[BenchmarkRow]", machine: str) -> Figure:
    """Bars of each variant's speedup over FP32 (FP32 latency / its latency), one bar per batch
    size, with a line at 1 (as fast as FP32). The title names the fastest variant at the
    largest batch and the machine."""
    batch_sizes = sorted({row.batch_size for row in rows})
    variants = list(dict.fromkeys(row.variant for row in rows))
    fig = Figure(figsize=(9, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(batch_sizes)
    for i, batch_size in enumerate(batch_sizes):
        speedup = {row.variant: row.speedup for row in _rows_at(rows, batch_size)}
        x = np.arange(len(variants)) + (i - (len(batch_sizes) - 1) / 2) * width
        bars = ax.bar(x, [speedup[v] for v in variants], width, label=f"batch {batch_size}")
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(np.arange(len(variants)), variants, rotation=20, ha="right")
    ax.set_ylabel("speedup over FP32 (x, higher is faster)")
    ax.set_xlabel("variant of all-MiniLM-L6-v2")
    largest = _rows_at(rows, batch_sizes[-1])
    best = max(largest, key=lambda row: row.speedup)
    ax.set_title(
        f"{best.variant} is fastest at batch {best.batch_size}: "
        f"{best.speedup:.1f}x FP32 ({machine})",
        fontsize=10,
    )
    ax.legend(frameon=False)
    ax.margins(y=0.12)
    return fig


def plot_time_breakdown(rows: "list[BenchmarkRow]", batch_size: int) -> Figure:
    """Stacked bars of each variant's median latency at one batch size: time inside the linear
    layers (forward hooks) and everything else (attention, softmax, GELU, LayerNorm, ...).
    The title gives the share of FP32's time that the linear layers take."""
    selected = _rows_at(rows, batch_size)
    names = [row.variant for row in selected]
    linear = np.array([min(row.linear_ms, row.median_ms) for row in selected])
    other = np.array([row.median_ms for row in selected]) - linear
    fig = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(selected))
    ax.barh(y, linear, color="#1f77b4", label="linear layers")
    ax.barh(y, other, left=linear, color="#ff7f0e", label="everything else")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"median latency of one forward at batch {batch_size} (ms)")
    ax.set_ylabel("variant")
    fp32 = next((row for row in selected if row.variant == "FP32"), selected[0])
    share = min(fp32.linear_ms / fp32.median_ms, 1.0)
    ax.set_title(
        f"Batch {batch_size}: linear layers take {100 * share:.0f}% of {fp32.variant}'s time; "
        "int8 can only shrink that part",
        fontsize=10,
    )
    ax.legend(frameon=False, loc="lower right")
    return fig


def plot_accuracy_vs_speed(
    rows: "list[BenchmarkRow]", batch_size: int, min_cosine: float = 0.995
) -> Figure:
    """Each variant as a point: speedup over FP32 at one batch size (x) against 1 - the minimum
    cosine of its embeddings to FP32's (y, log scale, lower is more accurate), with the
    accuracy goal 1 - min_cosine as a dashed line. FP32 itself (1 - cosine ~ 0) is left out."""
    selected = [row for row in _rows_at(rows, batch_size) if row.variant != "FP32"]
    floor = 1e-7  # keeps a perfect cosine visible on the log axis
    fig = Figure(figsize=(8, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, row in enumerate(selected):
        error = max(1 - row.min_cosine, floor)
        ax.scatter(row.speedup, error, s=40)
        offset = (6, 4) if i % 2 == 0 else (6, -11)  # alternate above/below: neighbours overlap
        ax.annotate(
            row.variant, (row.speedup, error), textcoords="offset points", xytext=offset, fontsize=8
        )
    ax.axhline(
        1 - min_cosine,
        color="black",
        linewidth=0.8,
        linestyle="--",
        label=f"goal: cosine >= {min_cosine}",
    )
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":", label="as fast as FP32")
    ax.set_yscale("log")
    ax.set_xlabel(f"speedup over FP32 at batch {batch_size} (x)")
    ax.set_ylabel("1 - min cosine to FP32 (log, lower is better)")
    good = [row for row in selected if row.min_cosine >= min_cosine]
    fastest = max(good, key=lambda row: row.speedup) if good else None
    title = (
        f"Fastest variant within the accuracy goal at batch {batch_size}: "
        f"{fastest.variant} ({fastest.speedup:.1f}x)"
        if fastest
        else f"No variant meets cosine >= {min_cosine}"
    )
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, loc="lower right")
    ax.margins(x=0.25)
    return fig


def plot_activation_sqnr(stats: "list[ActivationStats]") -> Figure:
    """SQNR of each linear layer's int8 input with one scale per tensor and one per token, in
    layer order (dB, higher is better). The title gives the largest gain and where it is."""
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(stats))
    per_tensor = [item.sqnr_per_tensor_db for item in stats]
    per_token = [item.sqnr_per_token_db for item in stats]
    ax.plot(x, per_tensor, "o-", color="#ff7f0e", label="one scale per tensor")
    ax.plot(x, per_token, "s-", color="#1f77b4", label="one scale per token (W8A8Linear)")
    ax.set_xticks(x, [item.layer for item in stats], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("linear layer whose input is quantized")
    ax.set_ylabel("SQNR of the int8 input (dB)")
    gains = [token - tensor for tensor, token in zip(per_tensor, per_token, strict=True)]
    best = int(np.argmax(gains))
    ax.set_title(
        f"Per-token scales gain up to {gains[best]:.1f} dB ({stats[best].layer})",
        fontsize=10,
    )
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


__all__ += [
    "plot_int8_speedups",
    "plot_time_breakdown",
    "plot_accuracy_vs_speed",
    "plot_activation_sqnr",
]
