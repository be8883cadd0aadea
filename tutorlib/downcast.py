"""Lesson 2: the error of a dot product whose inputs are downcast to a low-precision float.

A dot product in bfloat16 makes two kinds of error: rounding the inputs to bfloat16, and rounding
while it accumulates the sum; the second depends entirely on how the sum is accumulated. This
module computes the dot product three ways ("native", "sequential", "pairwise"), splits the
error into its two sources, and returns the deterministic and probabilistic bounds of the theory
(Higham 2002, section 3.1; Higham & Mary 2019) next to an experiment that measures the real thing,
and the small tables the lesson reads from that experiment (growth exponents, medians, overflow).

It leaves out: fused multiply-add, compensated (Kahan) summation, stochastic rounding, and float8
arithmetic (PyTorch on CPU cannot add float8 tensors; ``unit_roundoff`` still covers them).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from tutorlib._checks import (
    check_choice,
    check_float_tensor,
    check_int,
    check_names,
    check_real,
    dtype_name,
)

__all__ = [
    "ACCUMULATE_MODES",
    "DOT_DTYPES",
    "SEQUENTIAL_MAX_N",
    "DotResult",
    "ErrorCurves",
    "ErrorSplit",
    "RoundingOnce",
    "Stall",
    "compare_with_rounding_once",
    "condition_number",
    "deterministic_bound",
    "dot",
    "find_stall",
    "first_overflow_length",
    "gamma",
    "growth_exponent",
    "growth_exponent_table",
    "linear_outputs_not_rounded_once",
    "median_error_table",
    "pairwise_sum",
    "probabilistic_bound",
    "run_experiment",
    "sequential_partial_sums",
    "signed_errors_of_draws",
    "split_error",
    "sums_rounded_once",
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
    check_int(n, "n", minimum=1)  # n roundings, at least one
    _check_unit_roundoff(u)
    n_u = n * u
    return math.inf if n_u >= 1 else n_u / (1 - n_u)


def _check_unit_roundoff(u: object) -> None:
    check_real(u, "u", 0.0, strict_minimum=True)
    if u >= 1:
        raise ValueError(f"u must be a unit roundoff in (0, 1), e.g. 2**-8, got {u!r}")


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
    check_int(n, "n", minimum=1)  # the vector length
    check_real(lam, "lam", 0.0, strict_minimum=True)
    return lam * math.sqrt(n) * unit_roundoff(dtype)


def _check_vectors(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Two finite, non-empty, real 1-D float tensors of one length; returned detached."""
    for name, v in (("x", x), ("y", y)):
        check_float_tensor(v, name)  # a real float tensor, non-empty, finite
        if v.dim() != 1:
            raise ValueError(f"{name} must be a 1-D vector, got shape {tuple(v.shape)}.")
    if x.numel() != y.numel():
        raise ValueError(f"x and y must have the same length, got {x.numel()} and {y.numel()}.")
    return x.detach(), y.detach()


def _check_fits(v: torch.Tensor, name: str, dtype: torch.dtype) -> None:
    """Refuse a vector whose downcast to ``dtype`` overflows (a float32 1e5 in float16 is inf)."""
    if torch.isinf(v.to(dtype)).any():
        largest = torch.finfo(dtype).max
        raise ValueError(
            f"{name} holds values beyond {dtype_name(dtype)}'s largest finite number {largest:g}: "
            f"downcast, they become inf. Scale {name} down, or use bfloat16 (float32's range)."
        )


def _check_dtype(dtype: object, name: str = "dtype") -> None:
    if not isinstance(dtype, torch.dtype) or dtype not in DOT_DTYPES:
        names = ", ".join(str(d) for d in DOT_DTYPES)
        raise TypeError(f"{name} must be one of {names} (PyTorch's CPU arithmetic), got {dtype!r}.")


def _check_dtype_and_mode(dtype: object, accumulate: object) -> None:
    _check_dtype(dtype)
    check_choice(accumulate, "accumulate", ACCUMULATE_MODES)


def _running_sums(products: torch.Tensor) -> torch.Tensor:
    """Left-to-right partial sums of each row, rounded to the rows' dtype after every addition.

    NumPy's ``add.accumulate`` does exactly that in a C loop for float16 and float32 (each step
    is one addition of two arrays of that dtype). NumPy has no bfloat16, so bfloat16 runs a
    Python loop of one torch addition per term, for all rows at once.
    """
    if products.dtype != torch.bfloat16:
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf = NaN, reported by callers
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
    A product or partial sum beyond the dtype's range is refused (float16 ends at 65504).
    """
    x, y = _check_vectors(x, y)
    _check_dtype(dtype)
    _check_sequential_length(x)
    _check_fits(x, "x", dtype)
    _check_fits(y, "y", dtype)
    products = x.to(dtype) * y.to(dtype)  # each product rounded to dtype
    sums = _running_sums(products[None])[0]
    if not torch.isfinite(sums).all():
        raise ValueError(
            f"the products of x and y or their running sum overflow {dtype_name(dtype)} "
            f"(largest finite {torch.finfo(dtype).max:g}): scale x or y down, or use bfloat16."
        )
    return sums


def _check_sequential_length(x: torch.Tensor) -> None:
    if x.numel() > SEQUENTIAL_MAX_N:
        raise ValueError(
            f"sequential accumulation is limited to {SEQUENTIAL_MAX_N} terms (a Python loop); "
            f"x has {x.numel()}. Use accumulate='pairwise' or 'native' for longer vectors."
        )


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
    A sum that overflows the dtype is refused rather than returned as inf.
    """
    check_float_tensor(terms, "terms")  # real, non-empty, no NaN or inf
    if terms.dim() != 1:
        raise ValueError(f"terms must be a 1-D tensor, got shape {tuple(terms.shape)}.")
    total = _pairwise_sums(terms.detach()[None])[0]
    if not torch.isfinite(total):
        raise ValueError(
            f"the pairwise sum of terms overflows {dtype_name(terms.dtype)} (largest finite "
            f"{torch.finfo(terms.dtype).max:g}): scale terms down or sum them in a wider dtype."
        )
    return total


def _dot_rows(xd: torch.Tensor, yd: torch.Tensor, accumulate: str) -> torch.Tensor:
    """Dot product of each row pair of (rows, n) tensors already in the dtype; float64 (rows,)."""
    if accumulate == "native":
        values = [torch.dot(x_row, y_row) for x_row, y_row in zip(xd, yd, strict=True)]
        return torch.stack(values).double()
    products = xd * yd  # (rows, n): each product rounded to the dtype
    if accumulate == "sequential":
        values = _running_sums(products)[:, -1].double()
    else:
        values = _pairwise_sums(products).double()
    # Finite inputs give NaN only where +inf and -inf met: an overflow, reported as inf.
    return torch.where(values.isnan(), math.inf, values)


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
    Inputs that do not fit ``dtype`` are refused. Where the dtype overflows during the
    computation (a product, a partial sum or the result beyond float16's 65504), value is inf and
    relative_error is inf, no exception; in "pairwise" and "sequential" an overflowed +inf can
    meet a -inf, which IEEE arithmetic turns into NaN: it is reported as inf too.
    Example: x = [256, 0.75, 0.75, 0.75, 0.75], y = ones, bfloat16, exact 259:
    native 260 (259 rounds to even), pairwise 258, sequential 256.
    """
    x, y = _check_vectors(x, y)
    _check_dtype_and_mode(dtype, accumulate)
    if accumulate == "sequential":
        _check_sequential_length(x)
    _check_fits(x, "x", dtype)
    _check_fits(y, "y", dtype)
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
    An input with x.y = 0 exactly and no error at all (x = 0) gives three zeros; x.y = 0 with a
    non-zero error, and a result that overflowed the dtype, are refused (no finite split).
    """
    x, y = _check_vectors(x, y)
    result = dot(x, y, dtype, accumulate)
    if math.isinf(result.value):
        raise ValueError(
            f"x.y overflowed {dtype_name(dtype)} (a product or sum beyond its largest finite "
            f"{torch.finfo(dtype).max:g}): no finite split exists. Scale x or y down."
        )
    exact = result.reference
    rounded_inputs = torch.dot(x.to(dtype).double(), y.to(dtype).double()).item()
    if result.value == rounded_inputs == exact:
        return ErrorSplit(total=0.0, input_rounding=0.0, accumulation=0.0)
    if exact == 0:
        raise ValueError("x.y is exactly 0: a relative error is undefined; use another x or y.")
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
    If every product x_i y_i is 0 the sum is exact in any precision, and kappa = 1, as for all
    other sums whose terms share one sign. Example: x = [1, -1], y = [1, 0.5]: |x|.|y| = 1.5,
    x.y = 0.5, kappa = 3.
    """
    x, y = _check_vectors(x, y)
    x64, y64 = x.double(), y.double()
    absolute = torch.dot(x64.abs(), y64.abs()).item()
    exact = torch.dot(x64, y64).abs().item()
    if absolute == 0:
        return 1.0  # every term is 0: exact, kappa = 1
    if exact == 0:
        raise ValueError("x.y is exactly 0: the condition number is infinite; use another x or y.")
    return absolute / exact


@dataclass(frozen=True)
class RoundingOnce:
    """torch.dot in a low-precision dtype next to two results that are rounded only once."""

    by_torch: float  # torch.dot(x_hat, y_hat), whatever PyTorch does inside
    float32_sum_rounded_once: float  # products and sum in float32, rounded to the dtype at the end
    exact_sum_rounded_once: float  # products and sum in float64 (exact here), rounded at the end


def _check_half_dtype(dtype: object) -> None:
    if dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype!r}.")


def compare_with_rounding_once(
    x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> RoundingOnce:
    """Does ``torch.dot`` in ``dtype`` accumulate in float32 and round once? The three values.

    With x_hat = x.to(dtype), y_hat = y.to(dtype) (8 or 11 significant bits, so each product
    x_hat_k y_hat_k is exact in float32 and in float64):
    by_torch = torch.dot(x_hat, y_hat); float32 = fl_dtype(sum in float32 of x_hat_k y_hat_k);
    exact = fl_dtype(sum in float64 of x_hat_k y_hat_k) (converted through float32, as PyTorch
    converts float64). Equal values agree with "float32 accumulator, one final rounding".
    Example: the lesson's randn(1000) pair in bfloat16 gives -18.125 three times.
    A result beyond the dtype's range is refused (float16 ends at 65504).
    """
    x, y = _check_vectors(x, y)
    _check_half_dtype(dtype)
    _check_fits(x, "x", dtype)
    _check_fits(y, "y", dtype)
    x_hat, y_hat = x.to(dtype), y.to(dtype)
    by_torch = torch.dot(x_hat, y_hat)
    float32_once = (x_hat.float() * y_hat.float()).sum().to(dtype)
    exact_once = (x_hat.double() * y_hat.double()).sum().float().to(dtype)
    values = torch.stack([by_torch, float32_once, exact_once])
    if not torch.isfinite(values).all():
        raise ValueError(
            f"x.y overflows {dtype_name(dtype)} (largest finite {torch.finfo(dtype).max:g}): "
            "scale x or y down."
        )
    return RoundingOnce(*values.tolist())


def linear_outputs_not_rounded_once(
    inputs: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> int:
    """How many outputs of a linear layer in ``dtype`` differ from "exact sum, rounded once".

    Each output of F.linear(a, w) is a dot product of a row of a = inputs.to(dtype) and a row of
    w = weight.to(dtype). It is compared with fl_dtype(a @ w.T computed in float64), where every
    product and sum is exact. A float32 accumulator differs from it only where its own tiny
    error tips a sum lying next to a midpoint between two dtype numbers: rarely, by one step.
    Example: a (64, 384) and w (64, 384) randn in bfloat16: 0 or 1 of the 4096 outputs differ,
    depending on the CPU's float32 kernel.
    """
    for name, v in (("inputs", inputs), ("weight", weight)):
        check_float_tensor(v, name)
        if v.dim() != 2:
            raise ValueError(f"{name} must be 2-D (rows, in_features), got {tuple(v.shape)}.")
    if inputs.shape[1] != weight.shape[1]:
        raise ValueError(
            f"inputs has {inputs.shape[1]} features per row but weight has {weight.shape[1]}: "
            "they must match (weight is (out_features, in_features))."
        )
    _check_half_dtype(dtype)
    _check_fits(inputs, "inputs", dtype)
    _check_fits(weight, "weight", dtype)
    a, w = inputs.detach().to(dtype), weight.detach().to(dtype)
    by_torch = torch.nn.functional.linear(a, w)  # (rows, out_features)
    rounded_once = (a.double() @ w.double().T).float().to(dtype)  # (rows, out_features)
    return int((by_torch != rounded_once).sum())


@dataclass(frozen=True)
class Stall:
    """Where a running sum stopped moving."""

    value: float  # the last partial sum s_n
    first_k: int  # the number of terms after which the sum reached it for good (1-based)


def find_stall(partial_sums: torch.Tensor) -> Stall:
    """The value a running sum ends at, and after how many terms it stopped changing.

    first_k is the smallest k with s_k = s_(k+1) = ... = s_n: after the last change. A sum
    that changes at its last step gives first_k = n (no stall).
    Example: partial sums [1, 2, 2, 2] give Stall(value=2.0, first_k=2).
    """
    check_float_tensor(partial_sums, "partial_sums")  # real, non-empty, finite
    if partial_sums.dim() != 1:
        raise ValueError(f"partial_sums must be 1-D, got shape {tuple(partial_sums.shape)}.")
    sums = partial_sums.detach()
    changes = (sums[1:] != sums[:-1]).nonzero()  # step k -> k + 1 changed the sum (0-based k)
    first_k = int(changes[-1]) + 2 if len(changes) else 1
    return Stall(value=sums[-1].item(), first_k=first_k)


_DISTRIBUTIONS = {"randn": torch.randn, "rand": torch.rand}


def _check_distribution(distribution: object, name: str = "distribution") -> None:
    if not isinstance(distribution, str) or distribution not in _DISTRIBUTIONS:
        raise ValueError(f"{name} must be 'randn' or 'rand', got {distribution!r}.")


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
    check_int(n, "n", minimum=1, maximum=n_max)
    check_int(draws, "draws", minimum=1)
    check_int(seed, "seed", minimum=0)
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
        check_int(n, "n", minimum=1)
        if n not in self.lengths[key]:
            raise ValueError(f"n={n} was not measured for {key}; use one of {self.lengths[key]}.")
        return self.errors[key][:, self.lengths[key].index(n)].median().item()

    def exponent(self, key: tuple[str, str, str], n_max: int = SEQUENTIAL_MAX_N) -> float:
        """``growth_exponent`` of curve ``key`` over its lengths n <= n_max with finite errors."""
        key = self._check_key(key)
        check_int(n_max, "n_max", minimum=1)
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


def _check_curves(curves: object) -> ErrorCurves:
    if not isinstance(curves, ErrorCurves):
        raise TypeError(
            f"curves must be the ErrorCurves that run_experiment returns, got "
            f"{type(curves).__name__}."
        )
    return curves


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
    check_int(draws, "draws", minimum=1)
    check_int(seed, "seed", minimum=0)


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
    check_int(n_max, "n_max", minimum=1)
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
    check_int(n, "n", minimum=1)
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
