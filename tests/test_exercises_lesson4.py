"""Lesson 4 exercises: the references agree with torch's quantizer; mistakes are named."""

import math

import pytest
import torch

from tutorlib.exercises import check
from tutorlib.exercises._lesson4_codes import (
    BIT_DB_7_TO_8,
    DEQUANTIZED,
    PACKED_BYTE,
    UNPACKED,
    _quantize_cases,
    my_linear_quantize,
)
from tutorlib.exercises.lesson4 import (
    SYMMETRIC_CODE,
    _zero_point_cases,
    my_get_per_channel_scales,
    my_get_scale_and_zero_point,
)
from tutorlib.quant.affine import linear_dequantize, linear_quantize
from tutorlib.quant.error import quantization_error
from tutorlib.quant.packing import pack_weights, unpack_weights
from tutorlib.quant.params import get_scale_and_zero_point

pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def test_textbook_case():
    r = torch.tensor([-1.0, 0.5, 3.0])
    scale, zero_point = my_get_scale_and_zero_point(r, 8)
    assert scale == pytest.approx(4 / 255) and zero_point == 64
    q = my_linear_quantize(r, scale, zero_point, 8)
    assert q.tolist() == [0, 96, 255]


def test_predictions_agree_with_tutorlib():
    r = torch.tensor([-1.0, 0.5, 3.0])
    symmetric = get_scale_and_zero_point(r, bits=8, symmetric=True)
    assert linear_quantize(r, symmetric).tolist()[1] == SYMMETRIC_CODE == 21
    asymmetric = get_scale_and_zero_point(r, bits=8)
    q = linear_quantize(r, asymmetric)
    assert q.tolist() == [0, 96, 255]
    assert linear_dequantize(q, asymmetric)[1].item() == pytest.approx(DEQUANTIZED, rel=1e-6)
    assert unpack_weights(torch.tensor([PACKED_BYTE], dtype=torch.uint8), bits=4).tolist() == list(
        UNPACKED
    )
    assert pack_weights(torch.tensor(UNPACKED, dtype=torch.uint8), bits=4).item() == PACKED_BYTE


def test_bit_db_is_the_sqnr_gain_of_a_range_grid_on_uniform_data():
    # Uniform data over the grid's range: the error is uniform over a step, so the SQNR gain from
    # 7 to 8 bits is the ratio of the steps squared, measured on a million values.
    r = torch.linspace(-1.0, 1.0, 1_000_001, dtype=torch.float64)
    gains = []
    for bits in (7, 8):
        s = 2.0 / (2**bits - 1)
        r_hat = torch.round((r + 1) / s) * s - 1
        gains.append(quantization_error(r, r_hat).sqnr_db)
    assert gains[1] - gains[0] == pytest.approx(BIT_DB_7_TO_8, abs=0.02)
    assert BIT_DB_7_TO_8 == pytest.approx(6.05, abs=0.005)


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
    assert scales[:, 0].tolist() == pytest.approx([row.abs().max().item() / 7 for row in weight])


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


def _signed_range(bits):
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


WRONG = [
    ("l4-scale-zero-point", _zero_point_2k, "2^k instead of 2^k - 1"),
    ("l4-scale-zero-point", _zero_point_floor, "not floor"),
    ("l4-scale-zero-point", _zero_point_not_widened, "widen the range to contain 0"),
    ("l4-scale-zero-point", _zero_point_unrounded, "the zero point should be an integer"),
    ("l4-symmetric-code", 96, "96 is the asymmetric code"),
    ("l4-symmetric-code", 21.17, "round r / s to the nearest integer"),
    ("l4-symmetric-code", 42, "127 levels on each side"),
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
    ("l4-dequantize-value", 0.5, "does not undo the rounding"),
    ("l4-dequantize-value", 4 / 255 * 96, "subtract the zero point first"),
    ("l4-dequantize-value", 32, "multiply it by the scale"),
    ("l4-bit-db", 6.02, "a step halved exactly"),
    ("l4-bit-db", 3.03, "an amplitude ratio counts twice"),
    ("l4-bit-db", 6.09, "symmetric grid"),
    ("l4-unpack-byte", (14, 4), "the first value is in the low 4 bits"),
    ("l4-unpack-byte", 228, "return a pair"),
    ("l4-unpack-byte", (3, 12), "packs to 195, not 228"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message
