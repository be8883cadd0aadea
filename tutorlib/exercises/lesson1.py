"""Lesson 1 exercises: integer limits, the three fields of a float, wrapping, packed bytes.

Three predictions (decode one bfloat16 bit pattern by hand, what a narrowing integer conversion
gives, the bytes of packed 4-bit values) and two derivations (the full range of any k-bit integer
type, the decoding formula of any float layout).
The functions to write are named ``my_...``, so that a notebook's never shadow tutorlib's.

Leaves out: subnormals, inf and NaN in the decoding exercises (Lesson 1 shows them with
``tutorlib.formats.float_bits``); the checkers compare with that module's ``decode_fields``.
"""

import operator

import torch

from tutorlib.exercises.core import (
    Exercise,
    call,
    expect_callable,
    expect_integer,
    expect_number,
    expect_pair,
    register,
    same_number,
    verify,
)
from tutorlib.formats.float_bits import decode_fields

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l1-integer-range


def my_integer_limits(bits: int, signed: bool) -> tuple[int, int]:
    """(q_min, q_max), the full range of a k-bit integer type, as torch.iinfo gives it.

    signed (two's complement): [-2**(k-1), 2**(k-1) - 1]; unsigned: [0, 2**k - 1].
    Example: my_integer_limits(8, True) == (-128, 127), my_integer_limits(8, False) == (0, 255),
    the same as torch.iinfo(torch.int8) and torch.iinfo(torch.uint8). (Lesson 4's symmetric
    quantization uses only [-127, 127] of int8: tutorlib.quant.params.integer_range.)
    """
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


_RANGE_CASES = [(8, True), (8, False), (4, True), (4, False), (2, True), (16, False), (32, True)]
_RANGE_CASES += [(64, True), (3, False), (5, True)]


def _range_mistakes(bits: int, signed: bool) -> list[tuple[object, str]]:
    half = 2 ** (bits - 1)
    if signed:
        return [
            ((-half, half), "q_max is one too large: the top of a signed type is 2^(k-1) - 1"),
            (
                (-(half - 1), half - 1),
                "that is the restricted symmetric range of Lesson 4 (tutorlib's integer_range "
                "with symmetric=True); the full range of a two's complement type also holds "
                "-2^(k-1)",
            ),
            ((-(2**bits), 2**bits - 1), "one of the k bits is the sign: use k - 1, not k"),
            ((0, 2**bits - 1), "that is the unsigned range; signed=True asks for two's complement"),
        ]
    return [
        ((0, 2**bits), "2^k instead of 2^k - 1: k bits count 2^k values, from 0 to 2^k - 1"),
        ((-half, half - 1), "that is the signed range; signed=False starts at 0"),
        ((1, 2**bits), "an unsigned type starts at 0, not 1"),
    ]


def _as_pair(value: object) -> tuple[int, int]:
    q_min, q_max = expect_pair(value, "q_min", "q_max")
    return expect_integer(q_min, "q_min"), expect_integer(q_max, "q_max")


def _check_integer_range(answer: object) -> str:
    function = expect_callable(answer, 'check("l1-integer-range", my_integer_limits)')
    for bits, signed in _RANGE_CASES:
        case = f"bits={bits}, signed={signed}"
        got = _as_pair(call(function, bits, signed, case=case))
        expected = my_integer_limits(bits, signed)
        verify(got, expected, _range_mistakes(bits, signed), operator.eq, case)
    return (
        f"right for {len(_RANGE_CASES)} hidden cases from 2 to 64 bits; "
        "int8 holds -128 to 127 and uint8 0 to 255."
    )


register(
    Exercise(
        id="l1-integer-range",
        lesson=1,
        prompt=(
            "Write my_integer_limits(bits, signed) -> (q_min, q_max), a k-bit type's full range."
        ),
        solution=my_integer_limits,
        checker=_check_integer_range,
    )
)


# ---------------------------------------------------------------- l1-decode-bfloat16

# bfloat16: 1 sign bit, 8 exponent bits (bias 127), 7 mantissa bits. The pattern to decode:
_PATTERN = "1 10000001 1010000"  # sign 1, E = 129, M = 80
DECODED_BFLOAT16 = decode_fields(1, 0b10000001, 0b1010000, torch.bfloat16)  # -6.5


def _check_decode_bfloat16(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (6.5, "the magnitude is right; the sign bit 1 makes the number negative"),
        (-2.5, "you dropped the implicit leading 1: a normal number is 2^(E - bias) (1 + M/2^m)"),
        (-3.25, "the bias of bfloat16 is 127 (2^(8-1) - 1), not 128"),
        (-5.25, "the mantissa has m = 7 bits: M/2^7 = 80/128, not 80/256"),
        (-(1 + 80 / 128) * 2.0**129, "subtract the bias 127 from the exponent field 129"),
    ]
    # Exact: every bfloat16 number is a short binary fraction (here -13/2), written exactly in
    # decimal and in float64, so no tolerance is needed.
    verify(got, DECODED_BFLOAT16, mistakes, same_number(), f"the pattern {_PATTERN}")
    return f"{_PATTERN} = -2^(129 - 127) × (1 + 80/128) = -4 × 1.625 = {DECODED_BFLOAT16:g}."


register(
    Exercise(
        id="l1-decode-bfloat16",
        lesson=1,
        prompt=f"Which number does the bfloat16 bit pattern {_PATTERN} encode?",
        solution=DECODED_BFLOAT16,
        checker=_check_decode_bfloat16,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l1-decode-normal


def my_decode_normal(
    sign: int, biased_exponent: int, mantissa: int, exponent_bits: int, mantissa_bits: int
) -> float:
    """The normal number that the fields (s, E, M) encode in a layout of e and m bits.

    bias = 2**(e - 1) - 1;  value = (-1)**s * 2**(E - bias) * (1 + M / 2**m).
    Example: bfloat16 (e = 8, m = 7) fields (0, 125, 43) give 2**-2 * (1 + 43/128) = 0.333984375.
    """
    bias = 2 ** (exponent_bits - 1) - 1
    fraction = mantissa / 2**mantissa_bits
    return (-1.0) ** sign * 2.0 ** (biased_exponent - bias) * (1 + fraction)


# (exponent_bits, mantissa_bits): bfloat16, float16, float32, float64, and the two float8 layouts
_LAYOUTS = [(8, 7), (5, 10), (8, 23), (11, 52), (4, 3), (5, 2)]


def _decode_cases() -> list[tuple[int, int, int, int, int]]:
    """Seeded random normal fields (0 < E < 2**e - 1) of each layout, the first with s=1, M>0."""
    generator = torch.Generator().manual_seed(1)
    cases = [(1, 125, 43, 8, 7)]
    for e, m in _LAYOUTS:
        for _ in range(3):
            sign = int(torch.randint(2, (1,), generator=generator))
            exponent = int(
                torch.randint(1, min(2**e - 1, 2 ** (e - 1) + 60), (1,), generator=generator)
            )
            mantissa = int(torch.randint(2 ** min(m, 62), (1,), generator=generator)) % 2**m
            cases.append((sign, exponent, mantissa, e, m))
    return cases


def _decode_mistakes(s: int, E: int, M: int, e: int, m: int) -> list[tuple[object, str]]:
    bias, sign = 2 ** (e - 1) - 1, (-1.0) ** s
    return [
        (sign * 2.0 ** (E - bias) * M / 2**m, "you dropped the implicit leading 1: (1 + M/2^m)"),
        (
            -sign * 2.0 ** (E - bias) * (1 + M / 2**m),
            "the sign is wrong: multiply by (-1)^s, so s = 1 gives a negative number",
        ),
        (sign * 2.0 ** (E - 2 ** (e - 1)) * (1 + M / 2**m), "the bias is 2^(e-1) - 1, not 2^(e-1)"),
        (
            sign * 2.0 ** (E - bias) * (1 + M / 2 ** (m + 1)),
            "divide the mantissa by 2^m, not 2^(m+1)",
        ),
        (
            sign * 2.0 ** (E - bias) * (1 + M / (2**m - 1)),
            "divide the mantissa by 2^m, not 2^m - 1",
        ),
    ]


def _check_decode_normal(answer: object) -> str:
    function = expect_callable(answer, 'check("l1-decode-normal", my_decode_normal)')
    # Every value of these layouts is exact in float64; one ulp (2**-52 relative) allows a
    # different but valid order of operations.
    same = same_number(rel_tol=2.0**-52)
    cases = _decode_cases()
    for s, E, M, e, m in cases:
        case = f"sign={s}, biased_exponent={E}, mantissa={M}, exponent_bits={e}, mantissa_bits={m}"
        got = expect_number(call(function, s, E, M, e, m, case=case), "the decoded value")
        verify(got, my_decode_normal(s, E, M, e, m), _decode_mistakes(s, E, M, e, m), same, case)
    return (
        f"right on {len(cases)} hidden fields of bfloat16, float16, float32, float64 and both "
        "float8 layouts: (-1)^s 2^(E - bias) (1 + M/2^m) with bias = 2^(e-1) - 1."
    )


register(
    Exercise(
        id="l1-decode-normal",
        lesson=1,
        prompt=(
            "Write my_decode_normal(sign, biased_exponent, mantissa, exponent_bits, mantissa_bits)"
        ),
        solution=my_decode_normal,
        checker=_check_decode_normal,
    )
)


# ---------------------------------------------------------------- l1-int8-wrap

# Converting an integer tensor to a narrower type keeps the low bits: 200 = 0b11001000, which as
# a signed int8 (two's complement) is 200 - 256. The tests check it with torch.
INT8_WRAP_FROM = 200
INT8_WRAPPED = INT8_WRAP_FROM - 256  # -56


def _check_int8_wrap(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (127.0, "torch's conversion does not saturate at 127: it keeps the low 8 bits"),
        (200.0, "int8 holds at most 127: 200 cannot survive the conversion"),
        (56.0, "the low 8 bits 11001000 start with a 1: as a signed int8 they are negative"),
        (-128.0, "the result is not clamped to int8's minimum either: it wraps by 256"),
        (72.0, "int8 wraps by 2^8 = 256, not by 128"),
    ]
    verify(got, float(INT8_WRAPPED), mistakes, same_number(), "torch.tensor([200], int16).to(int8)")
    return (
        "-56: the conversion keeps the low 8 bits, 11001000, and a signed int8 reads them as "
        "200 - 256. torch wraps; some CPU instructions saturate instead (Lesson 5)."
    )


register(
    Exercise(
        id="l1-int8-wrap",
        lesson=1,
        prompt="What does torch.tensor([200], dtype=torch.int16).to(torch.int8) hold?",
        solution=INT8_WRAPPED,
        checker=_check_int8_wrap,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l1-packed-bytes

# 1,001 values of 4 bits are 4,004 bits; two values share a byte, and the last byte is half
# used: ceil(1001 / 2) = 501. torch.uint4 reports itemsize 1, which counts 1,001 bytes.
PACKED_N = 1_001
PACKED_BYTES = (PACKED_N * 4 + 7) // 8  # 501


def _check_packed_bytes(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (PACKED_N * 4 / 8, "a byte cannot be split: the last value needs a whole byte"),
        (
            float(PACKED_N * torch.uint4.itemsize),
            "that is n x itemsize: torch.uint4 reports "
            "itemsize 1, but two 4-bit values fit in a byte; count bits",
        ),
        (float(PACKED_N * 4), "that is bits, not bytes: divide by 8"),
        (float(PACKED_N // 2), "1,001 is odd: the last value still needs a byte"),
        (float(PACKED_N * 4 // 8 * 2), "two values per byte halve the count, not double it"),
    ]
    verify(got, float(PACKED_BYTES), mistakes, same_number(), "1,001 values of 4 bits")
    return "501: 1,001 x 4 bits = 4,004 bits = 500.5 bytes, rounded up to whole bytes."


register(
    Exercise(
        id="l1-packed-bytes",
        lesson=1,
        prompt="How many bytes do 1,001 four-bit values take, packed two to a byte?",
        solution=PACKED_BYTES,
        checker=_check_packed_bytes,
        kind="predict",
    )
)
