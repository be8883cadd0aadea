"""Lesson 3: model precision: figures.

The idea: how far a cast model's logits and embeddings move from FP32's. Each function takes
results computed elsewhere in tutorlib and returns a matplotlib Figure with labelled axes and a
title that states the finding; the notebook decides whether to display it.

Left out on purpose: per-layer views (Lesson 5 profiles layers).
"""

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from tutorlib._checks import check_float_tensor
from tutorlib.plotting._figure import new_figure

__all__ = ["plot_logit_differences", "plot_embedding_cosines"]


# The notes' SimpleCNN, FP32 vs BF16 logits: mean ~0.00022, max ~0.00061 (the original notes,
# Lesson 3).
_NOTES_LOGIT_DIFFS = {"notes' mean (BF16)": 0.00022, "notes' max (BF16)": 0.00061}
_DIFF_FLOOR = 1e-9  # an embedding equal to FP32's is drawn at this floor on the log axis


def _check_labelled_tensors(value: object, name: str) -> dict[str, torch.Tensor]:
    """A non-empty mapping {label: finite float tensor}, e.g. {"bfloat16": differences}."""
    if not isinstance(value, Mapping) or not value:
        raise TypeError(f"{name} must be a non-empty dict {{label: tensor}}, got {value!r:.60}")
    return {
        str(label): check_float_tensor(tensor, f"{name}[{label!r}]")
        for label, tensor in value.items()
    }


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
    differences = _check_labelled_tensors(differences, "differences")
    reference_lines = _NOTES_LOGIT_DIFFS if reference_lines is None else reference_lines
    if not isinstance(reference_lines, Mapping):
        raise TypeError(f"reference_lines must be a dict {{label: x}}, got {reference_lines!r:.60}")
    values = {label: diff.detach().double().flatten() for label, diff in differences.items()}
    positive = torch.cat([diff[diff > 0] for diff in values.values()])
    if any(bool((diff < 0).any()) for diff in values.values()) or positive.numel() == 0:
        raise ValueError("differences must be absolute differences (>= 0), some of them positive")
    low, high = positive.min().item(), positive.max().item()
    bins = np.logspace(np.log10(low) - 0.1, np.log10(high) + 0.1, 40)
    fig = new_figure(9, 4.2)
    ax = fig.subplots()
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
    return fig


def plot_embedding_cosines(cosines: dict[str, torch.Tensor]) -> Figure:
    """One dot per sentence: 1 - cosine(embedding in a dtype, FP32 embedding), log axis.

    ``cosines`` maps a dtype name to the (n_sentences,) cosine similarities to FP32. The title
    gives the smallest cosine of each dtype.
    """
    cosines = _check_labelled_tensors(cosines, "cosines")
    fig = new_figure(9, 3.2)
    ax = fig.subplots()
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
    return fig
