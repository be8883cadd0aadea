"""Lesson 2: the error of a dot product in low precision: figures.

The idea: the relative error against the vector length for each format, accumulation mode and
input distribution, with the bounds; and a running sum that stalls. Each function takes results
computed elsewhere in tutorlib and returns a matplotlib Figure with labelled axes and a title
that states the finding; the notebook decides whether to display it.

Left out on purpose: error bars beyond the middle half of the draws.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from tutorlib._checks import check_float_tensor, dtype_name
from tutorlib.formats.error_bounds import deterministic_bound, unit_roundoff
from tutorlib.formats.error_growth import ErrorCurves
from tutorlib.plotting._figure import new_figure

__all__ = ["plot_error_vs_length", "plot_running_sum"]


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
    if not isinstance(curves, ErrorCurves):
        raise TypeError(
            f"curves must be the ErrorCurves that run_experiment returns, got "
            f"{type(curves).__name__}."
        )
    dtypes = list(dict.fromkeys(key[0] for key in curves.errors))
    distributions = list(dict.fromkeys(key[1] for key in curves.errors))
    fig = new_figure(9.5, 3.3 * len(dtypes) + 2.3, constrained=False)
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
    for name, sums in (("low_precision_sums", low_precision_sums), ("exact_sums", exact_sums)):
        check_float_tensor(sums, name)  # real, non-empty, finite
        if sums.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one partial sum per term), got {sums.shape}.")
    if low_precision_sums.shape != exact_sums.shape:
        raise ValueError(
            f"low_precision_sums and exact_sums must have one length, got "
            f"{len(low_precision_sums)} and {len(exact_sums)}."
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}.")
    k = np.arange(1, len(exact_sums) + 1)
    low = low_precision_sums.detach().double().numpy()
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    ax.plot(k, exact_sums.detach().double().numpy(), color="black", label="exact (float64)")
    name = dtype_name(dtype)
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
    return fig
