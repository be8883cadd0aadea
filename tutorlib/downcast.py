"""Lesson 2: the error of a dot product whose inputs are downcast to a low-precision float.

A dot product in bfloat16 makes two kinds of error: rounding the inputs to bfloat16, and rounding
while it accumulates the sum; the second depends entirely on how the sum is accumulated. This
module computes the dot product three ways ("native", "sequential", "pairwise"), splits the
error into its two sources, and returns the deterministic and probabilistic bounds of the theory
(Higham 2002, section 3.1; Higham & Mary 2019) next to an experiment that measures the real thing.

It leaves out: fused multiply-add, compensated (Kahan) summation, stochastic rounding, and float8
arithmetic (PyTorch on CPU cannot add float8 tensors; ``unit_roundoff`` still covers them).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from tutorlib._checks import dtype_name

__all__ = [
    "ACCUMULATE_MODES",
    "DOT_DTYPES",
    "SEQUENTIAL_MAX_N",
    "DotResult",
    "ErrorCurves",
    "ErrorSplit",
    "condition_number",
    "deterministic_bound",
    "dot",
    "gamma",
    "growth_exponent",
    "pairwise_sum",
    "probabilistic_bound",
    "run_experiment",
    "sequential_partial_sums",
    "split_error",
    "unit_roundoff",
]

ACCUMULATE_MODES = ("native", "sequential", "pairwise")
# The dtypes PyTorch can multiply and add on CPU among the ones the course compares.
DOT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# "sequential" in bfloat16 is a Python loop of one tensor addition per term (4 to 10 microseconds
# a step on this course's CPU): 10**5 terms take about a second; 10**6 would dominate the lesson.
SEQUENTIAL_MAX_N = 10**5


def unit_roundoff(dtype: torch.dtype) -> float:
    """Unit roundoff u = eps / 2 = 2**-p of a float dtype, p = significand bits with the hidden one.

    Rounding to nearest turns any real r in the dtype's normal range into r (1 + delta) with
    |delta| <= u (Higham 2002, section 2.1). eps = 2**(1 - p) comes from ``torch.finfo``.
    Example: bfloat16 keeps p = 8 bits, so eps = 2**-7 and u = 2**-8 = 0.00390625.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"unit_roundoff needs a floating-point torch.dtype, got {dtype!r}.")
    return torch.finfo(dtype).eps / 2


def gamma(n: int, u: float) -> float:
    """gamma_n = n u / (1 - n u), the constant of the deterministic error bounds (Higham 2002, 3.4).

    It is only defined while n u < 1; for n u >= 1 this returns ``math.inf``: the bound still
    holds but says nothing. Example: n = 10, u = 2**-8 gives 10/256 / (1 - 10/256) = 0.0407.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer (a number of roundings), got {n!r}.")
    if not 0 < u < 1:
        raise ValueError(f"u must be a unit roundoff in (0, 1), got {u!r}.")
    n_u = n * u
    return math.inf if n_u >= 1 else n_u / (1 - n_u)


def deterministic_bound(n: int, dtype: torch.dtype) -> float:
    """Worst-case |fl(x.y) - x.y| / (|x|.|y|) for a dot product of n terms in ``dtype``.

    |fl(x.y) - x.y| <= gamma_n |x|.|y| (Higham 2002, eq. 3.5), for vectors already in ``dtype``
    and any order of summation: each term meets at most n roundings (one multiply, n - 1 adds).
    Rounding the inputs first adds two roundings per term: use n + 2 for the total error.
    Example: n = 100 in bfloat16: gamma_100 = 0.390625 / 0.609375 = 0.641.
    """
    return gamma(n, unit_roundoff(dtype))


def probabilistic_bound(n: int, dtype: torch.dtype, lam: float = 1.0) -> float:
    """The probabilistic bound's leading term lam * sqrt(n) * u (Higham & Mary 2019).

    If the rounding errors behave like independent random variables of mean zero, the error of a
    dot product is at most about lam sqrt(n) u |x|.|y|, with a probability that tends to 1
    quickly as the small constant lam grows. lam = 1 is the typical size, not a guarantee.
    Example: n = 10**4 in bfloat16 with lam = 1: 100 * 2**-8 = 0.390625.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer (the vector length), got {n!r}.")
    if not lam > 0:
        raise ValueError(f"lam must be a positive constant, got {lam!r}.")
    return lam * math.sqrt(n) * unit_roundoff(dtype)


def _check_vectors(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}.")
        if not v.dtype.is_floating_point:
            raise TypeError(
                f"{name} has dtype {v.dtype}; pass real floating-point values, "
                f"e.g. {name}.to(torch.float32)."
            )
        if v.dim() != 1:
            raise ValueError(f"{name} must be a 1-D vector, got shape {tuple(v.shape)}.")
        if v.numel() == 0:
            raise ValueError(f"{name} is empty; a dot product needs at least one term.")
        if not torch.isfinite(v).all():
            raise ValueError(
                f"{name} contains inf or NaN; the error of a dot product needs finite inputs."
            )
    if x.numel() != y.numel():
        raise ValueError(f"x and y must have the same length, got {x.numel()} and {y.numel()}.")


def _check_dtype_and_mode(dtype: torch.dtype, accumulate: str) -> None:
    if dtype not in DOT_DTYPES:
        names = ", ".join(str(d) for d in DOT_DTYPES)
        raise TypeError(f"dtype must be one of {names} (PyTorch's CPU arithmetic), got {dtype!r}.")
    if accumulate not in ACCUMULATE_MODES:
        raise ValueError(f"accumulate must be one of {ACCUMULATE_MODES}, got {accumulate!r}.")


def _running_sums(products: torch.Tensor) -> torch.Tensor:
    """Left-to-right partial sums of each row, rounded to the rows' dtype after every addition.

    NumPy's ``add.accumulate`` does exactly that in a C loop for float16 and float32 (each step
    is one addition of two arrays of that dtype). NumPy has no bfloat16, so bfloat16 runs a
    Python loop of one torch addition per term, for all rows at once.
    """
    if products.dtype != torch.bfloat16:
        return torch.from_numpy(np.add.accumulate(products.numpy(), axis=-1))  # (rows, n)
    terms = products.T.contiguous()  # (n, rows): one row of terms per step
    sums = torch.empty_like(terms)  # (n, rows)
    total = torch.zeros_like(terms[0])  # (rows,)
    for k, term in enumerate(terms):
        total = total + term  # one addition, rounded to bfloat16
        sums[k] = total
    return sums.T  # (rows, n)


def sequential_partial_sums(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Every partial sum s_k = fl(s_{k-1} + fl(x_k y_k)) of a dot product accumulated in ``dtype``.

    x and y are first rounded to ``dtype`` (``x.to(dtype)``), then each product and each
    addition is rounded to ``dtype``: the naive low-precision accumulator. Returns the n partial
    sums in ``dtype``. Limited to n <= SEQUENTIAL_MAX_N (bfloat16 needs a Python loop).
    Example: x = [256, 0.75, 0.75], y = [1, 1, 1] in bfloat16 gives [256, 256, 256]: next to 256
    bfloat16 counts in steps of 2, so adding 0.75 rounds back to 256.
    """
    _check_vectors(x, y)
    _check_dtype_and_mode(dtype, "sequential")
    if x.numel() > SEQUENTIAL_MAX_N:
        raise ValueError(
            f"sequential accumulation is limited to {SEQUENTIAL_MAX_N} terms (a Python loop); "
            f"got {x.numel()}. Use accumulate='pairwise' or 'native' for longer vectors."
        )
    products = x.to(dtype) * y.to(dtype)  # each product rounded to dtype
    return _running_sums(products[None])[0]


def _pairwise_sums(terms: torch.Tensor) -> torch.Tensor:
    """Sum each row by adding neighbours level by level, rounding to the dtype after each add."""
    n = terms.shape[-1]
    width = 1 << (n - 1).bit_length()  # next power of two; padding with zeros adds exactly 0
    level = torch.nn.functional.pad(terms, (0, width - n))  # (rows, width)
    while level.shape[-1] > 1:
        level = level[..., 0::2] + level[..., 1::2]  # (rows, width / 2): one rounding per add
    return level[..., 0]  # (rows,)


def pairwise_sum(terms: torch.Tensor) -> torch.Tensor:
    """Pairwise (recursive halving) sum of a 1-D tensor in its own dtype.

    Pad to the next power of two with zeros, then add neighbours, (t0 + t1), (t2 + t3), ...,
    rounding every addition to the dtype, until one number is left: a tree of depth
    ceil(log2 n), so each term meets at most ceil(log2 n) additions instead of n - 1.
    Example: [256, 0.75, 0.75, 0.75, 0.75] in bfloat16 -> (256 + 0.75) = 256, 0.75 + 0.75 = 1.5,
    0.75 + 0 = 0.75; then 256 + 1.5 = 257.5 -> 258 and 0.75; then 258 + 0.75 -> 258.
    """
    if not isinstance(terms, torch.Tensor) or not terms.dtype.is_floating_point:
        raise TypeError(f"pairwise_sum needs a floating-point torch.Tensor, got {terms!r}.")
    if terms.dim() != 1 or terms.numel() == 0:
        raise ValueError(
            f"pairwise_sum needs a non-empty 1-D tensor, got shape {tuple(terms.shape)}."
        )
    return _pairwise_sums(terms[None])[0]


def _dot_rows(xd: torch.Tensor, yd: torch.Tensor, accumulate: str) -> torch.Tensor:
    """Dot product of each row pair of (rows, n) tensors already in the dtype; float64 (rows,)."""
    if accumulate == "native":
        values = [torch.dot(x_row, y_row) for x_row, y_row in zip(xd, yd, strict=True)]
        return torch.stack(values).double()
    products = xd * yd  # (rows, n): each product rounded to the dtype
    if accumulate == "sequential":
        return _running_sums(products)[:, -1].double()
    return _pairwise_sums(products).double()


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """|value - reference| / |reference|; inf when reference is 0 but value is not, 0 if both."""
    error = (value - reference).abs()
    return torch.where(error == 0, 0.0, error / reference.abs())


@dataclass(frozen=True)
class DotResult:
    """A dot product computed in a low-precision dtype, next to its float64 reference."""

    value: float  # the result, in the dtype, converted to a Python float
    reference: float  # float64 dot product of the original (not downcast) inputs
    relative_error: float  # |value - reference| / |reference|


def dot(
    x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, accumulate: str = "native"
) -> DotResult:
    """x.y with x and y rounded to ``dtype`` and the sum accumulated as ``accumulate`` says.

    Every mode first rounds the inputs, x_hat = x.to(dtype), y_hat = y.to(dtype). Then:
    - "native": ``torch.dot(x_hat, y_hat)``, what PyTorch does. On this CPU, for float16 and
      bfloat16 it forms the products and accumulates them in float32, and rounds to ``dtype``
      once at the end (verified by the tests); for float32 it is BLAS's float32 dot.
    - "sequential": s_k = fl(s_{k-1} + fl(x_hat_k y_hat_k)), every multiply and every add rounded
      to ``dtype``, left to right; n <= SEQUENTIAL_MAX_N.
    - "pairwise": products rounded to ``dtype``, summed by ``pairwise_sum`` in ``dtype``.
    The reference is the float64 dot product of x and y themselves. Float64 inputs are rounded by
    PyTorch through float32 (a double rounding); pass float32 inputs for a single rounding.
    A fp16 result beyond its range is inf, with relative error inf (no exception).
    Example: x = [256, 0.75, 0.75, 0.75, 0.75], y = ones, bfloat16, exact 259:
    native 260 (259 rounds to even), pairwise 258, sequential 256.
    """
    _check_vectors(x, y)
    _check_dtype_and_mode(dtype, accumulate)
    if accumulate == "sequential" and x.numel() > SEQUENTIAL_MAX_N:
        sequential_partial_sums(x, y, dtype)  # raises the explanatory error
    value = _dot_rows(x.to(dtype)[None], y.to(dtype)[None], accumulate)[0]
    reference = torch.dot(x.double(), y.double())
    return DotResult(value.item(), reference.item(), _relative_error(value, reference).item())


@dataclass(frozen=True)
class ErrorSplit:
    """The signed relative error of a downcast dot product and its two sources.

    total = input_rounding + accumulation, all divided by |x.y| (x.y in float64).
    """

    total: float  # (fl(x_hat.y_hat) - x.y) / |x.y|
    input_rounding: float  # (x_hat.y_hat - x.y) / |x.y|, x_hat.y_hat computed in float64
    accumulation: float  # (fl(x_hat.y_hat) - x_hat.y_hat) / |x.y|


def split_error(
    x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, accumulate: str = "native"
) -> ErrorSplit:
    """Split the error of ``dot`` into rounding the inputs and rounding during accumulation.

    exact = x.y and rounded_inputs = x_hat.y_hat, both in float64 (products of two float32 values
    are exact in float64, so rounded_inputs is the dot product of the downcast inputs with no
    further rounding beyond float64's own); computed = dot(x, y, dtype, accumulate).value.
    Example: for the lesson's randn(1000) vectors in bfloat16 the input rounding dominates the
    native mode's error, and the accumulation dominates the sequential mode's.
    """
    result = dot(x, y, dtype, accumulate)
    exact = result.reference
    if exact == 0:
        raise ValueError("x.y is exactly 0: a relative error is undefined; use another pair.")
    rounded_inputs = torch.dot(x.to(dtype).double(), y.to(dtype).double()).item()
    scale = abs(exact)
    return ErrorSplit(
        total=(result.value - exact) / scale,
        input_rounding=(rounded_inputs - exact) / scale,
        accumulation=(result.value - rounded_inputs) / scale,
    )


def condition_number(x: torch.Tensor, y: torch.Tensor) -> float:
    """kappa = |x|.|y| / |x.y|: how much the relative error can exceed gamma_n (in float64).

    The bounds bound the error by gamma_n |x|.|y|; dividing by |x.y| gives the relative error
    bound gamma_n kappa. For all-positive terms kappa = 1; for zero-mean random terms |x.y|
    grows like sqrt(n) while |x|.|y| grows like n, so kappa grows like sqrt(n).
    Example: x = [1, -1], y = [1, 0.5]: |x|.|y| = 1.5, x.y = 0.5, kappa = 3.
    """
    _check_vectors(x, y)
    x64, y64 = x.double(), y.double()
    exact = torch.dot(x64, y64).abs().item()
    if exact == 0:
        raise ValueError("x.y is exactly 0: the condition number is infinite.")
    return torch.dot(x64.abs(), y64.abs()).item() / exact


@dataclass(frozen=True)
class ErrorCurves:
    """Relative errors of the experiment, one (draws, len(lengths)) tensor per curve.

    errors[(dtype name, distribution, mode)] holds float64 relative errors (inf where the result
    overflowed the dtype), measured at the lengths lengths[(dtype name, distribution, mode)];
    condition[distribution] holds kappa at ``all_lengths`` for every draw.
    """

    all_lengths: list[int]
    lengths: dict[tuple[str, str, str], list[int]]
    errors: dict[tuple[str, str, str], torch.Tensor]
    condition: dict[str, torch.Tensor]

    def median_at(self, key: tuple[str, str, str], n: int) -> float:
        """Median over the draws of the relative error of curve ``key`` at length n."""
        return self.errors[key][:, self.lengths[key].index(n)].median().item()

    def exponent(self, key: tuple[str, str, str], n_max: int = SEQUENTIAL_MAX_N) -> float:
        """``growth_exponent`` of curve ``key`` over its lengths n <= n_max."""
        keep = [i for i, n in enumerate(self.lengths[key]) if n <= n_max]
        return growth_exponent([self.lengths[key][i] for i in keep], self.errors[key][:, keep])


_DISTRIBUTIONS = {"randn": torch.randn, "rand": torch.rand}


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
    curves["sequential"] = (short, _relative_error(values, exact[:, : len(short)]))
    return curves


def _prefix_sums(values: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Sums of values[:, :n] for every n in the increasing ``lengths``; each segment summed once."""
    bounds = [0, *lengths]
    segments = [values[:, start:stop].sum(-1) for start, stop in zip(bounds, lengths, strict=False)]
    return torch.stack(segments, 1).cumsum(1)  # (rows, len(lengths))


def _check_experiment_arguments(
    lengths: list[int], dtypes: tuple[torch.dtype, ...], distributions: tuple[str, ...], draws: int
) -> None:
    if not lengths or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
        raise ValueError(f"lengths must be a non-empty list of positive integers, got {lengths!r}.")
    if sorted(set(lengths)) != list(lengths):
        raise ValueError("lengths must be strictly increasing, e.g. [10, 100, 1000].")
    if lengths[0] > SEQUENTIAL_MAX_N:
        raise ValueError(f"the first length must be at most SEQUENTIAL_MAX_N={SEQUENTIAL_MAX_N}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}.")
    unknown = set(distributions) - set(_DISTRIBUTIONS)
    if not distributions or unknown:
        raise ValueError(f"unknown distributions {sorted(unknown)}; use 'randn' and/or 'rand'.")
    for dtype in dtypes:
        _check_dtype_and_mode(dtype, "native")


def run_experiment(
    lengths: list[int],
    dtypes: tuple[torch.dtype, ...] = DOT_DTYPES,
    distributions: tuple[str, ...] = ("randn", "rand"),
    draws: int = 8,
    seed: int = 0,
) -> ErrorCurves:
    """Relative error of every mode versus the vector length n, for each dtype and distribution.

    For each distribution, ``draws`` pairs of float32 vectors of length max(lengths) are drawn
    with a seeded generator; the vectors of length n are their first n entries (so one
    sequential pass measures every n). "sequential" is measured for n <= SEQUENTIAL_MAX_N only.
    All distributions' draws are stacked as rows and computed together, one dtype at a time.
    Example: run_experiment([10, 100], draws=3).errors[("bfloat16", "rand", "sequential")] is a
    (3, 2) tensor of relative errors.
    """
    _check_experiment_arguments(lengths, dtypes, distributions, draws)
    pairs = [_draw(name, draws, lengths[-1], seed + i) for i, name in enumerate(distributions)]
    x = torch.cat([pair[0] for pair in pairs])  # (len(distributions) * draws, n_max)
    y = torch.cat([pair[1] for pair in pairs])  # (len(distributions) * draws, n_max)
    products = x.double() * y.double()  # (rows, n_max), exact: float32 * float32 fits float64
    exact = _prefix_sums(products, lengths)  # (rows, len(lengths))
    absolute = _prefix_sums(products.abs(), lengths)  # (rows, len(lengths))
    condition = dict(zip(distributions, (absolute / exact.abs()).split(draws), strict=True))
    errors, curve_lengths = {}, {}
    for dtype in tqdm(dtypes, desc="dtypes"):
        name = dtype_name(dtype)
        curves = _curves_for_dtype(x.to(dtype), y.to(dtype), exact, lengths)
        for mode, (ns, relative) in curves.items():
            for distribution, rows in zip(distributions, relative.split(draws), strict=True):
                curve_lengths[(name, distribution, mode)] = ns
                errors[(name, distribution, mode)] = rows
    return ErrorCurves(list(lengths), curve_lengths, errors, condition)


def growth_exponent(lengths: list[int], errors: torch.Tensor) -> float:
    """Slope b of the least-squares line log10(error) = a + b log10(n) through per-n medians.

    errors is (draws, len(lengths)); the median over draws is taken first, and lengths where
    it is 0 or inf are skipped. b = 0.5 means the error grows like sqrt(n), b = 1 like n.
    Example: medians 1e-3, 1e-2 at n = 10, 1000 give b = 0.5.
    """
    medians = errors.median(dim=0).values.double()  # (len(lengths),)
    log_n = torch.tensor(lengths, dtype=torch.float64).log10()
    keep = torch.isfinite(medians) & (medians > 0)
    if keep.sum() < 2:
        raise ValueError("need at least two lengths with a finite, non-zero median error.")
    log_n, log_e = log_n[keep], medians[keep].log10()
    centred = log_n - log_n.mean()
    return ((centred * (log_e - log_e.mean())).sum() / (centred**2).sum()).item()
