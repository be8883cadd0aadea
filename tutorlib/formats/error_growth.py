"""Lesson 2: how the error of a low-precision dot product grows with its length.

Seeded experiments over lengths and draws (uniform and normal inputs), the median relative error
per length, its growth exponent (about 1/2 when rounding errors cancel, 1 when they are
biased), and the first length at which float16 overflows.
Left out on purpose: distributions other than rand and randn, and confidence intervals.
"""

import math
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm import tqdm

from tutorlib._checks import check_choice, check_float_tensor, check_int, check_names, dtype_name
from tutorlib.formats.dot_products import (
    ACCUMULATE_MODES,
    DOT_DTYPES,
    SEQUENTIAL_MAX_N,
    _check_dtype,
    _check_dtype_and_mode,
    _dot_rows,
    _relative_error,
    _running_sums,
    split_error,
)

__all__ = [
    "signed_errors_of_draws",
    "ErrorCurves",
    "run_experiment",
    "growth_exponent",
    "growth_exponent_table",
    "median_error_table",
    "first_overflow_length",
    "sums_rounded_once",
]


_DISTRIBUTIONS = {"randn": torch.randn, "rand": torch.rand}


def signed_errors_of_draws(
    distribution: str,
    n: int,
    dtype: torch.dtype,
    accumulate: str = "sequential",
    draws: int = 8,
    seed: int = 0,
) -> list[float]:
    """Signed relative errors (fl(x.y) - x.y) / |x.y| of ``draws`` random pairs of length n.

    Draw i takes x, y = sample(2, n) from a generator seeded with seed + i, where sample is
    torch.randn (zero-mean) or torch.rand (all-positive, in [0, 1)); the error is
    split_error(x, y, dtype, accumulate).total. Their signs show whether rounding errors cancel.
    Example: "rand", n = 200, bfloat16, sequential: all eight errors are negative.
    """
    _check_distribution(distribution)
    _check_dtype_and_mode(dtype, accumulate)
    n_max = SEQUENTIAL_MAX_N if accumulate == "sequential" else None
    n = check_int(n, "n", minimum=1, maximum=n_max)
    draws = check_int(draws, "draws", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    sample = _DISTRIBUTIONS[distribution]
    errors = []
    for i in range(draws):
        x, y = sample(2, n, generator=torch.Generator().manual_seed(seed + i))
        errors.append(split_error(x, y, dtype, accumulate).total)
    return errors


@dataclass(frozen=True)
class ErrorCurves:
    """Relative errors of the experiment, one (draws, len(lengths)) tensor per curve.

    errors[(dtype name, distribution, mode)] holds float64 relative errors (inf where the result
    overflowed the dtype), measured at the lengths lengths[(dtype name, distribution, mode)];
    condition[distribution] holds kappa and exact[distribution] the float64 x.y at
    ``all_lengths`` for every draw, (draws, len(all_lengths)).
    """

    all_lengths: list[int]
    lengths: dict[tuple[str, str, str], list[int]]
    errors: dict[tuple[str, str, str], torch.Tensor]
    condition: dict[str, torch.Tensor]
    exact: dict[str, torch.Tensor]

    def _check_key(self, key: object) -> tuple[str, str, str]:
        if not isinstance(key, tuple) or key not in self.errors:
            raise ValueError(
                f"key must be a (dtype name, distribution, mode) tuple of this experiment, "
                f"e.g. {next(iter(self.errors))!r}; got {key!r}."
            )
        return key

    def median_at(self, key: tuple[str, str, str], n: int) -> float:
        """Median over the draws of the relative error of curve ``key`` at length n."""
        key = self._check_key(key)
        n = check_int(n, "n", minimum=1)
        if n not in self.lengths[key]:
            raise ValueError(f"n={n} was not measured for {key}; use one of {self.lengths[key]}.")
        return self.errors[key][:, self.lengths[key].index(n)].median().item()

    def exponent(self, key: tuple[str, str, str], n_max: int = SEQUENTIAL_MAX_N) -> float:
        """``growth_exponent`` of curve ``key`` over its lengths n <= n_max with finite errors."""
        key = self._check_key(key)
        n_max = check_int(n_max, "n_max", minimum=1)
        errors = self.errors[key]  # (draws, len(lengths))
        keep = [
            i
            for i, n in enumerate(self.lengths[key])
            if n <= n_max and bool(torch.isfinite(errors[:, i]).all())
        ]
        if len(keep) < 2:
            raise ValueError(
                f"n_max={n_max} leaves fewer than two lengths with finite errors for {key}; "
                f"raise n_max (lengths: {self.lengths[key]})."
            )
        return growth_exponent([self.lengths[key][i] for i in keep], errors[:, keep])


def _draw(distribution: str, draws: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sample = _DISTRIBUTIONS[distribution]
    return sample(draws, n, generator=generator), sample(draws, n, generator=generator)


def _curves_for_dtype(
    xd: torch.Tensor, yd: torch.Tensor, exact: torch.Tensor, lengths: list[int]
) -> dict[str, tuple[list[int], torch.Tensor]]:
    """Relative errors of the three modes on every prefix xd[:, :n] (inputs already in dtype).

    exact is the float64 dot product of the original prefixes, (rows, len(lengths)).
    """
    curves = {}
    for mode in ("native", "pairwise"):
        values = torch.stack([_dot_rows(xd[:, :n], yd[:, :n], mode) for n in lengths], 1)
        curves[mode] = (lengths, _relative_error(values, exact))
    # Sequential: one pass gives every prefix's sum, up to SEQUENTIAL_MAX_N.
    short = [n for n in lengths if n <= SEQUENTIAL_MAX_N]
    running = _running_sums(xd[:, : short[-1]] * yd[:, : short[-1]]).double()  # (draws, n)
    values = running[:, [n - 1 for n in short]]
    values = torch.where(values.isnan(), math.inf, values)  # +inf met -inf: an overflow
    curves["sequential"] = (short, _relative_error(values, exact[:, : len(short)]))
    return curves


def _prefix_sums(values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Sums of values[:, :n] for every n in the increasing ``lengths``; each segment summed once."""
    bounds = [0, *lengths]
    segments = [values[:, start:stop].sum(-1) for start, stop in zip(bounds, lengths, strict=False)]
    return torch.stack(segments, 1).cumsum(1)  # (rows, len(lengths))


def _check_lengths(lengths: object, name: str = "lengths") -> list[int]:
    """A non-empty list or tuple of positive ints (not a string, not bools or floats)."""
    if not isinstance(lengths, list | tuple) or not lengths:
        raise TypeError(f"{name} must be a non-empty list of positive ints, got {lengths!r}.")
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must hold positive ints (vector lengths), got {n!r}.")
    return list(lengths)


def _check_experiment_arguments(
    lengths: object, dtypes: object, distributions: object, draws: object, seed: object
) -> None:
    _check_lengths(lengths)
    if sorted(set(lengths)) != list(lengths):
        raise ValueError(f"lengths must be strictly increasing, e.g. [10, 100, 1000]: {lengths}.")
    if lengths[0] > SEQUENTIAL_MAX_N:
        raise ValueError(
            f"the first of lengths must be at most SEQUENTIAL_MAX_N={SEQUENTIAL_MAX_N}."
        )
    if not isinstance(dtypes, list | tuple) or not dtypes:
        raise TypeError(f"dtypes must be a non-empty tuple of torch dtypes, got {dtypes!r}.")
    for dtype in dtypes:
        _check_dtype(dtype, "dtypes")
    for distribution in check_names(distributions, "distributions") or [None]:
        _check_distribution(distribution, "distributions")
    draws = check_int(draws, "draws", minimum=1)
    seed = check_int(seed, "seed", minimum=0)


def run_experiment(
    lengths: list[int],
    dtypes: tuple[torch.dtype, ...] = DOT_DTYPES,
    distributions: tuple[str, ...] = ("randn", "rand"),
    draws: int = 8,
    seed: int = 0,
) -> ErrorCurves:
    """Relative error of every mode versus the vector length n, for each dtype and distribution.

    For each distribution, ``draws`` pairs of float32 vectors of length max(lengths) are drawn
    with a seeded generator (seed + the distribution's position in ``distributions``); the
    vectors of length n are their first n entries (so one sequential pass measures every n).
    "sequential" is measured for n <= SEQUENTIAL_MAX_N only. All distributions' draws are
    stacked as rows and computed together, one dtype at a time.
    Example: run_experiment([10, 100], draws=3).errors[("bfloat16", "rand", "sequential")] is a
    (3, 2) tensor of relative errors.
    """
    _check_experiment_arguments(lengths, dtypes, distributions, draws, seed)
    draws, seed = int(draws), int(seed)  # NumPy integers too
    pairs = [_draw(name, draws, lengths[-1], seed + i) for i, name in enumerate(distributions)]
    x = torch.cat([pair[0] for pair in pairs])  # (len(distributions) * draws, n_max)
    y = torch.cat([pair[1] for pair in pairs])  # (len(distributions) * draws, n_max)
    products = x.double() * y.double()  # (rows, n_max), exact: float32 * float32 fits float64
    exact = _prefix_sums(products, lengths)  # (rows, len(lengths))
    absolute = _prefix_sums(products.abs(), lengths)  # (rows, len(lengths))
    condition = dict(zip(distributions, (absolute / exact.abs()).split(draws), strict=True))
    exact_by_distribution = dict(zip(distributions, exact.split(draws), strict=True))
    errors, curve_lengths = {}, {}
    for dtype in tqdm(dtypes, desc="dtypes"):
        name = dtype_name(dtype)
        curves = _curves_for_dtype(x.to(dtype), y.to(dtype), exact, lengths)
        for mode, (ns, relative) in curves.items():
            for distribution, rows in zip(distributions, relative.split(draws), strict=True):
                curve_lengths[(name, distribution, mode)] = ns
                errors[(name, distribution, mode)] = rows
    return ErrorCurves(list(lengths), curve_lengths, errors, condition, exact_by_distribution)


def growth_exponent(lengths: list[int], errors: torch.Tensor) -> float:
    """Slope b of the least-squares line log10(error) = a + b log10(n) through per-n medians.

    errors is (draws, len(lengths)) of finite, non-negative relative errors; the median over
    draws is taken first, and lengths where it is 0 are skipped. b = 0.5 means the error grows
    like sqrt(n), b = 1 like n. Example: medians 1e-3, 1e-2 at n = 10, 1000 give b = 0.5.
    """
    lengths = _check_lengths(lengths)
    check_float_tensor(errors, "errors")  # real, non-empty, finite
    if errors.dim() != 2 or errors.shape[1] != len(lengths):
        raise ValueError(
            f"errors must be (draws, len(lengths)) = (draws, {len(lengths)}), "
            f"got shape {tuple(errors.shape)}."
        )
    if (errors < 0).any():
        raise ValueError("errors must be relative errors, >= 0; pass their absolute values.")
    medians = errors.detach().median(dim=0).values.double()  # (len(lengths),)
    log_n = torch.tensor(lengths, dtype=torch.float64).log10()
    keep = medians > 0
    if keep.sum() < 2 or len(set(log_n[keep].tolist())) < 2:
        raise ValueError("errors: need at least two distinct lengths with a non-zero median error.")
    log_n, log_e = log_n[keep], medians[keep].log10()
    centred = log_n - log_n.mean()
    return ((centred * (log_e - log_e.mean())).sum() / (centred**2).sum()).item()


def _experiment_order(curves: ErrorCurves):
    """Sort key of curve keys: by distribution, then dtype, as the experiment ran them."""
    distributions = list(curves.condition)
    dtypes = list(dict.fromkeys(key[0] for key in curves.errors))
    return lambda key: (distributions.index(key[1]), dtypes.index(key[0]))


def growth_exponent_table(
    curves: ErrorCurves, n_max: int = SEQUENTIAL_MAX_N, omit_cpu_dependent: bool = False
) -> pd.DataFrame:
    """Growth exponent b (error ~ n**b) of every curve, rows (inputs, dtype), columns modes.

    Each entry is curves.exponent(key, n_max); NaN where fewer than two lengths are usable.
    float32's "native" mode is the CPU's float32 dot kernel, whose order of summation (blocking,
    vector width) differs between CPUs, so its first decimal can too: omit_cpu_dependent=True
    leaves those entries NaN. Example: zero-mean inputs accumulated sequentially in the dtype
    give b near 0.5; the float32 accumulator of float16 and bfloat16 gives b near 0.
    """
    _check_curves(curves)
    n_max = check_int(n_max, "n_max", minimum=1)
    rows = {}
    for dtype, distribution, mode in sorted(curves.errors, key=_experiment_order(curves)):
        cpu_dependent = (dtype, mode) == ("float32", "native")
        try:
            b = curves.exponent((dtype, distribution, mode), n_max)
        except ValueError:  # fewer than two usable lengths
            b = math.nan
        rows.setdefault((distribution, dtype), {})[mode] = (
            math.nan if cpu_dependent and omit_cpu_dependent else b
        )
    table = pd.DataFrame.from_dict(rows, orient="index")  # rows in the experiment's order
    return table.rename_axis(["inputs", "dtype"])[["native", "pairwise", "sequential"]]


def median_error_table(
    curves: ErrorCurves,
    dtype: torch.dtype,
    distribution: str,
    lengths: list[int],
    modes: tuple[str, ...] = ("sequential", "native"),
) -> pd.DataFrame:
    """Median relative error over the draws at each n of ``lengths``, one column per mode.

    Entry (n, mode) = curves.median_at((dtype name, distribution, mode), n).
    Example: bfloat16, "rand", n = 100000: sequential about 0.99 (stalled), native about 1e-3.
    """
    _check_curves(curves)
    _check_dtype(dtype)
    _check_distribution(distribution)
    lengths = _check_lengths(lengths)
    for mode in check_names(modes, "modes"):
        check_choice(mode, "modes", ACCUMULATE_MODES)
    name = dtype_name(dtype)
    table = {
        mode: [curves.median_at((name, distribution, mode), n) for n in lengths] for mode in modes
    }
    return pd.DataFrame(table, index=pd.Index(lengths, name="n"))


def first_overflow_length(curves: ErrorCurves, key: tuple[str, str, str]) -> int | None:
    """The first length n at which some draw of curve ``key`` overflowed (error inf), or None.

    Example: float16, all-positive inputs, native: n products of mean 1/4 sum to about n / 4,
    beyond float16's 65504 from n of about 262000 on.
    """
    key = _check_curves(curves)._check_key(key)
    overflowed = curves.errors[key].isinf().any(dim=0)  # (len(lengths),)
    if not overflowed.any():
        return None
    return curves.lengths[key][int(overflowed.nonzero()[0])]


def _check_distribution(distribution: object, name: str = "distribution") -> None:
    if not isinstance(distribution, str) or distribution not in _DISTRIBUTIONS:
        raise ValueError(f"{name} must be 'randn' or 'rand', got {distribution!r}.")


def _check_curves(curves: object) -> ErrorCurves:
    if not isinstance(curves, ErrorCurves):
        raise TypeError(
            f"curves must be the ErrorCurves that run_experiment returns, got "
            f"{type(curves).__name__}."
        )
    return curves


def sums_rounded_once(
    curves: ErrorCurves, distribution: str, n: int, dtype: torch.dtype
) -> pd.DataFrame:
    """Each draw's exact x.y at length n, rounded once to ``dtype``, next to the native error.

    Columns: exact (float64 x.y), rounded_once (fl(x.y) in dtype, through float32 as PyTorch
    converts), spacing (the gap from |rounded_once| to the next dtype number), error_once
    (|rounded_once - exact| / |exact|) and native_error (the experiment's native mode). When the
    two error columns agree, the native error is the final rounding alone.
    Example: all-positive n = 10**6 in bfloat16: eight sums near 250000, spacing 1024 there.
    """
    _check_curves(curves)
    _check_distribution(distribution)
    _check_dtype(dtype)
    n = check_int(n, "n", minimum=1)
    if n not in curves.all_lengths or distribution not in curves.exact:
        raise ValueError(f"n={n} or {distribution!r} was not measured; n in {curves.all_lengths}.")
    exact = curves.exact[distribution][:, curves.all_lengths.index(n)]  # (draws,)
    rounded = exact.float().to(dtype)  # (draws,)
    following = torch.nextafter(rounded.abs(), torch.tensor(math.inf, dtype=dtype))
    native_key = (dtype_name(dtype), distribution, "native")
    native = curves.errors[native_key][:, curves.lengths[native_key].index(n)]  # (draws,)
    return pd.DataFrame(
        {
            "exact": exact.tolist(),
            "rounded_once": rounded.double().tolist(),
            "spacing": (following.double() - rounded.abs().double()).tolist(),
            "error_once": _relative_error(rounded.double(), exact).tolist(),
            "native_error": native.tolist(),
        },
        index=pd.RangeIndex(len(exact), name="draw"),
    )
