"""Lesson 7: a real language model in four bits: figures.

The idea: what each bit of a weight is worth in KL divergence to the reference model, one line
per quantization method, and how fast each storage decodes one token at a time. Each function
takes results computed elsewhere in tutorlib and returns a matplotlib Figure with labelled axes
and a title that states the finding.

Left out on purpose: per-layer figures (Lesson 6 has them) and figures of generated text.
"""

import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from tutorlib.plotting._figure import new_figure

__all__ = ["plot_kl_vs_bits", "plot_decode_speeds"]

_MARKERS = "osD^v<>p"


def _finite_positive(values: object, what: str) -> list[float]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise TypeError(f"{what} must be a non-empty list of numbers")
    numbers = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{what} must hold numbers, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what} must hold finite positive numbers, got {value!r}")
        numbers.append(float(value))
    return numbers


def plot_kl_vs_bits(
    bits_per_weight: Mapping[str, Sequence[float]], kl: Mapping[str, Sequence[float]]
) -> Figure:
    """KL(reference || variant) per token against bits per weight, one line per method.

    Both dicts map a method (e.g. "RTN", "GPTQ") to one value per variant; the points of a
    line are sorted by size. The KL axis is logarithmic: each bit removed multiplies the KL.
    Lower and to the left is better. A KL of exactly 0 (a variant identical to the reference)
    cannot be drawn on a log axis: leave it out.
    """
    if not isinstance(bits_per_weight, Mapping) or not isinstance(kl, Mapping):
        raise TypeError("bits_per_weight and kl must be dicts {method: [values]}")
    if not bits_per_weight or set(bits_per_weight) != set(kl):
        raise ValueError("bits_per_weight and kl must name the same methods")
    fig = new_figure(7.5, 4.2)
    ax = fig.subplots()
    for marker, (method, sizes) in zip(_MARKERS * 4, bits_per_weight.items(), strict=False):
        xs = _finite_positive(sizes, f"bits_per_weight[{method!r}]")
        ys = _finite_positive(kl[method], f"kl[{method!r}]")
        if len(xs) != len(ys):
            raise ValueError(f"method {method!r}: give one KL per size")
        points = sorted(zip(xs, ys, strict=True))
        ax.plot(*zip(*points, strict=True), marker=marker, label=method)
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight of the linear layers (scales, offsets, zero points included)")
    ax.set_ylabel("KL(reference || variant), nats per token")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Each bit removed multiplies the KL; GPTQ and AWQ buy part of it back")
    return fig


def plot_decode_speeds(
    tokens_per_second: Mapping[str, float], gigabytes_per_second: Mapping[str, float]
) -> Figure:
    """Tokens per second at batch 1 of each storage, as bars labelled with the GB/s of weights
    they read. The fastest bar is named in the title."""
    if not isinstance(tokens_per_second, Mapping) or not tokens_per_second:
        raise TypeError("tokens_per_second must be a non-empty dict {variant: tokens/s}")
    if not isinstance(gigabytes_per_second, Mapping) or set(gigabytes_per_second) != set(
        tokens_per_second
    ):
        raise ValueError("gigabytes_per_second must name the same variants as tokens_per_second")
    names = list(tokens_per_second)
    speeds = _finite_positive([tokens_per_second[n] for n in names], "tokens_per_second")
    rates = _finite_positive([gigabytes_per_second[n] for n in names], "gigabytes_per_second")
    fig = new_figure(7.5, 0.45 * len(names) + 1.4)
    ax = fig.subplots()
    bars = ax.barh(range(len(names)), speeds, color="#1f77b4")
    ax.bar_label(bars, [f" {r:.1f} GB/s" for r in rates], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.3 * max(speeds))
    ax.set_xlabel("tokens per second at batch 1 (labels: weight bytes read per second)")
    fastest = names[speeds.index(max(speeds))]
    ax.set_title(f"Decoding one token at a time: {fastest} is fastest on this CPU")
    return fig
