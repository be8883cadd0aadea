"""Lesson 4 exercises: the references agree with torch's quantizer; mistakes are named."""

import math

import pytest
import torch

from tutorlib.exercises import check
from tutorlib.exercises._lesson4_codes import (
    _quantize_cases,
    my_linear_dequantize,
    my_linear_quantize,
    my_pack_4bit,
    my_sqnr_db,
)
from tutorlib.exercises.lesson4 import (
    _zero_point_cases,
    my_get_per_channel_scales,
    my_get_scale_and_zero_point,
    my_get_symmetric_scale,
)

pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def test_textbook_case():
    r = torch.tensor([-1.0, 0.5, 3.0])
    scale, zero_point = my_get_scale_and_zero_point(r, 8)
    assert scale == pytest.approx(4 / 255) and zero_point == 64
    assert my_get_symmetric_scale(r, 8) == pytest.approx(3 / 127)
    q = my_linear_quantize(r, scale, zero_point, 8)
    assert q.tolist() == [0, 96, 255]
    assert my_linear_dequantize(q, scale, zero_point).tolist() == pytest.approx(
        [-1.0039, 0.5020, 2.9961], abs=1e-4
    )
    assert my_pack_4bit(torch.tensor([3, 12, 15, 0], dtype=torch.uint8)).tolist() == [195, 15]
    assert my_sqnr_db(torch.tensor([1.0, -2.0]), torch.tensor([1.1, -2.0])) == pytest.approx(
        26.99, abs=0.01
    )


@pytest.mark.parametrize("case", _zero_point_cases(), ids=lambda c: c[0])
def test_scale_and_zero_point_agree_with_the_minmax_observer(case):
    _, r, bits = case
    observer = torch.ao.quantization.MinMaxObserver(quant_min=0, quant_max=2**bits - 1)
    observer(r)
    scale, zero_point = observer.calculate_qparams()
    expected_scale, expected_zero_point = my_get_scale_and_zero_point(r, bits)
    assert expected_scale == pytest.approx(scale.item(), rel=1e-6)
    assert expected_zero_point == zero_point.item()


@pytest.mark.parametrize("case", _zero_point_cases(), ids=lambda c: c[0])
def test_hidden_zero_points_are_far_from_ties(case):
    """A float32 learner and the float64 reference round r_min / s the same way."""
    _, r, bits = case
    scale, _ = my_get_scale_and_zero_point(r, bits)
    fraction = (min(r.min().item(), 0.0) / scale) % 1
    assert abs(fraction - 0.5) > 1e-3


@pytest.mark.parametrize("case", _quantize_cases(), ids=lambda c: c[0])
def test_hidden_quantize_inputs_are_far_from_ties(case):
    _, r, s, _, _ = case
    fraction = (r.double() / (s.double() if isinstance(s, torch.Tensor) else s)) % 1
    assert ((fraction - 0.5).abs() > 1e-4).all()


def test_quantize_agrees_with_quantize_per_tensor():
    _, r, s, z, bits = _quantize_cases()[0]
    reference = torch.quantize_per_tensor(r, s, z, torch.quint8).int_repr()
    assert torch.equal(my_linear_quantize(r, s, z, bits), reference.to(torch.int32))


def test_per_channel_scales_are_each_rows_symmetric_scale():
    weight = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    scales = my_get_per_channel_scales(weight, 4)
    assert scales.shape == (5, 1)
    assert scales[:, 0].tolist() == pytest.approx(
        [my_get_symmetric_scale(row, 4) for row in weight]
    )


def _zero_point_2k(r, bits):
    r_min, r_max = min(r.min().item(), 0.0), max(r.max().item(), 0.0)
    scale = (r_max - r_min) / 2**bits
    return scale, -round(r_min / scale)


def _zero_point_floor(r, bits):
    scale, _ = my_get_scale_and_zero_point(r, bits)
    return scale, -math.floor(min(r.min().item(), 0.0) / scale)


def _zero_point_not_widened(r, bits):
    r_min, r_max = r.min().item(), r.max().item()
    scale = (r_max - r_min) / (2**bits - 1)
    return scale, -round(r_min / scale)


def _zero_point_unrounded(r, bits):
    scale, _ = my_get_scale_and_zero_point(r, bits)
    return scale, -min(r.min().item(), 0.0) / scale


def _per_tensor_scales(weight, bits):
    return (weight.abs().max() / (2 ** (bits - 1) - 1)).expand(weight.shape[0], 1)


def _quantize(rounding=torch.round, zero=True, q_range=None, clamp=True):
    def quantize(r, s, z, bits):
        q_min, q_max = q_range(bits) if q_range else (0, 2**bits - 1)
        q = rounding(r / s) + (z if zero else 0)
        return (torch.clamp(q, q_min, q_max) if clamp else q).to(torch.int32)

    return quantize


def _dequantize_in_uint8(q, s, z):
    return s * (q - z)  # uint8 - int wraps around before the float multiply


def _signed_range(bits):
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


WRONG = [
    ("l4-scale-zero-point", _zero_point_2k, "2^k instead of 2^k - 1"),
    ("l4-scale-zero-point", _zero_point_floor, "not floor"),
    ("l4-scale-zero-point", _zero_point_not_widened, "widen the range to contain 0"),
    ("l4-scale-zero-point", _zero_point_unrounded, "the zero point should be an integer"),
    ("l4-symmetric-scale", lambda r, k: r.abs().max() / 2 ** (k - 1), "not 2^(k-1)"),
    ("l4-symmetric-scale", lambda r, k: r.max() / (2 ** (k - 1) - 1), "use max|r|"),
    ("l4-symmetric-scale", lambda r, k: r.abs().max() / (2**k - 1), "symmetric q is signed"),
    ("l4-per-channel-scales", _per_tensor_scales, "per-tensor"),
    ("l4-per-channel-scales", lambda w, k: w.abs().amax(0) / (2 ** (k - 1) - 1), "not per column"),
    ("l4-per-channel-scales", lambda w, k: w.abs().amax(1) / (2 ** (k - 1) - 1), "keepdim=True"),
    ("l4-quantize", _quantize(rounding=torch.floor), "not floor"),
    ("l4-quantize", _quantize(rounding=torch.trunc), "not toward 0"),
    ("l4-quantize", _quantize(zero=False), "add the zero point z"),
    ("l4-quantize", _quantize(q_range=_signed_range), "the asymmetric range is [0, 2^k - 1]"),
    ("l4-quantize", _quantize(clamp=False), "values beyond the range must saturate"),
    (
        "l4-quantize",
        lambda r, s, z, k: torch.clamp(torch.round(r) / s + z, 0, 2**k - 1),
        "divide by s first",
    ),
    (
        "l4-quantize",
        lambda r, s, z, k: my_linear_quantize(r, s, z, k).float(),
        "q should hold integers",
    ),
    ("l4-dequantize", lambda q, s, z: s * q.float(), "subtract the zero point"),
    ("l4-dequantize", _dequantize_in_uint8, "wrapped around in uint8"),
    ("l4-dequantize", lambda q, s, z: (q.float() - z) / s, "multiply by s, do not divide"),
    (
        "l4-sqnr",
        lambda r, rh: 20 * math.log10((r**2).sum() / ((r - rh) ** 2).sum()),
        "not 20 log10",
    ),
    ("l4-sqnr", lambda r, rh: 10 * math.log10(((r - rh) ** 2).sum() / (r**2).sum()), "upside down"),
    ("l4-sqnr", lambda r, rh: ((r**2).sum() / ((r - rh) ** 2).sum()).item(), "to decibels"),
    (
        "l4-sqnr",
        lambda r, rh: 10 * torch.log10((r**2).sum() / ((r - rh) ** 2).sum()).nan_to_num(posinf=0.0),
        "return math.inf",
    ),
    ("l4-pack-4bit", lambda q: q[1::2] | (q[0::2] << 4), "the first value goes in the low 4 bits"),
    ("l4-pack-4bit", lambda q: q[..., 0::2] | (q[..., 1::2] << 2), "not 2"),
    ("l4-pack-4bit", lambda q: my_pack_4bit(q).long(), "dtype torch.uint8"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message
