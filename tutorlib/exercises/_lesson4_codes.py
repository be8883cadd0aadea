"""Lesson 4 exercises on the codes: quantize, dequantize, the SQNR and two 4-bit values a byte.

The second half of Lesson 4's exercises (``lesson4`` holds the scales and zero points, and
imports this module so that its exercises are registered with the lesson's): q = clamp(round(r / s)
+ z, q_min, q_max), r ~ s (q - z), SQNR = 10 log10(sum r**2 / sum (r - r_hat)**2), and the
nibble packing of Lesson 4's size table. The reference solutions use plain torch, independent of
tutorlib.quant, and are named ``my_...`` like the learner's.

Leaves out: per-group codes (the lesson measures them; an exercise would repeat per-channel).
"""

import math

import torch

from tutorlib.exercises.core import (
    Exercise,
    Wrong,
    call,
    expect_callable,
    expect_number,
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


# ---------------------------------------------------------------- l4-dequantize


def my_linear_dequantize(
    q: torch.Tensor, scale: float | torch.Tensor, zero_point: int | torch.Tensor
) -> torch.Tensor:
    """Dequantize: r ~ s (q - z), in float32; q is converted before subtracting (uint8 wraps).

    Example: q = [0, 96, 255] (uint8), s = 4 / 255, z = 64: s * [-64, 32, 191] =
    [-1.0039, 0.5020, 2.9961].
    """
    return scale * (q.to(torch.float32) - zero_point)


def _dequantize_cases() -> list[tuple[str, torch.Tensor, object, object]]:
    generator = seeded(45)
    q8 = torch.randint(0, 256, (32,), generator=generator, dtype=torch.uint8)
    q4 = torch.randint(0, 16, (3, 8), generator=generator, dtype=torch.int32)
    scale4 = torch.tensor([[0.1], [0.02], [1.5]])  # (3, 1)
    zero4 = torch.tensor([[8], [3], [12]], dtype=torch.int32)  # (3, 1)
    return [
        ("uint8 q of 32 values, s = 4/255, z = 64", q8, 4 / 255, 64),
        ("int32 (3, 8) q, per-channel (3, 1) scale and zero point", q4, scale4, zero4),
        (
            "q = [0, 96, 255] (uint8), s = 0.5, z = 0",
            torch.tensor([0, 96, 255], dtype=torch.uint8),
            0.5,
            0,
        ),
    ]


def _dequantize_mistakes(q: torch.Tensor, s: object, z: object) -> list[tuple[object, str]]:
    q_float = q.to(torch.float64)
    z_float = z.to(torch.float64) if isinstance(z, torch.Tensor) else float(z)
    wrapped = (q_float - z_float) % 256 if q.dtype == torch.uint8 else q_float - z_float
    return [
        (s * q_float, "subtract the zero point: r ~ s (q - z)"),
        (s * (q_float + z_float), "subtract the zero point, do not add it: r ~ s (q - z)"),
        (s * q_float - z_float, "subtract z from q before multiplying by s: s (q - z)"),
        ((q_float - z_float) / s, "multiply by s, do not divide: r ~ s (q - z)"),
        (s * wrapped, "q - z wrapped around in uint8: convert q to float (or int32) first"),
    ]


def _check_dequantize(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-dequantize", my_linear_dequantize)')
    for case, q, s, z in _dequantize_cases():
        got = call(function, q, s, z, case=case)
        expected = my_linear_dequantize(q, s, z)
        # One float32 product of an exact integer difference: 2**-24 relative; 1e-6 allows it.
        verify(got, expected, _dequantize_mistakes(q, s, z), same_tensor(rtol=1e-6), case)
        if not got.is_floating_point():
            raise Wrong(f"r_hat should be a float tensor, got {got.dtype}")
    return "right: r ~ s (q - z), with q converted before the subtraction."


register(
    Exercise(
        id="l4-dequantize",
        lesson=4,
        prompt="Write my_linear_dequantize(q, scale, zero_point) -> float r_hat = s (q - z).",
        solution=my_linear_dequantize,
        checker=_check_dequantize,
    )
)


# ---------------------------------------------------------------- l4-sqnr


def my_sqnr_db(r: torch.Tensor, r_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in decibels: 10 log10(sum r^2 / sum (r - r_hat)^2).

    Higher is better; about 6.02 dB per bit. math.inf when r_hat equals r (no noise).
    Example: r = [1.0, -2.0], r_hat = [1.1, -2.0]: 10 log10(5 / 0.01) = 26.99 dB.
    """
    signal = (r.double() ** 2).sum().item()
    noise = ((r.double() - r_hat.double()) ** 2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def _symmetric_fake_quantize(r: torch.Tensor, bits: int) -> torch.Tensor:
    """r_hat = s clamp(round(r / s), -q_max, q_max), s = max|r| / q_max (for the hidden cases)."""
    q_max = 2 ** (bits - 1) - 1
    scale = r.abs().max() / q_max
    return scale * torch.clamp(torch.round(r / scale), -q_max, q_max)


def _sqnr_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = seeded(46)
    r = torch.randn(1000, generator=generator)
    weight = torch.randn(16, 64, generator=generator)
    return [
        ("randn(1000) at 8 bits", r, _symmetric_fake_quantize(r, 8)),
        ("randn(1000) at 2 bits", r, _symmetric_fake_quantize(r, 2)),
        ("a (16, 64) weight at 4 bits", weight, _symmetric_fake_quantize(weight, 4)),
        ("r_hat equal to r", r, r.clone()),
    ]


def _sqnr_mistakes(r: torch.Tensor, r_hat: torch.Tensor) -> list[tuple[object, str]]:
    signal = (r.double() ** 2).sum().item()
    noise = ((r.double() - r_hat.double()) ** 2).sum().item()
    if noise == 0:
        return []
    ratio = signal / noise
    return [
        (20 * math.log10(ratio), "these are energies (squares): 10 log10, not 20 log10"),
        (-10 * math.log10(ratio), "the ratio is upside down: signal over noise"),
        (10 * math.log(ratio), "decibels use log10, not the natural log"),
        (ratio, "convert the ratio to decibels: 10 log10(ratio)"),
        (
            5 * math.log10(ratio),
            "square the values: sum r^2 over sum (r - r_hat)^2, not their roots",
        ),
        (10 * math.log10((r_hat.double() ** 2).sum().item() / noise), "the signal is r, not r_hat"),
    ]


def _check_sqnr(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-sqnr", my_sqnr_db)')
    # float32 sums of n <= 1024 squares err by at most gamma_n = 1024 * 2**-24 = 6e-5 (relative),
    # which moves the dB value by 10 log10(1 + 2 * 6e-5) = 5e-4 dB; 0.01 dB leaves room.
    same = same_number(abs_tol=0.01)
    for case, r, r_hat in _sqnr_cases():
        got = expect_number(call(function, r, r_hat, case=case), "the SQNR")
        expected = my_sqnr_db(r, r_hat)
        if math.isinf(expected) and not math.isinf(got):
            raise Wrong(
                f"no noise means an infinite SQNR: return math.inf (on the hidden case {case})"
            )
        verify(got, expected, _sqnr_mistakes(r, r_hat), same, case)
    return "right: 10 log10(sum r^2 / sum (r - r_hat)^2), about 6 dB per bit."


register(
    Exercise(
        id="l4-sqnr",
        lesson=4,
        prompt="Write my_sqnr_db(r, r_hat) = 10 log10(sum r^2 / sum (r - r_hat)^2), inf if equal.",
        solution=my_sqnr_db,
        checker=_check_sqnr,
    )
)


# ---------------------------------------------------------------- l4-pack-4bit


def my_pack_4bit(q: torch.Tensor) -> torch.Tensor:
    """Pack pairs of 4-bit values (0..15) into uint8 bytes along the last axis, first value low.

    byte_i = q[2i] | (q[2i + 1] << 4); the last axis halves.
    Example: [3, 12, 15, 0] -> [3 + 12 * 16, 15 + 0 * 16] = [195, 15].
    """
    low, high = q[..., 0::2].to(torch.uint8), q[..., 1::2].to(torch.uint8)
    return low | (high << 4)


def _pack_cases() -> list[tuple[str, torch.Tensor]]:
    generator = seeded(47)
    return [
        ("16 random values", torch.randint(0, 16, (16,), generator=generator, dtype=torch.uint8)),
        ("a (3, 8) tensor", torch.randint(0, 16, (3, 8), generator=generator, dtype=torch.uint8)),
        ("[3, 12]", torch.tensor([3, 12], dtype=torch.uint8)),
        ("eight values of 15", torch.full((8,), 15, dtype=torch.uint8)),
        ("four zeros", torch.zeros(4, dtype=torch.uint8)),
    ]


def _pack_mistakes(q: torch.Tensor) -> list[tuple[object, str]]:
    low, high = q[..., 0::2].long(), q[..., 1::2].long()
    n = q.shape[-1] // 2
    return [
        (high | (low << 4), "the first value goes in the low 4 bits: q[2i] | (q[2i + 1] << 4)"),
        (low, "shift by 4, not 8: a byte holds two 4-bit values"),
        (low | (high << 2), "a 4-bit value needs a shift of 4, not 2"),
        (low + high, "shift the second value into the high 4 bits: << 4 (or * 16)"),
        (q[..., :n].long() | (q[..., n:].long() << 4), "pack neighbours (values 2i and 2i + 1)"),
    ]


def _check_pack_4bit(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-pack-4bit", my_pack_4bit)')
    for case, q in _pack_cases():
        got = call(function, q, case=case)
        verify(got, my_pack_4bit(q), _pack_mistakes(q), same_tensor(), case)
        expect_tensor(got, tuple(my_pack_4bit(q).shape), "the packed tensor", dtype=torch.uint8)
    return "right: q[2i] | (q[2i + 1] << 4), e.g. [3, 12] -> 195: half the bytes of int8."


register(
    Exercise(
        id="l4-pack-4bit",
        lesson=4,
        prompt=(
            "Write my_pack_4bit(q) that packs pairs of 4-bit values into uint8, first value low."
        ),
        solution=my_pack_4bit,
        checker=_check_pack_4bit,
    )
)
