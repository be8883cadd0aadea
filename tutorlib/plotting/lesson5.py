"""Lesson 5: fast int8 inference: figures.

The idea: each variant's speedup, where its time goes, accuracy against speed, and per-token
against per-tensor activation SQNR. Each function takes results computed elsewhere in tutorlib
and returns a matplotlib Figure with labelled axes and a title that states the finding; the
notebook decides whether to display it.

Left out on purpose: figures of single layers (the lesson prints those numbers).
"""

import numpy as np
from matplotlib.figure import Figure

from tutorlib._checks import check_int, check_real
from tutorlib.perf.activations import ActivationStats
from tutorlib.perf.benchmark import BenchmarkRow, _check_rows
from tutorlib.plotting._figure import new_figure

__all__ = [
    "plot_int8_speedups",
    "plot_time_breakdown",
    "plot_accuracy_vs_speed",
    "plot_activation_sqnr",
]


def _rows_at(rows: "list[BenchmarkRow]", batch_size: int) -> "list[BenchmarkRow]":
    """The rows of one batch size, in their order; ValueError if there are none."""
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    selected = [row for row in _check_rows(rows) if row.batch_size == batch_size]
    if not selected:
        raise ValueError(f"no benchmark rows at batch size {batch_size}")
    return selected


def plot_int8_speedups(rows: "list[BenchmarkRow]", machine: str) -> Figure:
    """Bars of each variant's speedup over FP32 (FP32 latency / its latency), one bar per batch
    size, with a line at 1 (as fast as FP32). The title names the fastest variant at the
    largest batch and the machine."""
    rows = _check_rows(rows)
    if not isinstance(machine, str):
        raise TypeError(f"machine must be the machine's name (str), got {machine!r}")
    batch_sizes = sorted({row.batch_size for row in rows})
    variants = list(dict.fromkeys(row.variant for row in rows))
    fig = new_figure(9, 4.2)
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
    fig = new_figure(9, 4)
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
    min_cosine = check_real(min_cosine, "min_cosine", -1.0, 1.0)
    selected = [row for row in _rows_at(rows, batch_size) if row.variant != "FP32"]
    floor = 1e-7  # keeps a perfect cosine visible on the log axis
    fig = new_figure(8, 4.2)
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
    if not isinstance(stats, list | tuple) or not all(
        isinstance(s, ActivationStats) for s in stats
    ):
        raise TypeError("stats must be a list of ActivationStats (from activation_stats)")
    if not stats:
        raise ValueError("stats is empty: give at least one layer's ActivationStats")
    fig = new_figure(10, 4)
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
