"""Lesson 1 exercises: the references agree with torch, and each common mistake is named."""

import pytest
import torch

from tutorlib.exercises import check
from tutorlib.exercises.lesson1 import (
    DECODED_BFLOAT16,
    INT8_WRAP_FROM,
    INT8_WRAPPED,
    PACKED_BYTES,
    PACKED_N,
    _decode_cases,
    my_decode_normal,
    my_integer_limits,
)
from tutorlib.formats.dtypes import bytes_for_parameters
from tutorlib.formats.float_bits import decode_fields, float_bits
from tutorlib.quant.params import integer_range


@pytest.mark.parametrize(
    "dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64], ids=str
)
def test_integer_limits_agree_with_iinfo(dtype):
    info = torch.iinfo(dtype)
    assert my_integer_limits(info.bits, dtype.is_signed) == (info.min, info.max)


def test_integer_limits_are_the_full_range_not_tutorlibs_restricted_one():
    """The exercise's range holds -2^(k-1); Lesson 4's symmetric grid stops at -(2^(k-1) - 1)."""
    assert my_integer_limits(8, True) == (-128, 127)
    assert integer_range(8, symmetric=True) == (-127, 127)
    assert my_integer_limits(8, False) == integer_range(8, symmetric=False) == (0, 255)


def test_decoded_bfloat16_is_what_torch_stores():
    assert float_bits(DECODED_BFLOAT16, torch.bfloat16).exponent == "10000001"
    assert float_bits(DECODED_BFLOAT16, torch.bfloat16).mantissa == "1010000"
    assert DECODED_BFLOAT16 == -6.5


def test_decode_normal_agrees_with_tutorlib_dtypes():
    layouts = {(8, 7): torch.bfloat16, (5, 10): torch.float16, (8, 23): torch.float32}
    layouts |= {(11, 52): torch.float64, (4, 3): torch.float8_e4m3fn, (5, 2): torch.float8_e5m2}
    for s, e_field, m_field, e, m in _decode_cases():
        expected = decode_fields(s, e_field, m_field, layouts[(e, m)])
        assert my_decode_normal(s, e_field, m_field, e, m) == expected


def test_int8_wrap_is_what_torch_computes():
    converted = torch.tensor([INT8_WRAP_FROM], dtype=torch.int16).to(torch.int8)
    assert converted.item() == INT8_WRAPPED == -56


def test_packed_bytes_agree_with_tutorlib_and_a_real_packing():
    assert PACKED_BYTES == bytes_for_parameters(PACKED_N, torch.uint4) == 501
    codes = torch.arange(PACKED_N) % 16
    padded = torch.cat([codes, codes.new_zeros(PACKED_N % 2)])  # the last byte half used
    packed = (padded[0::2] | (padded[1::2] << 4)).to(torch.uint8)
    assert packed.numel() == PACKED_BYTES


def _unsigned_2k(bits, signed):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits)


def _restricted(bits, signed):
    return (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _k_not_k_minus_1(bits, signed):
    return (-(2**bits), 2**bits - 1) if signed else (0, 2**bits - 1)


def _decode(bias_offset=0, implicit=1, signed=True):
    def decode(s, e_field, m_field, e, m):
        sign = (-1.0) ** s if signed else 1.0
        return (
            sign * 2.0 ** (e_field - (2 ** (e - 1) - 1 + bias_offset)) * (implicit + m_field / 2**m)
        )

    return decode


WRONG = [
    ("l1-integer-range", _unsigned_2k, "2^k instead of 2^k - 1"),
    ("l1-integer-range", _restricted, "restricted symmetric range"),
    ("l1-integer-range", _k_not_k_minus_1, "one of the k bits is the sign"),
    ("l1-integer-range", lambda bits, signed: 2**bits, "return a pair (q_min, q_max)"),
    ("l1-integer-range", lambda b, s: (0.0, 2.0**b - 1), "q_min should be an integer"),
    ("l1-decode-bfloat16", 6.5, "the sign bit 1 makes the number negative"),
    ("l1-decode-bfloat16", -2.5, "implicit leading 1"),
    ("l1-decode-bfloat16", -3.25, "bias of bfloat16 is 127"),
    ("l1-decode-bfloat16", -6.0, "the right result is -6.5"),
    ("l1-decode-bfloat16", "-6.5", "should be a number, got str"),
    ("l1-decode-normal", _decode(implicit=0), "dropped the implicit leading 1"),
    ("l1-decode-normal", _decode(bias_offset=1), "the bias is 2^(e-1) - 1, not 2^(e-1)"),
    ("l1-decode-normal", _decode(signed=False), "the sign is wrong: multiply by (-1)^s"),
    ("l1-int8-wrap", 127, "does not saturate"),
    ("l1-int8-wrap", 56, "as a signed int8 they are negative"),
    ("l1-int8-wrap", 72, "wraps by 2^8 = 256"),
    ("l1-packed-bytes", 500.5, "a byte cannot be split"),
    ("l1-packed-bytes", 1001, "itemsize 1"),
    ("l1-packed-bytes", 4004, "that is bits, not bytes"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message
