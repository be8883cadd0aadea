"""Lesson 1: integer and floating-point tensor types, bit by bit.

A float stores a sign, an exponent and a mantissa: the exponent sets the range, the mantissa the
precision, and a dtype's bit budget is split between the two. Every fact here is read from
``torch.finfo``/``torch.iinfo`` or from the bits torch actually stores (through an integer view of
the tensor), never typed by hand.

Leaves out: arithmetic in these types (Lesson 2), rounding modes other than torch's own
round-to-nearest-even, and fp8 scaling recipes (Lesson 4 quantizes with scales instead).
"""

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import torch

from tutorlib._checks import check_float_tensor, check_int, dtype_name

__all__ = [
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "FloatBits",
    "dtype_name",
    "exponent_and_mantissa_bits",
    "exponent_bias",
    "ieee_max",
    "has_infinities",
    "smallest_subnormal",
    "round_to_dtype",
    "decode_fields",
    "float_bits",
    "float_bits_table",
    "spacing",
    "bits_per_number",
    "bytes_for_parameters",
    "float_facts_table",
    "int_facts_table",
    "overflow_underflow_table",
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
INT_DTYPES: tuple[torch.dtype, ...] = (
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
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
    check_int(sign, "sign", 0, 1)
    check_int(biased_exponent, "biased_exponent", 0, 2**exponent_bits - 1)
    check_int(mantissa, "mantissa", 0, 2**mantissa_bits - 1)
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


def float_bits_table(value: float, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> pd.DataFrame:
    """``float_bits`` of one value in several dtypes: a row per dtype, a column per field.

    Columns: sign, exponent and mantissa bits, the stored value, and the decoding formula.
    Example: for 1/3 the bfloat16 row reads 0 | 01111101 | 0101011 | 0.333984375 |
    +2^(125 - 127) × (1 + 43/128).
    """
    _check_real(value)
    rows = {}
    for dtype in _check_dtypes(dtypes):
        bits = float_bits(value, dtype)
        rows[bits.dtype] = {
            "sign": bits.sign,
            "exponent": bits.exponent,
            "mantissa": bits.mantissa,
            "stored value": repr(bits.value),
            "decoded": bits.formula,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dtype")


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


def bits_per_number(dtype: torch.dtype) -> int:
    """Bits one number of ``dtype`` takes, read from the dtype's name where itemsize cannot say.

    torch stores sub-byte types one per byte (``torch.uint4.itemsize`` is 1), so their width
    comes from the name: uint1..uint7 and int1..int7 take 1 to 7 bits. Packed types hold k
    numbers per element ("_x2", "4x2"): itemsize * 8 / k bits each. Every other dtype takes
    itemsize * 8 bits.
    Example: bits_per_number(torch.uint4) -> 4; bits_per_number(torch.float4_e2m1fn_x2) -> 4;
    bits_per_number(torch.bfloat16) -> 16.
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.int8, got {dtype!r}.")
    name = dtype_name(dtype)
    if sub_byte := re.fullmatch(r"u?int([1-7])", name):  # e.g. uint4: 4 bits
        return int(sub_byte.group(1))
    if packed := re.search(r"[0-9_]x([0-9]+)$", name):  # e.g. quint4x2: 2 numbers in 8 bits
        return dtype.itemsize * 8 // int(packed.group(1))
    return dtype.itemsize * 8


def bytes_for_parameters(n_parameters: int, dtype: torch.dtype) -> int:
    """Bytes to store ``n_parameters`` numbers of ``dtype``: ceil(n * bits / 8).

    bits come from ``bits_per_number``, so 4-bit types count half a byte per number (packed two
    per byte, as Lesson 4 does); an odd count of them rounds up to a whole byte.
    Example: one billion bfloat16 parameters take 1e9 * 16 / 8 = 2,000,000,000 bytes (2 GB);
    1000 torch.uint4 numbers take 1000 * 4 / 8 = 500 bytes.
    """
    bits = bits_per_number(dtype)
    n = check_int(n_parameters, "n_parameters", 0)
    return (n * bits + 7) // 8  # ceil(n * bits / 8) in exact integer arithmetic


def _power_of_two(x: float) -> str:
    return f"2^{math.frexp(x)[1] - 1} ≈ {x:.3g}"  # x = 0.5 * 2**k exactly, so x = 2**(k - 1)


def _number(x: float) -> str:
    if x == int(x) and abs(x) < 1e7:
        return f"{int(x):,}"
    return f"{x:.4g}"


def _gigabytes_per_billion(dtype: torch.dtype) -> str:
    return f"{bytes_for_parameters(10**9, dtype) / 1e9:g}"  # GB = 1e9 bytes


def float_facts_table(dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> pd.DataFrame:
    """One row per float dtype: bit layout, range, precision and memory, all from ``finfo``.

    decimal digits = (m + 1) * log10(2): the digits a significand of m + 1 bits carries (the
    leading 1 is implicit). Memory is for one billion parameters, in GB (1e9 bytes).
    Example row: bfloat16 | 16 | 1 / 8 / 7 | -3.39e+38 | 3.39e+38 | 2^-7 ≈ 0.00781 | ... | 2.41.
    """
    rows = {}
    for dtype in _check_dtypes(dtypes):
        info = torch.finfo(dtype)
        exponent, mantissa = exponent_and_mantissa_bits(dtype)
        rows[dtype_name(dtype)] = {
            "bits": info.bits,
            "sign / exponent / mantissa": f"1 / {exponent} / {mantissa}",
            "min": _number(info.min),
            "max": _number(info.max),
            "eps (gap above 1)": _power_of_two(info.eps),
            "smallest normal": _power_of_two(info.smallest_normal),
            "smallest subnormal": _power_of_two(smallest_subnormal(dtype)),
            "decimal digits": f"{(mantissa + 1) * math.log10(2):.2f}",
            "infinities": "yes" if has_infinities(dtype) else "no (NaN only)",
            "GB per 1e9 parameters": _gigabytes_per_billion(dtype),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dtype")


def int_facts_table(dtypes: tuple[torch.dtype, ...] = INT_DTYPES) -> pd.DataFrame:
    """One row per integer dtype: bits, range and memory, all from ``iinfo``.

    Integers are evenly spaced by 1, so the only choice is the range: 2**bits values, from
    -2**(bits-1) to 2**(bits-1) - 1 in two's complement. decimal digits = floor(log10(max)):
    every integer with that many digits fits. Example row: int8 | 8 | -128 | 127 | 2 | 1 GB.
    """
    rows = {}
    for dtype in _check_dtypes(dtypes, INT_DTYPES):
        info = torch.iinfo(dtype)
        rows[dtype_name(dtype)] = {
            "bits": info.bits,
            "encoding": "two's complement" if info.min < 0 else "unsigned",
            "min": f"{info.min:,}",
            "max": f"{info.max:,}",
            "decimal digits": math.floor(math.log10(info.max)),
            "GB per 1e9 parameters": _gigabytes_per_billion(dtype),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dtype")


def _check_values(values: object) -> None:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(f"values must be a tuple of numbers, e.g. (70000.0, 1e-8), got {values!r}.")
    if len(values) == 0:
        raise ValueError("values is empty: give at least one number, e.g. (70000.0,).")
    for value in values:
        _check_real(value, "values", finite=True)


def overflow_underflow_table(
    values: tuple[float, ...],
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES[1:],  # float32 and the smaller types
) -> pd.DataFrame:
    """What each dtype stores for each value: a row per value, a column per dtype.

    Shows overflow (too large -> inf; in float8_e4m3fn, which has no inf, torch 2.13 saturates
    to 448), underflow (too small -> 0) and the precision kept in between, printed with 6
    significant digits. values must be finite (say what each dtype makes of a finite number).
    Example: 70000 -> inf in float16, 70144 in bfloat16; 1e-8 -> 0 in float16, 1.00117e-08 in
    bfloat16.
    """
    _check_values(values)
    dtypes = _check_dtypes(dtypes)
    table = {
        dtype_name(dtype): [f"{round_to_dtype(value, dtype):.6g}" for value in values]
        for dtype in dtypes
    }
    index = pd.Index([f"{float(value):g}" for value in values], name="value")
    return pd.DataFrame(table, index=index)
