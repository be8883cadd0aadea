"""Lesson 2: how far a dot product computed in floating point can be from the exact one.

The unit roundoff u of a format, Higham's gamma_n = n u / (1 - n u) (the deterministic
bound), the probabilistic sqrt(n) u bound (Higham and Mary, 2019), and the condition number
kappa = sum |x_k y_k| / |x . y| that turns an absolute bound into a relative one.
Left out on purpose: compensated (Kahan) summation and bounds for other reductions.
"""

import math

import torch

from tutorlib._checks import check_float_tensor, check_int, check_real

__all__ = [
    "unit_roundoff",
    "gamma",
    "deterministic_bound",
    "probabilistic_bound",
    "condition_number",
]


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
    u = check_real(u, "u", 0.0, strict_minimum=True)
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
    lam = check_real(lam, "lam", 0.0, strict_minimum=True)
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
