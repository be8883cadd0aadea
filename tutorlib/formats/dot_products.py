"""Lesson 2: a dot product computed with its inputs and its sum in a low-precision format.

Three ways of accumulating (PyTorch's own, sequential in the low precision, pairwise), the
error split into what rounding the inputs costs and what the sum adds, the comparison with
"exact sum, rounded once", and the point where a running sum stalls.
Left out on purpose: fused multiply-add emulation and GPU reduction orders.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from tutorlib._checks import check_choice, check_float_tensor, dtype_name
from tutorlib.formats.error_bounds import _check_vectors

__all__ = [
    "ACCUMULATE_MODES",
    "DOT_DTYPES",
    "SEQUENTIAL_MAX_N",
    "sequential_partial_sums",
    "pairwise_sum",
    "DotResult",
    "dot",
    "ErrorSplit",
    "split_error",
    "RoundingOnce",
    "compare_with_rounding_once",
    "linear_outputs_not_rounded_once",
    "Stall",
    "find_stall",
]


ACCUMULATE_MODES = ("native", "sequential", "pairwise")


# The dtypes PyTorch can multiply and add on CPU among the ones the course compares.
DOT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# "sequential" in bfloat16 is a Python loop of one tensor addition per term (4 to 10 microseconds
# a step on this course's CPU): 10**5 terms take about a second; 10**6 would dominate the lesson.
SEQUENTIAL_MAX_N = 10**5


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
