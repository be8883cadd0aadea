"""Lesson 1: a floating-point number's bits: sign, exponent and significand, decoded.

Every float dtype torch knows (float64 down to the fp8 formats) is described by its field
widths and bias, read from torch.finfo; a value's fields are shown bit by bit, decoded back
with the IEEE 754 formula, and the spacing of representable numbers follows from them.
Left out on purpose: decimal floats, posits, and rounding modes other than to-nearest-even.
"""

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import torch

from tutorlib._checks import check_float_tensor, check_int, dtype_name

__all__ = [
    "FLOAT_DTYPES",
    "exponent_and_mantissa_bits",
    "exponent_bias",
    "ieee_max",
    "has_infinities",
    "smallest_subnormal",
    "round_to_dtype",
    "decode_fields",
    "FloatBits",
    "float_bits",
    "spacing",
]


# The float formats this lesson decodes: IEEE 754 binary64/32/16, Google's bfloat16 and the two
# 8-bit formats of Micikevicius et al. (2022).
FLOAT_DTYPES: tuple[torch.dtype, ...] = (
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
)


# An integer dtype of the same width, to read a float's stored bits without converting its value.
_SAME_WIDTH_INT = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}


def _check_float_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    supported = ", ".join(f"torch.{dtype_name(d)}" for d in FLOAT_DTYPES)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype such as torch.bfloat16, got {dtype!r}.")
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} holds {dtype}, which is not supported; use one of: {supported}.")
    return dtype


def _check_dtypes(
    dtypes: object, allowed: tuple[torch.dtype, ...] = FLOAT_DTYPES, name: str = "dtypes"
) -> tuple[torch.dtype, ...]:
    """A non-empty tuple or list of dtypes, each one of `allowed` (the float formats by default).

    Used by this module's tables and by Lesson 1's figures, which take the same argument.
    """
    supported = ", ".join(f"torch.{dtype_name(d)}" for d in allowed)
    if not isinstance(dtypes, Sequence) or isinstance(dtypes, str):
        raise TypeError(
            f"{name} must be a tuple of torch dtypes, e.g. (torch.float32, torch.bfloat16), "
            f"got {type(dtypes).__name__} {dtypes!r:.60}."
        )
    if len(dtypes) == 0:
        raise ValueError(f"{name} is empty: give at least one of {supported}.")
    for dtype in dtypes:
        if not isinstance(dtype, torch.dtype) or dtype not in allowed:
            raise ValueError(f"{name} holds {dtype!r}; use dtypes among {supported}.")
    return tuple(dtypes)


def _check_real(value: object, name: str = "value", finite: bool = False) -> float:
    """A real number as a float; NaN and inf pass unless finite=True (their bits are a lesson)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number (int or float), got {type(value).__name__} "
            f"{value!r:.60}."
        )
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} = {value} is too large even for float64; pass a float.") from None
    if finite and not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}; pass a finite number.")
    return number


def exponent_and_mantissa_bits(dtype: torch.dtype) -> tuple[int, int]:
    """Exponent and mantissa (stored fraction) bits of a float dtype, derived from ``finfo``.

    The gap above 1 is one unit of the last mantissa bit, so eps = 2**-m gives m = -log2(eps);
    the sign takes 1 bit, and the exponent the rest: e = bits - 1 - m.
    Example: bfloat16 has eps = 2**-7 and 16 bits, so m = 7 and e = 16 - 1 - 7 = 8.
    """
    info = torch.finfo(_check_float_dtype(dtype))
    mantissa = -math.frexp(info.eps)[1] + 1  # frexp(2**-m) = (0.5, -m + 1), exact for powers of 2
    exponent = info.bits - 1 - mantissa
    return exponent, mantissa


def exponent_bias(dtype: torch.dtype) -> int:
    """The bias subtracted from the stored exponent field, derived from ``finfo``.

    The smallest normal number is 2**(1 - bias), so bias = 1 - log2(smallest_normal).
    Example: float16's smallest normal is 2**-14 = 6.1035e-05, so its bias is 15.
    """
    info = torch.finfo(_check_float_dtype(dtype))
    return 1 - (math.frexp(info.smallest_normal)[1] - 1)


def ieee_max(dtype: torch.dtype) -> float:
    """The largest finite number the layout would have under IEEE 754 rules.

    IEEE formats keep the all-ones exponent for inf and NaN, so the largest finite number has
    exponent field 2**e - 2 and all mantissa bits set: (2 - 2**-m) * 2**(2**e - 2 - bias).
    Example: 4 exponent and 3 mantissa bits (bias 7) give 1.875 * 2**7 = 240.
    """
    exponent, mantissa = exponent_and_mantissa_bits(dtype)
    return (2 - 2.0**-mantissa) * 2.0 ** (2**exponent - 2 - exponent_bias(dtype))


def has_infinities(dtype: torch.dtype) -> bool:
    """Whether the all-ones exponent is kept for inf/NaN (IEEE 754) or used for numbers.

    If ``finfo.max`` is larger than ``ieee_max``, the format spends the top exponent on
    numbers too and has no infinities.
    Example: float8_e4m3fn would stop at 240 under IEEE rules, but its ``finfo.max`` is
    448 = 1.75 * 2**8: no infinities ("fn" = finite, NaN only).
    """
    return torch.finfo(_check_float_dtype(dtype)).max == ieee_max(dtype)


def smallest_subnormal(dtype: torch.dtype) -> float:
    """The smallest positive number of a float dtype: smallest_normal * eps = 2**(1 - bias - m).

    Example: float16 gives 2**-14 * 2**-10 = 2**-24 = 5.96e-08.
    """
    info = torch.finfo(_check_float_dtype(dtype))
    return info.smallest_normal * info.eps


def round_to_dtype(value: float, dtype: torch.dtype) -> float:
    """The number torch stores when ``value`` is put in a tensor of ``dtype``, as a Python float.

    Torch rounds to nearest, ties to even, and out-of-range values become inf. float8_e4m3fn
    has no inf, so what an overflow becomes there is a conversion policy, not a property of the
    format: torch 2.13's cast saturates (1000, and even inf, become 448), while the OCP FP8
    spec's non-saturating mode, and other libraries, give NaN. Every value of these formats is
    exact in float64, so the returned float is the stored number exactly.
    Note: torch converts float64 to 16- and 8-bit floats through float32, so a value just off
    a halfway point can round twice (1 + 2**-8 + 2**-30 -> 1.0 in bfloat16, not 1.0078125).
    Example: round_to_dtype(1/3, torch.bfloat16) -> 0.333984375.
    """
    number = _check_real(value)
    return torch.tensor(number, dtype=torch.float64).to(_check_float_dtype(dtype)).item()


def decode_fields(sign: int, biased_exponent: int, mantissa: int, dtype: torch.dtype) -> float:
    """The number that a sign, exponent field and mantissa field encode in a float dtype.

    normal (0 < E < all ones): (-1)**s * 2**(E - bias) * (1 + M / 2**m)
    subnormal (E = 0):         (-1)**s * 2**(1 - bias) * (0 + M / 2**m)
    E all ones: inf (M = 0) or NaN in IEEE formats; in float8_e4m3fn only M all ones is NaN
    (two bit patterns, S.1111.111, one per sign), and the rest of that binade are numbers.
    The fields must fit the format: s in {0, 1}, 0 <= E < 2**e, 0 <= M < 2**m.
    Example: bfloat16 fields (0, 125, 43) give 2**-2 * (1 + 43/128) = 0.333984375.
    """
    exponent_bits, mantissa_bits = exponent_and_mantissa_bits(dtype)
    sign = check_int(sign, "sign", 0, 1)
    biased_exponent = check_int(biased_exponent, "biased_exponent", 0, 2**exponent_bits - 1)
    mantissa = check_int(mantissa, "mantissa", 0, 2**mantissa_bits - 1)
    bias = exponent_bias(dtype)
    top_exponent, top_mantissa = 2**exponent_bits - 1, 2**mantissa_bits - 1
    sign_factor = -1.0 if sign else 1.0
    if biased_exponent == top_exponent and has_infinities(dtype):
        return sign_factor * math.inf if mantissa == 0 else math.nan
    if biased_exponent == top_exponent and mantissa == top_mantissa:
        return math.nan
    fraction = mantissa / 2**mantissa_bits  # exact: an integer below 2**m over 2**m
    if biased_exponent == 0:
        return sign_factor * math.ldexp(fraction, 1 - bias)
    return sign_factor * math.ldexp(1 + fraction, biased_exponent - bias)


@dataclass(frozen=True)
class FloatBits:
    """The three bit fields of one stored float and the exact number they encode."""

    dtype: str  # e.g. "bfloat16"
    sign: str  # "0" or "1"
    exponent: str  # e.g. "01111101"
    mantissa: str  # e.g. "0101011"
    biased_exponent: int  # the exponent field read as an unsigned integer
    bias: int  # subtract from biased_exponent to get the power of two (normal numbers)
    value: float  # the number stored, exact (float64 holds every value of these formats)

    @property
    def exact_decimal(self) -> str:
        """Every digit of the stored value, e.g. '0.100000001490116119384765625' for 0.1 in fp32."""
        return str(Decimal(self.value))

    @property
    def formula(self) -> str:
        """The decoding written out, e.g. '+2^(125 - 127) × (1 + 43/128)' for 1/3 in bfloat16.

        Subnormals (exponent field 0) read '2^(1 - bias) × (0 + M/2^m)'. inf reads '+inf
        (exponent all ones, mantissa 0)'; NaN, whose patterns depend on the format (exponent all
        ones with any mantissa but 0 in IEEE formats, only S.1111.111 in float8_e4m3fn), reads
        'NaN (a pattern reserved for NaN)'.
        """
        if math.isnan(self.value):
            return "NaN (a pattern reserved for NaN)"
        sign = "-" if self.sign == "1" else "+"
        if math.isinf(self.value):
            return f"{sign}inf (exponent all ones, mantissa 0)"
        fraction = f"{int(self.mantissa, 2)}/{2 ** len(self.mantissa)}"
        if self.biased_exponent == 0:
            return f"{sign}2^(1 - {self.bias}) × (0 + {fraction})"
        return f"{sign}2^({self.biased_exponent} - {self.bias}) × (1 + {fraction})"

    def __str__(self) -> str:
        return (
            f"{self.dtype}: {self.sign} {self.exponent} {self.mantissa}\n"
            f"  = {self.formula} = {self.value!r}"
        )


def float_bits(value: float, dtype: torch.dtype) -> FloatBits:
    """Sign, exponent and mantissa bits of ``value`` as stored in ``dtype`` (after rounding).

    The bits are read from the stored tensor through an integer view of the same width
    (no conversion of the value), then split as sign | exponent (e bits) | mantissa (m bits)
    and decoded with ``decode_fields``.
    Example: float_bits(1/3, torch.bfloat16) has sign '0', exponent '01111101' (125, so
    2**(125 - 127) = 2**-2), mantissa '0101011' (43) and value 2**-2 * (1 + 43/128) = 0.333984375.
    """
    number = _check_real(value)
    exponent_bits, mantissa_bits = exponent_and_mantissa_bits(dtype)
    total_bits = 1 + exponent_bits + mantissa_bits
    stored = torch.tensor(number, dtype=torch.float64).to(dtype)
    pattern = stored.view(_SAME_WIDTH_INT[total_bits]).item() % 2**total_bits  # unsigned
    bits = format(pattern, f"0{total_bits}b")  # e.g. '0011111010101011'
    sign, exponent, mantissa = bits[0], bits[1 : 1 + exponent_bits], bits[1 + exponent_bits :]
    biased_exponent = int(exponent, 2)
    decoded = decode_fields(int(sign), biased_exponent, int(mantissa, 2), dtype)
    return FloatBits(
        dtype_name(dtype), sign, exponent, mantissa, biased_exponent, exponent_bias(dtype), decoded
    )


def spacing(x: float | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Gap from |x| (rounded to ``dtype``) to the next representable number away from zero.

    A binade [2**k, 2**(k+1)) holds 2**m evenly spaced numbers, so the gap is
    ulp(x) = 2**(max(k, 1 - bias) - m) with k = floor(log2 |x|); below the smallest normal
    (subnormals and zero) the gap stays 2**(1 - bias - m). x must be finite; a value that
    overflows when rounded to ``dtype`` (stored as inf) has no finite neighbour and gives NaN.
    Example: spacing(300.0, torch.bfloat16) -> 2**(8 - 7) = 2.0: in [256, 512) bfloat16 counts
    in steps of 2.
    """
    if isinstance(x, torch.Tensor):
        x = check_float_tensor(x, "x", allow_empty=True).detach()
    else:
        x = _check_real(x, "x", finite=True)
    _, mantissa_bits = exponent_and_mantissa_bits(dtype)
    lowest_power = 1 - exponent_bias(dtype)  # exponent of the smallest normal
    stored = torch.as_tensor(x, dtype=torch.float64).to(dtype).to(torch.float64).abs()
    _, frexp_exponent = torch.frexp(stored)  # stored = f * 2**frexp_exponent, f in [0.5, 1)
    power = torch.clamp(frexp_exponent - 1, min=lowest_power)  # floor(log2 |stored|)
    power = torch.where(stored == 0, lowest_power, power)
    gap = torch.ldexp(torch.ones_like(stored), power - mantissa_bits)
    return torch.where(torch.isfinite(stored), gap, torch.nan)
