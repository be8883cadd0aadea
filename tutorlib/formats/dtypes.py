"""Lesson 1: the dtypes a model can be stored in, their ranges, and what a parameter costs.

Tables of integer and float types (range, smallest normal and subnormal, machine epsilon),
bits and bytes per number (sub-byte types such as torch.uint4 counted in bits, not itemsize),
and what happens to a value cast to each: overflow to inf, saturation, or underflow to zero.
Left out on purpose: complex types and quantized tensor subclasses.
"""

import math
import re
from collections.abc import Sequence

import pandas as pd
import torch

from tutorlib._checks import check_int, dtype_name
from tutorlib.formats.float_bits import (
    FLOAT_DTYPES,
    _check_dtypes,
    _check_real,
    exponent_and_mantissa_bits,
    float_bits,
    has_infinities,
    round_to_dtype,
    smallest_subnormal,
)

__all__ = [
    "INT_DTYPES",
    "bits_per_number",
    "bytes_for_parameters",
    "float_facts_table",
    "int_facts_table",
    "overflow_underflow_table",
    "float_bits_table",
]


INT_DTYPES: tuple[torch.dtype, ...] = (
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
)


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
