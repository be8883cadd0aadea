"""Lesson 4 exercises: scale and zero point, the symmetric code, quantize, what codes stand for.

This module holds the scales and zero points; ``_lesson4_codes`` holds the exercises on the
codes (quantize; what a code stands for, the SQNR of one more bit, unpacking a byte) and is
imported at the end, so that loading this lesson registers all of them.

In the order the lesson teaches the zero-point form (Jacob et al., 2018): derive the asymmetric
scale and zero point, predict a symmetric code, derive q = clamp(round(r / s) + z, q_min, q_max),
predict r ~ s (q - z), derive per-channel scales, predict the decibels of the eighth bit and the
two 4-bit values of a byte. The reference solutions are written here with plain torch,
independent of tutorlib.quant, and named ``my_...`` like the learner's, so that a notebook's
never shadow tutorlib's.

Leaves out: per-group scales and clipping (the lesson measures them; an exercise would repeat
per-channel), and the W8A16 layer (it only chains these functions).
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
    register,
    same_number,
    same_tensor,
    seeded,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution

# A scale computed in float32 passes through a subtraction and a division, each rounded to
# 2**-24 relative: 1e-6 (about 16 float32 roundings) accepts that and no mistake.
_SCALE_RTOL = 1e-6


# ---------------------------------------------------------------- l4-scale-zero-point


def my_get_scale_and_zero_point(r: torch.Tensor, bits: int) -> tuple[float, int]:
    """Asymmetric per-tensor scale s and integer zero point z onto q in [0, 2**k - 1].

    Widen the range to contain 0: r_min = min(min(r), 0), r_max = max(max(r), 0); then
    s = (r_max - r_min) / (q_max - q_min),  z = q_min - round(r_min / s).
    Example: r = [-1.0, 0.5, 3.0], 8 bits: s = 4 / 255 = 0.015686, z = 0 - round(-63.75) = 64.
    """
    q_min, q_max = 0, 2**bits - 1
    r_min = min(r.min().item(), 0.0)
    r_max = max(r.max().item(), 0.0)
    scale = (r_max - r_min) / (q_max - q_min)
    zero_point = q_min - round(r_min / scale)  # Python's round: halves to even, like torch.round
    return scale, int(zero_point)


def _zero_point_cases() -> list[tuple[str, torch.Tensor, int]]:
    generator = seeded(41)
    return [
        ("randn(64), 8 bits", torch.randn(64, generator=generator), 8),
        ("r = [-1.0, 0.5, 3.0], 4 bits", torch.tensor([-1.0, 0.5, 3.0]), 4),
        ("rand(16) + 0.5 (all positive), 8 bits", torch.rand(16, generator=generator) + 0.5, 8),
        (
            "-(rand(16) + 0.5) (all negative), 4 bits",
            -(torch.rand(16, generator=generator) + 0.5),
            4,
        ),
        (
            "a (8, 16) tensor 3 randn + 1, 2 bits",
            3 * torch.randn(8, 16, generator=generator) + 1,
            2,
        ),
        (
            "relu(randn(32)) (zeros and positives), 8 bits",
            torch.randn(32, generator=generator).relu(),
            8,
        ),
        ("a constant 3.0, 8 bits", torch.full((4,), 3.0), 8),
    ]


def _zero_point_mistakes(r: torch.Tensor, bits: int) -> list[tuple[object, str]]:
    r_min, r_max = min(r.min().item(), 0.0), max(r.max().item(), 0.0)
    scale = (r_max - r_min) / (2**bits - 1)
    scale_2k = (r_max - r_min) / 2**bits
    abs_max = r.abs().max().item()
    mistakes = [
        ((scale_2k, -round(r_min / scale_2k)), "2^k instead of 2^k - 1: k bits give 2^k - 1 steps"),
        ((scale, -math.floor(r_min / scale)), "round r_min / s to the nearest integer, not floor"),
        ((scale, -math.trunc(r_min / scale)), "round r_min / s to the nearest, not toward 0"),
        ((scale, round(r_min / scale)), "z = q_min - round(r_min / s): r_min <= 0, so z >= 0"),
        ((abs_max / (2 ** (bits - 1) - 1), 0), "that is the symmetric form; use r_min and r_max"),
    ]
    tight = (r.max().item() - r.min().item()) / (2**bits - 1)  # the range not widened to 0
    if tight > 0:
        mistakes.append(
            (
                (tight, -round(r.min().item() / tight)),
                "widen the range to contain 0: r_min = min(min(r), 0), r_max = max(max(r), 0)",
            )
        )
    return mistakes


def _same_scale_and_zero_point(a: object, b: object) -> bool:
    """Scales within _SCALE_RTOL, zero points equal."""
    return same_number(rel_tol=_SCALE_RTOL)(a[0], b[0]) and a[1] == b[1]


def _as_scale_and_zero_point(value: object) -> tuple[float, int]:
    scale, zero_point = expect_pair(value, "scale", "zero_point")
    return expect_number(scale, "the scale"), expect_integer(zero_point, "the zero point")


def _check_scale_zero_point(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-scale-zero-point", my_get_scale_and_zero_point)')
    for case, r, bits in _zero_point_cases():
        got = _as_scale_and_zero_point(call(function, r, bits, case=case))
        expected = my_get_scale_and_zero_point(r, bits)
        verify(got, expected, _zero_point_mistakes(r, bits), _same_scale_and_zero_point, case)
    return (
        "right: s = (r_max - r_min) / (2^k - 1) over a range that contains 0, "
        "z = -round(r_min / s)."
    )


register(
    Exercise(
        id="l4-scale-zero-point",
        lesson=4,
        prompt="Write my_get_scale_and_zero_point(r, bits) -> (scale, zero_point), asymmetric.",
        solution=my_get_scale_and_zero_point,
        checker=_check_scale_zero_point,
    )
)


# ---------------------------------------------------------------- l4-symmetric-code

# r = [-1.0, 0.5, 3.0] at 8 bits, symmetric: s = max|r| / 127 = 3 / 127, and 0.5 / s = 21.17.
SYMMETRIC_CODE = round(0.5 / (3 / 127))  # 21


def _check_symmetric_code(answer: object) -> str:
    got = expect_number(answer)
    if got != round(got):
        raise Wrong(f"{got:g} is not an integer: round r / s to the nearest integer, a code")
    mistakes = [
        (96.0, "96 is the asymmetric code (s = 4/255, z = 64); symmetric has z = 0, s = 3/127"),
        (32.0, "that divides by the asymmetric scale 4/255; symmetric uses max|r| / 127"),
        (42.0, "symmetric codes are signed: 127 levels on each side, s = 3/127, not 3/255"),
        (0.0, "0.5 is not 0: only r = 0 gets the code 0 in the symmetric form"),
    ]
    verify(got, float(SYMMETRIC_CODE), mistakes, same_number(), "r = [-1.0, 0.5, 3.0], 8 bits")
    return (
        "21: s = max|r| / 127 = 3/127, and 0.5 / s = 21.17 rounds to 21; -1.0 gets -42 and 3.0 "
        "gets 127. The codes -128 and -43 ... -127 go unused: the price of z = 0."
    )


register(
    Exercise(
        id="l4-symmetric-code",
        lesson=4,
        prompt="r = [-1.0, 0.5, 3.0], symmetric, 8 bits: which integer does 0.5 get?",
        solution=SYMMETRIC_CODE,
        checker=_check_symmetric_code,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l4-per-channel-scales


def my_get_per_channel_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric scales, one per output channel (row) of a (out, in) weight: shape (out, 1).

    s[o] = max_i |w[o, i]| / (2**(k-1) - 1); keepdim leaves (out, 1), which broadcasts against w.
    Example: w = [[1.0, -2.0], [0.5, 0.25]], 8 bits: s = [[2 / 127], [0.5 / 127]].
    """
    q_max = 2 ** (bits - 1) - 1
    return weight.abs().amax(dim=1, keepdim=True) / q_max  # (out, 1)


def _per_channel_cases() -> list[tuple[str, torch.Tensor, int]]:
    generator = seeded(43)
    row_sizes = torch.logspace(-2, 1, 8)[:, None]  # (8, 1): rows of very different sizes
    zero_row = torch.randn(3, 10, generator=generator)
    zero_row[1] = 0.0
    return [
        ("an (8, 16) weight, 8 bits", row_sizes * torch.randn(8, 16, generator=generator), 8),
        ("a (4, 4) weight, 4 bits", torch.randn(4, 4, generator=generator), 4),
        ("a (3, 10) weight with a row of zeros, 8 bits", zero_row, 8),
    ]


def _per_channel_mistakes(weight: torch.Tensor, bits: int) -> list[tuple[object, str]]:
    q_max, out = 2 ** (bits - 1) - 1, weight.shape[0]
    per_tensor = weight.abs().max() / q_max
    message = "one scale for the whole tensor is per-tensor; per channel needs one per row"
    return [
        (per_tensor, message),
        (per_tensor.expand(out, 1), message),
        (
            weight.abs().amax(dim=0, keepdim=True) / q_max,
            "one scale per row (output channel), not per column",
        ),
        (weight.abs().amax(dim=0) / q_max, "one scale per row (output channel), not per column"),
        (
            weight.abs().amax(dim=1) / q_max,
            "right values; keep shape (out, 1) (keepdim=True) so it broadcasts",
        ),
        (
            weight.abs().amax(dim=1, keepdim=True) / 2 ** (bits - 1),
            "q_max is 2^(k-1) - 1, not 2^(k-1)",
        ),
        (
            weight.amax(dim=1, keepdim=True) / q_max,
            "use max|w| per row: the largest magnitude may be negative",
        ),
    ]


def _check_per_channel_scales(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-per-channel-scales", my_get_per_channel_scales)')
    # atol: a scale floored at float32's eps (as torch.ao does) for a row of zeros is right too.
    same = same_tensor(rtol=_SCALE_RTOL, atol=torch.finfo(torch.float32).eps)
    for case, weight, bits in _per_channel_cases():
        got = call(function, weight, bits, case=case)
        expected = my_get_per_channel_scales(weight, bits)
        verify(got, expected, _per_channel_mistakes(weight, bits), same, case)
    return "right: s[o] = max|w[o, :]| / (2^(k-1) - 1), shape (out, 1)."


register(
    Exercise(
        id="l4-per-channel-scales",
        lesson=4,
        prompt="Write my_get_per_channel_scales(weight, bits) -> (out, 1) symmetric scales.",
        solution=my_get_per_channel_scales,
        checker=_check_per_channel_scales,
    )
)


# The codes' exercises (l4-quantize, l4-dequantize, l4-sqnr, l4-pack-4bit) live in their own
# module; importing it registers them with this lesson's.
import tutorlib.exercises._lesson4_codes  # noqa: E402, F401
