"""Tests of tutorlib.dtypes: hand-decoded bit patterns, torch's own rounding, and struct's bits."""

import math
import struct
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.formats.dtypes import (
    bits_per_number,
    bytes_for_parameters,
    float_bits_table,
    float_facts_table,
    int_facts_table,
    overflow_underflow_table,
)
from tutorlib.formats.float_bits import (
    FLOAT_DTYPES,
    decode_fields,
    exponent_and_mantissa_bits,
    exponent_bias,
    float_bits,
    has_infinities,
    ieee_max,
    round_to_dtype,
    smallest_subnormal,
    spacing,
)

FLOAT_IDS = [str(dtype).removeprefix("torch.") for dtype in FLOAT_DTYPES]

# --- hand-computed textbook cases ---

# (value, dtype, sign, exponent, mantissa, exact stored value), decoded by hand:
# 1/3 = 1.0101...b * 2**-2, so the exponent field is bias - 2 and the mantissa is 0101...,
# rounded to nearest at the last kept bit (up when the dropped bits start with 1, i.e. 10...).
BITS_CASES = [
    (1.0, torch.float32, "0", "01111111", "0" * 23, Fraction(1)),
    (1.0, torch.float16, "0", "01111", "0" * 10, Fraction(1)),
    (1.0, torch.bfloat16, "0", "01111111", "0" * 7, Fraction(1)),
    (-2.0, torch.float32, "1", "10000000", "0" * 23, Fraction(-2)),
    (-2.0, torch.float16, "1", "10000", "0" * 10, Fraction(-2)),
    (-2.0, torch.bfloat16, "1", "10000000", "0" * 7, Fraction(-2)),
    # 23 kept bits 0101...010, dropped 1010... > half: round up to ...011 = 11184811 / 2**25.
    (1 / 3, torch.float32, "0", "01111101", "01010101010101010101011", Fraction(11184811, 2**25)),
    # 10 kept bits 0101010101, dropped 0101... < half: truncate, (1 + 341/1024) / 4.
    (1 / 3, torch.float16, "0", "01101", "0101010101", Fraction(1365, 4096)),
    # 7 kept bits 0101010, dropped 1010... > half: round up to 0101011, (1 + 43/128) / 4.
    (1 / 3, torch.bfloat16, "0", "01111101", "0101011", Fraction(171, 512)),
]
BITS_IDS = ["1-fp32", "1-fp16", "1-bf16", "-2-fp32", "-2-fp16", "-2-bf16", "third-fp32"]
BITS_IDS += ["third-fp16", "third-bf16"]


@pytest.mark.parametrize("value, dtype, sign, exponent, mantissa, exact", BITS_CASES, ids=BITS_IDS)
def test_float_bits_of_hand_decoded_values(value, dtype, sign, exponent, mantissa, exact):
    bits = float_bits(value, dtype)
    assert (bits.sign, bits.exponent, bits.mantissa) == (sign, exponent, mantissa)
    assert bits.biased_exponent == int(exponent, 2)
    assert Fraction(bits.value) == exact


def test_one_third_in_bfloat16_float16_float32_as_printed():
    assert float_bits(1 / 3, torch.bfloat16).value == 0.333984375
    assert float_bits(1 / 3, torch.float16).value == 0.333251953125
    assert float_bits(1 / 3, torch.float32).value == 0.3333333432674408


def test_float_bits_reads_like_the_lesson():
    assert str(float_bits(1 / 3, torch.bfloat16)) == (
        "bfloat16: 0 01111101 0101011\n  = +2^(125 - 127) × (1 + 43/128) = 0.333984375"
    )
    assert float_bits(-2.0, torch.float16).formula == "-2^(16 - 15) × (1 + 0/1024)"
    assert float_bits(2.0**-24, torch.float16).formula == "+2^(1 - 15) × (0 + 1/1024)"
    assert "exponent all ones" in float_bits(math.inf, torch.float16).formula
    assert float_bits(math.nan, torch.float8_e4m3fn).formula.startswith("NaN")
    assert float_bits(-math.inf, torch.float16).formula.startswith("-inf")
    assert float_bits(0.1, torch.float32).exact_decimal == "0.100000001490116119384765625"


def test_float_bits_table_rows():
    table = float_bits_table(1 / 3, (torch.float16, torch.bfloat16))
    assert list(table.index) == ["float16", "bfloat16"]
    assert list(table.columns) == ["sign", "exponent", "mantissa", "stored value", "decoded"]
    assert table.loc["bfloat16", "mantissa"] == "0101011"
    assert table.loc["float16", "decoded"] == "+2^(13 - 15) × (1 + 341/1024)"
    assert table.loc["float16", "stored value"] == "0.333251953125"


LAYOUTS = [
    (torch.float64, 11, 52, 1023),
    (torch.float32, 8, 23, 127),
    (torch.float16, 5, 10, 15),
    (torch.bfloat16, 8, 7, 127),
    (torch.float8_e4m3fn, 4, 3, 7),
    (torch.float8_e5m2, 5, 2, 15),
]


@pytest.mark.parametrize("dtype, exponent, mantissa, bias", LAYOUTS, ids=FLOAT_IDS)
def test_layout_derived_from_finfo_matches_the_standards(dtype, exponent, mantissa, bias):
    # IEEE 754 binary64/32/16, bfloat16 (Kalamkar et al. 2019), FP8 (Micikevicius et al. 2022).
    assert exponent_and_mantissa_bits(dtype) == (exponent, mantissa)
    assert exponent_bias(dtype) == bias


def test_textbook_extremes():
    assert torch.finfo(torch.float16).max == 65504 == (2 - 2**-10) * 2**15
    assert torch.finfo(torch.bfloat16).eps == 2**-7
    assert torch.finfo(torch.float8_e4m3fn).max == 448 == 1.75 * 2**8
    assert smallest_subnormal(torch.float16) == 2**-24


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=FLOAT_IDS)
def test_only_e4m3fn_has_no_infinities(dtype):
    assert has_infinities(dtype) == (dtype != torch.float8_e4m3fn)


def test_ieee_max_is_finfo_max_except_for_e4m3fn():
    assert ieee_max(torch.float16) == torch.finfo(torch.float16).max == 65504
    assert ieee_max(torch.float8_e4m3fn) == 240  # 1.875 * 2**7, but e4m3fn reaches 448


def test_decode_special_fields():
    assert decode_fields(0, 15, 6, torch.float8_e4m3fn) == 448  # all-ones exponent is a number
    assert math.isnan(decode_fields(0, 15, 7, torch.float8_e4m3fn))  # S.1111.111 is NaN
    assert math.isnan(decode_fields(1, 15, 7, torch.float8_e4m3fn))  # for either sign
    assert decode_fields(1, 31, 0, torch.float16) == -math.inf
    assert math.isnan(decode_fields(0, 31, 1, torch.float16))
    assert decode_fields(0, 0, 1, torch.float16) == 2**-24  # smallest subnormal


def test_e4m3fn_has_exactly_two_nan_bit_patterns():
    # Every one of the 256 bytes, read as float8_e4m3fn by torch: only S.1111.111 is NaN.
    every_byte = torch.arange(256, dtype=torch.int16).to(torch.uint8)
    values = every_byte.view(torch.float8_e4m3fn).float()
    assert every_byte[torch.isnan(values)].tolist() == [0b0_1111_111, 0b1_1111_111]
    assert not torch.isinf(values).any()
    decoded = [
        decode_fields(b >> 7, (b >> 3) & 0b1111, b & 0b111, torch.float8_e4m3fn) for b in range(256)
    ]
    torch.testing.assert_close(
        torch.tensor(decoded, dtype=torch.float64), values.double(), equal_nan=True, rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "sign, biased_exponent, mantissa, name",
    [
        (2, 15, 0, "sign"),
        (-1, 15, 0, "sign"),
        (0, 32, 0, "biased_exponent"),  # float16's exponent field holds 0..31
        (0, -1, 0, "biased_exponent"),
        (0, 15, 1024, "mantissa"),  # float16's mantissa field holds 0..1023
        (0, 15, -1, "mantissa"),
    ],
    ids=[
        "sign-2",
        "sign-negative",
        "exponent-32",
        "exponent-negative",
        "mantissa-1024",
        "mantissa-negative",
    ],
)
def test_decode_fields_refuses_fields_the_format_cannot_hold(sign, biased_exponent, mantissa, name):
    with pytest.raises(ValueError, match=name):
        decode_fields(sign, biased_exponent, mantissa, torch.float16)


@pytest.mark.parametrize("field", [True, 2.5, "1", None], ids=["bool", "float", "str", "none"])
def test_decode_fields_refuses_non_integer_fields(field):
    with pytest.raises(TypeError, match="mantissa must be an int"):
        decode_fields(0, 15, field, torch.float16)


def test_overflow_and_underflow():
    assert round_to_dtype(70000.0, torch.float16) == math.inf
    assert round_to_dtype(70000.0, torch.bfloat16) == 70144  # spacing 512 in [65536, 131072)
    assert round_to_dtype(1e-8, torch.float16) == 0.0  # below half of fp16's 2**-24
    assert round_to_dtype(1e-8, torch.bfloat16) == pytest.approx(1e-8, rel=2**-8)
    assert round_to_dtype(1000.0, torch.float8_e4m3fn) == 448  # torch 2.13's cast saturates
    table = overflow_underflow_table((70000.0, 1e-8))
    assert table.loc["70000", "float16"] == "inf"
    assert table.loc["70000", "bfloat16"] == "70144"
    assert table.loc["1e-08", "float16"] == "0"
    assert table.loc["1e-08", "bfloat16"] == "1.00117e-08"


def test_e4m3fn_overflow_policy_of_this_torch():
    # The format has no inf; what an overflow becomes is the cast's policy. torch 2.13 saturates,
    # even for inf (the OCP FP8 spec's non-saturating mode gives NaN). NaN stays NaN.
    assert round_to_dtype(math.inf, torch.float8_e4m3fn) == 448
    assert round_to_dtype(-1e39, torch.float8_e4m3fn) == -448
    assert math.isnan(round_to_dtype(math.nan, torch.float8_e4m3fn))
    assert round_to_dtype(1e39, torch.float8_e5m2) == math.inf  # e5m2 keeps IEEE's inf


def test_torch_rounds_float64_to_bfloat16_through_float32():
    # The nearest bfloat16 to 1 + 2**-8 + 2**-30 is 1 + 2**-7, but float32 first drops 2**-30,
    # leaving an exact tie that rounds to even: 1.0. float_bits shows what torch stores.
    assert float_bits(1 + 2**-8 + 2**-30, torch.bfloat16).value == 1.0


@pytest.mark.parametrize(
    "x, dtype, gap",
    [
        (1.0, torch.bfloat16, 2**-7),
        (300.0, torch.bfloat16, 2.0),  # [256, 512) holds 128 bfloat16 numbers: steps of 2
        (1.0, torch.float32, 2**-23),
        (0.0, torch.float16, 2**-24),  # zero's neighbour is the smallest subnormal
        (-3e-6, torch.float16, 2**-24),  # subnormal range: constant gap
        (1000.0, torch.float8_e4m3fn, 32.0),  # saturates to 448 in [256, 512): 2**(8 - 3)
    ],
    ids=["1-bf16", "300-bf16", "1-fp32", "0-fp16", "subnormal-fp16", "saturated-e4m3"],
)
def test_spacing_hand_cases(x, dtype, gap):
    assert spacing(x, dtype).item() == gap


def test_spacing_of_overflow_is_nan():
    assert math.isnan(spacing(70000.0, torch.float16).item())


def test_spacing_of_tensors_that_are_views_or_require_grad():
    x = torch.tensor([[1.0, 300.0], [3e-6, 0.0]])
    expected = torch.tensor([[2**-7, 2.0], [2**-26, 2**-133]], dtype=torch.float64)
    # 3e-6 lies in [2**-19, 2**-18): gap 2**(-19 - 7); zero's neighbour is 2**(1 - 127 - 7)
    assert torch.equal(spacing(x.T, torch.bfloat16), expected.T)  # not contiguous
    assert torch.equal(spacing(x.requires_grad_(), torch.bfloat16), expected)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_spacing_refuses_non_finite_input(bad):
    with pytest.raises(ValueError, match=r"\bx\b"):
        spacing(bad, torch.float16)
    with pytest.raises(ValueError, match=r"\bx\b"):
        spacing(torch.tensor([1.0, bad]), torch.float16)


def test_spacing_refuses_complex_tensors():
    with pytest.raises(TypeError, match=r"\bx\b"):
        spacing(torch.tensor([1 + 0j]), torch.float16)


def test_float_facts_table_rows():
    table = float_facts_table()
    assert table.loc["bfloat16", "sign / exponent / mantissa"] == "1 / 8 / 7"
    assert table.loc["float16", "max"] == "65,504"
    assert table.loc["float8_e4m3fn", "max"] == "448"
    assert table.loc["float8_e4m3fn", "infinities"].startswith("no")
    assert table.loc["bfloat16", "eps (gap above 1)"].startswith("2^-7 ")
    assert table.loc["float32", "decimal digits"] == "7.22"  # 24 * log10(2) = 7.2247
    gigabytes = table["GB per 1e9 parameters"]
    assert (gigabytes["float8_e5m2"], gigabytes["bfloat16"], gigabytes["float32"]) == (
        "1",
        "2",
        "4",
    )


def test_int_facts_table_rows():
    table = int_facts_table()
    assert (table.loc["int8", "min"], table.loc["int8", "max"]) == ("-128", "127")
    assert table.loc["int32", "max"] == "2,147,483,647"
    assert table.loc["uint8", "encoding"] == "unsigned"
    assert table.loc["int32", "decimal digits"] == 9  # every 9-digit integer fits below 2.1e9
    assert table.loc["int8", "GB per 1e9 parameters"] == "1"


def test_facts_tables_reject_the_other_kind():
    with pytest.raises(ValueError, match="torch.int8"):
        int_facts_table((torch.float32,))
    with pytest.raises(ValueError, match="torch.bfloat16"):
        float_facts_table((torch.int8,))


def test_bytes_for_parameters():
    assert bytes_for_parameters(10**9, torch.bfloat16) == 2 * 10**9
    assert bytes_for_parameters(10**9, torch.float8_e5m2) == 10**9


@pytest.mark.parametrize(
    "dtype, bits",
    [
        (torch.uint4, 4),  # torch.uint4.itemsize is 1: the width comes from the dtype itself
        (torch.int4, 4),
        (torch.uint1, 1),
        (torch.int2, 2),
        (torch.float4_e2m1fn_x2, 4),  # two 4-bit floats per byte
        (torch.quint4x2, 4),
        (torch.quint2x4, 2),
        (torch.uint8, 8),
        (torch.bfloat16, 16),
        (torch.complex64, 64),
    ],
    ids=str,
)
def test_bits_per_number(dtype, bits):
    assert bits_per_number(dtype) == bits


def test_bytes_for_sub_byte_parameters():
    assert bytes_for_parameters(1000, torch.uint4) == 500  # not 1000: 4 bits each
    assert bytes_for_parameters(1001, torch.uint4) == 501  # the odd one takes a whole byte
    assert bytes_for_parameters(9, torch.uint1) == 2
    assert bytes_for_parameters(0, torch.int4) == 0


def test_bytes_for_parameters_is_exact_for_huge_counts():
    n = 10**30 + 1  # beyond float64's integers: n * 4 / 8 in floats would round
    assert bytes_for_parameters(n, torch.uint4) == (n + 1) // 2


# --- bad input ---


@pytest.mark.parametrize(
    "value", ["0.5", None, complex(1, 2), True], ids=["string", "none", "complex", "bool"]
)
def test_non_numbers_raise_type_error(value):
    with pytest.raises(TypeError, match="real number"):
        float_bits(value, torch.float32)


@pytest.mark.parametrize("dtype", [torch.int8, torch.complex64], ids=["int8", "complex64"])
def test_unsupported_dtype_names_the_supported_ones(dtype):
    with pytest.raises(ValueError, match=r"torch\.bfloat16.*torch\.float8_e5m2"):
        float_bits(1.0, dtype)


def test_spacing_rejects_non_numbers_and_integer_dtypes():
    with pytest.raises(TypeError, match="real number"):
        spacing("1.0", torch.float16)
    with pytest.raises(ValueError, match="torch.float16"):
        spacing(1.0, torch.int8)


def test_dtype_given_as_string_raises_type_error():
    with pytest.raises(TypeError, match="torch.dtype"):
        float_bits(1.0, "bfloat16")


@pytest.mark.parametrize(
    "table",
    [float_facts_table, int_facts_table, lambda dtypes: float_bits_table(0.1, dtypes)],
    ids=["float_facts_table", "int_facts_table", "float_bits_table"],
)
@pytest.mark.parametrize(
    "dtypes, error",
    [
        (None, TypeError),
        ("float16", TypeError),
        ((), ValueError),
        ((torch.float32, None), ValueError),
    ],
    ids=["none", "str", "empty", "with-None"],
)
def test_tables_name_a_bad_dtypes_argument(table, dtypes, error):
    with pytest.raises(error, match="dtypes"):
        table(dtypes)


@pytest.mark.parametrize(
    "values, error",
    [(None, TypeError), ((), ValueError), ((1.0, math.nan), ValueError)],
    ids=["none", "empty", "nan-element"],
)
def test_overflow_table_names_a_bad_values_argument(values, error):
    with pytest.raises(error, match="values"):
        overflow_underflow_table(values)


def test_integer_too_large_for_float64_raises_value_error():
    with pytest.raises(ValueError, match="too large"):
        float_bits(10**400, torch.float32)


def test_bad_parameter_count_raises():
    with pytest.raises(ValueError, match="n_parameters"):
        bytes_for_parameters(-1, torch.int8)
    with pytest.raises(TypeError, match="n_parameters must be an int"):
        bytes_for_parameters(1e9, torch.int8)
    with pytest.raises(TypeError, match="torch.dtype"):
        bytes_for_parameters(10, "int8")


# --- properties: decoding the bits gives back exactly what torch stored ---

finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x=finite_floats, dtype=st.sampled_from(FLOAT_DTYPES))
def test_decoded_bits_equal_torch_rounding(x, dtype):
    torch_value = torch.tensor(x, dtype=torch.float64).to(dtype).item()
    bits = float_bits(x, dtype)
    assert bits.value == torch_value
    assert math.copysign(1, bits.value) == math.copysign(1, torch_value)  # -0.0 stays -0.0
    assert len(bits.sign + bits.exponent + bits.mantissa) == torch.finfo(dtype).bits


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(allow_nan=False, allow_infinity=False, width=32),
    dtype=st.sampled_from(FLOAT_DTYPES),
)
def test_decoded_bits_equal_torch_rounding_from_a_float32_tensor(x, dtype):
    # The form, torch.tensor(x).to(dtype): x is exact in float32, so no double rounding.
    assert float_bits(x, dtype).value == torch.tensor(x).to(dtype).item()


# --- independent reference: Python's struct packs IEEE 754 bit patterns itself ---

STRUCT_FORMATS = [
    (torch.float64, ">d", st.floats(allow_nan=False)),
    (torch.float32, ">f", st.floats(allow_nan=False, width=32)),
    # fp32-exact inputs: struct rounds float64 -> half once, torch rounds via float32 (exact here).
    (torch.float16, ">e", st.floats(min_value=-65504, max_value=65504, width=32)),
]


@pytest.mark.parametrize(
    "dtype, code, values", STRUCT_FORMATS, ids=["float64", "float32", "float16"]
)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_bits_match_struct(dtype, code, values, data):
    x = data.draw(values)
    expected = "".join(f"{byte:08b}" for byte in struct.pack(code, x))
    bits = float_bits(x, dtype)
    assert bits.sign + bits.exponent + bits.mantissa == expected


@settings(max_examples=100, deadline=None)
@given(
    x=st.floats(min_value=0, max_value=1e300),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.float16, torch.bfloat16]),
)
def test_spacing_matches_torch_nextafter(x, dtype):
    stored = torch.tensor(x, dtype=torch.float64).to(dtype)
    neighbour = torch.nextafter(stored, torch.tensor(math.inf, dtype=dtype))
    if not torch.isfinite(neighbour) or not torch.isfinite(stored):
        return  # at or beyond the largest number there is no finite neighbour to compare with
    expected = neighbour.double() - stored.double()  # exact: two numbers one gap apart
    assert spacing(x, dtype).item() == expected.item()
