"""Lesson 4 exercises: scale and zero point, quantize, dequantize, SQNR and 4-bit packing.

Each asks for one function of the zero-point form (Jacob et al., 2018), in the order the lesson
teaches it: the asymmetric scale and zero point, the symmetric scale, per-channel scales,
q = clamp(round(r / s) + z, q_min, q_max), r ~ s (q - z), the SQNR, and two 4-bit values per byte.
The reference solutions are written here with plain torch, independent of tutorlib.quant, and
named ``my_...`` like the learner's, so that a notebook's never shadow tutorlib's.

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
    expect_tensor,
    register,
    same_number,
    same_tensor,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution

# A scale computed in float32 passes through a subtraction and a division, each rounded to
# 2**-24 relative: 1e-6 (about 16 float32 roundings) accepts that and no mistake.
_SCALE_RTOL = 1e-6


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
    generator = _seeded(41)
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


# ---------------------------------------------------------------- l4-symmetric-scale


def my_get_symmetric_scale(r: torch.Tensor, bits: int) -> float:
    """Symmetric per-tensor scale onto the restricted range [-(2**(k-1) - 1), 2**(k-1) - 1].

    s = max|r| / q_max with q_max = 2**(k-1) - 1 (the zero point is 0).
    Example: r = [-1.0, 0.5, 3.0], 8 bits: s = 3 / 127 = 0.023622.
    """
    q_max = 2 ** (bits - 1) - 1
    return r.abs().max().item() / q_max


def _symmetric_cases() -> list[tuple[str, torch.Tensor, int]]:
    generator = _seeded(42)
    return [
        ("randn(100), 8 bits", torch.randn(100, generator=generator), 8),
        (
            "-5 rand(20) (negative values dominate), 4 bits",
            -5 * torch.rand(20, generator=generator),
            4,
        ),
        ("a (3, 5) randn tensor, 2 bits", torch.randn(3, 5, generator=generator), 2),
        ("r = [-1.0, 0.5, 3.0], 8 bits", torch.tensor([-1.0, 0.5, 3.0]), 8),
        ("a constant -2.0, 8 bits", torch.full((6,), -2.0), 8),
    ]


def _symmetric_mistakes(r: torch.Tensor, bits: int) -> list[tuple[object, str]]:
    abs_max, half = r.abs().max().item(), 2 ** (bits - 1)
    r_min, r_max = min(r.min().item(), 0.0), max(r.max().item(), 0.0)
    return [
        (abs_max / half, "q_max of the restricted range is 2^(k-1) - 1, not 2^(k-1)"),
        (r.max().item() / (half - 1), "use max|r|: the largest magnitude may be negative"),
        (
            (r_max - r_min) / (2**bits - 1),
            "that is the asymmetric scale; symmetric uses max|r| / q_max",
        ),
        (abs_max / (2**bits - 1), "symmetric q is signed: q_max = 2^(k-1) - 1, not 2^k - 1"),
    ]


def _check_symmetric_scale(answer: object) -> str:
    function = expect_callable(answer, 'check("l4-symmetric-scale", my_get_symmetric_scale)')
    for case, r, bits in _symmetric_cases():
        got = expect_number(call(function, r, bits, case=case), "the scale")
        same = same_number(rel_tol=_SCALE_RTOL)
        verify(got, my_get_symmetric_scale(r, bits), _symmetric_mistakes(r, bits), same, case)
    return "right: s = max|r| / (2^(k-1) - 1), e.g. 3 / 127 for r in [-1, 3] at 8 bits."


register(
    Exercise(
        id="l4-symmetric-scale",
        lesson=4,
        prompt="Write my_get_symmetric_scale(r, bits) -> float, the symmetric per-tensor scale.",
        solution=my_get_symmetric_scale,
        checker=_check_symmetric_scale,
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
    generator = _seeded(43)
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
    generator = _seeded(44)
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
    generator = _seeded(45)
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
    generator = _seeded(46)
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
    generator = _seeded(47)
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
