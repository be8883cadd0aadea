"""Lesson 4 exercises on the codes: quantize, then three predictions on what the codes hold.

The second half of Lesson 4's exercises (``lesson4`` holds the scales and zero points, and
imports this module so that its exercises are registered with the lesson's): derive
q = clamp(round(r / s) + z, q_min, q_max); then predict what a code stands for, r ~ s (q - z),
how many decibels of SQNR the eighth bit buys, and which two 4-bit values a byte holds. The
reference solution uses plain torch, independent of tutorlib.quant, and is named ``my_...`` like
the learner's.

Leaves out: per-group codes (the lesson measures them; an exercise would repeat per-channel).
"""

import math

import torch

from tutorlib.exercises.core import (
    Exercise,
    Wrong,
    call,
    expect_callable,
    expect_integer,
    expect_number,
    expect_pair,
    expect_tensor,
    register,
    same_number,
    same_tensor,
    seeded,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l4-quantize


def my_linear_quantize(
    r: torch.Tensor, scale: float | torch.Tensor, zero_point: int | torch.Tensor, bits: int
) -> torch.Tensor:
    """Asymmetric quantization onto [0, 2**k - 1]: q = clamp(round(r / s) + z, q_min, q_max).

    scale and zero_point are numbers (per tensor) or tensors that broadcast against r (per
    channel). Returns int32. Example: r = [-1.0, 0.5, 3.0], s = 4 / 255, z = 64, 8 bits:
    round([-63.75, 31.875, 191.25]) + 64 = [0, 96, 255].
    """
    q_min, q_max = 0, 2**bits - 1
    q = torch.round(r / scale) + zero_point
    return torch.clamp(q, q_min, q_max).to(torch.int32)


def _quantize_cases() -> list[tuple[str, torch.Tensor, object, object, int]]:
    generator = seeded(44)
    r8 = 2 * torch.randn(64, generator=generator)  # some values fall outside [-2, 2]: clamped
    r4 = 6 * torch.rand(4, 8, generator=generator) - 1
    channels = torch.randn(4, 6, generator=generator) * torch.tensor([[0.1], [1.0], [3.0], [10.0]])
    channel_scale = channels.abs().amax(dim=1, keepdim=True) / 127  # (4, 1)
    channel_zero = torch.tensor([[128], [100], [128], [150]], dtype=torch.int32)  # (4, 1)
    return [
        ("2 randn(64), s = 4/255, z = 128, 8 bits", r8, 4 / 255, 128, 8),
        ("a (4, 8) tensor in [-1, 5), s = 6/15, z = 3, 4 bits", r4, 6 / 15, 3, 4),
        (
            "a (4, 6) weight, per-channel (4, 1) scale and zero point, 8 bits",
            channels,
            channel_scale,
            channel_zero,
            8,
        ),
        (
            "r = [-1.0, 0.5, 3.0], s = 4/3, z = 1, 2 bits",
            torch.tensor([-1.0, 0.5, 3.0]),
            4 / 3,
            1,
            2,
        ),
    ]


def _quantize_mistakes(
    r: torch.Tensor, s: object, z: object, bits: int
) -> list[tuple[object, str]]:
    q_max, half = 2**bits - 1, 2 ** (bits - 1)
    x = r / s
    return [
        (
            torch.clamp(torch.floor(x) + z, 0, q_max),
            "round r / s to the nearest integer, not floor",
        ),
        (
            torch.clamp(torch.trunc(x) + z, 0, q_max),
            "round r / s to the nearest, not toward 0 (.to(int))",
        ),
        (torch.clamp(torch.round(x), 0, q_max), "add the zero point z after rounding"),
        (torch.clamp(torch.round(x) - z, 0, q_max), "add the zero point z, do not subtract it"),
        (torch.round(x) + z, "clamp q to [0, 2^k - 1]: values beyond the range must saturate"),
        (torch.clamp(torch.round(x) + z, 0, 2**bits), "clamp to [0, 2^k - 1]: 2^k does not fit"),
        (torch.clamp(torch.round(x) + z, -half, half - 1), "the asymmetric range is [0, 2^k - 1]"),
        (
            torch.clamp(torch.round(r) / s + z, 0, q_max),
            "divide by s first, then round: round(r / s)",
        ),
        (
            torch.clamp(torch.trunc(torch.round(r) / s + z), 0, q_max),
            "divide by s first, then round",
        ),
    ]


def _check_quantize(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-quantize", my_linear_quantize)')
    for case, r, s, z, bits in _quantize_cases():
        got = call(function, r, s, z, bits, case=case)
        expected = my_linear_quantize(r, s, z, bits)
        verify(got, expected, _quantize_mistakes(r, s, z, bits), same_tensor(), case)
        expect_tensor(got, tuple(r.shape), "q", integer=True)
    return "right: q = clamp(round(r / s) + z, 0, 2^k - 1), per tensor and per channel."


register(
    Exercise(
        id="l4-quantize",
        lesson=4,
        prompt="Write my_linear_quantize(r, scale, zero_point, bits) -> integer q in [0, 2^k - 1].",
        solution=my_linear_quantize,
        checker=_check_quantize,
    )
)


# ---------------------------------------------------------------- l4-dequantize-value

# r = [-1.0, 0.5, 3.0] at 8 bits, asymmetric: s = 4/255, z = 64, q = [0, 96, 255]. 0.5 comes back
# as s (96 - 64) = 128/255, off by 0.00196: less than half a step, s/2 = 0.0078.
DEQUANTIZED = 4 / 255 * (96 - 64)  # 0.50196


def _check_dequantize_value(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (0.5, "dequantizing does not undo the rounding: s (q - z) lands on the grid, not on 0.5"),
        (4 / 255 * 96, "subtract the zero point first: r_hat = s (q - z)"),
        (32.0, "that is q - z; multiply it by the scale s = 4/255"),
        (96 / 255, "the scale is 4/255: the range [-1, 3] is 4 wide"),
    ]
    verify(got, DEQUANTIZED, mistakes, same_number(rel_tol=1e-4), "q = 96, s = 4/255, z = 64")
    return (
        "0.50196 = (4/255) x (96 - 64): the nearest grid level to 0.5, 0.00196 away, within half "
        "a step (0.0078)."
    )


register(
    Exercise(
        id="l4-dequantize-value",
        lesson=4,
        prompt="q = [0, 96, 255] with s = 4/255 and z = 64: what value does q = 96 stand for?",
        solution=DEQUANTIZED,
        checker=_check_dequantize_value,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l4-bit-db

# With the grid set by the range, s = (r_max - r_min) / (2**k - 1): from 7 to 8 bits s shrinks by
# 127/255 and the error amplitude with it; in power, 20 log10(255/127) = 6.05 dB.
BIT_DB_7_TO_8 = 20 * math.log10((2**8 - 1) / (2**7 - 1))


def _check_bit_db(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (20 * math.log10(2), "6.02 dB is a step halved exactly; 255/127 is a little more than 2"),
        (
            10 * math.log10(255 / 127),
            "SQNR is a ratio of powers: an amplitude ratio counts twice, 20 log10",
        ),
        (255 / 127, "that is the ratio of the steps; in decibels it is 20 log10 of it"),
        (20 * math.log10(127 / 63), "that is the symmetric grid's 7 -> 8 bits (127/63)"),
        (20 * math.log10(511 / 255), "that is the step from 8 to 9 bits"),
    ]
    verify(got, BIT_DB_7_TO_8, mistakes, same_number(rel_tol=2e-3), "7 to 8 bits")
    return (
        f"{BIT_DB_7_TO_8:.2f} dB: s shrinks by 127/255, the error's power by (127/255)^2, and "
        "10 log10 (255/127)^2 = 20 log10 (255/127). The '6.02 dB per bit' rule assumes 2 exactly."
    )


register(
    Exercise(
        id="l4-bit-db",
        lesson=4,
        prompt="s = (r_max - r_min) / (2^k - 1). By how many dB does SQNR grow from 7 to 8 bits?",
        solution=BIT_DB_7_TO_8,
        checker=_check_bit_db,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l4-unpack-byte

# A byte holds two 4-bit values, the first in the low nibble: 228 = 0b1110_0100 = 4 + 16 x 14.
PACKED_BYTE = 228
UNPACKED = (PACKED_BYTE % 16, PACKED_BYTE // 16)  # (4, 14)


def _check_unpack_byte(answer: object) -> str:
    pair = expect_pair(answer, "the first value", "the second value")
    got = tuple(expect_integer(v, "each value") for v in pair)
    mistakes = {
        UNPACKED[::-1]: "the first value is in the low 4 bits: 228 % 16, then 228 // 16",
        (PACKED_BYTE // 2, 0): "a byte holds two 4-bit values: split it by 16, not by 2",
        (4, 224): "the high value is 224 / 16 = 14: it is stored shifted by 4 bits",
    }
    if got != UNPACKED:
        raise Wrong(mistakes.get(got, f"{got} packs to {got[0] + 16 * got[1]}, not 228"))
    return "(4, 14): 228 = 0b1110_0100; the low nibble 0100 is 4, the high one 1110 is 14."


register(
    Exercise(
        id="l4-unpack-byte",
        lesson=4,
        prompt="Which two 4-bit values (first, second) does the byte 228 hold, first value low?",
        solution=UNPACKED,
        checker=_check_unpack_byte,
        kind="predict",
    )
)
