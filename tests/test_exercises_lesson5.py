"""Lesson 5 exercises: the references agree with torch's int8 kernels; mistakes are named."""

import pytest
import torch

from tutorlib.exercises import check
from tutorlib.exercises._lesson5_predictions import (
    AMDAHL_SPEEDUP,
    INT16_PAIR_MAX_CODE,
    INT32_HEADROOM,
)
from tutorlib.exercises.lesson5 import (
    my_int8_matmul,
    my_quantize_per_token,
    my_w8a8_rescale,
)


def test_per_token_textbook_case():
    q, scale = my_quantize_per_token(torch.tensor([[0.5, -1.27, 0.1]]))
    assert q.tolist() == [[50, -127, 10]] and q.dtype == torch.int8
    assert scale.shape == (1, 1) and scale.item() == pytest.approx(0.01)


@pytest.mark.filterwarnings(
    "ignore:torch.quantize_per_tensor:UserWarning"
)  # deprecated, still right
def test_per_token_agrees_with_quantize_per_channel():
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    q, scale = my_quantize_per_token(x)
    zero = torch.zeros(6, dtype=torch.int64)
    reference = torch.quantize_per_channel(x, scale[:, 0].double(), zero, 0, torch.qint8)
    assert torch.equal(q, reference.int_repr())


def test_int8_matmul_agrees_with_int_mm():
    generator = torch.Generator().manual_seed(0)
    x_q = torch.randint(-128, 128, (32, 64), generator=generator, dtype=torch.int8)
    w_q = torch.randint(-128, 128, (16, 64), generator=generator, dtype=torch.int8)
    assert torch.equal(my_int8_matmul(x_q, w_q), torch._int_mm(x_q, w_q.T.contiguous()))


def test_rescale_textbook_case():
    acc = torch.tensor([[5080]], dtype=torch.int32)
    y = my_w8a8_rescale(acc, torch.tensor([[0.01]]), torch.tensor([0.02]), torch.tensor([0.5]))
    assert y.item() == pytest.approx(1.516)


def test_int32_headroom_from_iinfo():
    assert INT32_HEADROOM == torch.iinfo(torch.int32).max // torch.iinfo(torch.int8).min ** 2
    assert INT32_HEADROOM == 131_071
    worst = torch.full((INT32_HEADROOM,), 2**14, dtype=torch.int64).sum()
    assert worst <= torch.iinfo(torch.int32).max < worst + 2**14


def test_int16_pairs_largest_code_fits_and_the_next_saturates():
    int16_max = torch.iinfo(torch.int16).max
    assert 2 * INT16_PAIR_MAX_CODE * 127 <= int16_max < 2 * (INT16_PAIR_MAX_CODE + 1) * 127
    assert INT16_PAIR_MAX_CODE == 129


def test_amdahl_value():
    assert AMDAHL_SPEEDUP == pytest.approx(93 / (13 + 80 / 4.5))


def _per_tensor(x):
    scale = x.abs().max() / 127
    return torch.round(x / scale).to(torch.int8), scale


def _per_feature(x):
    scale = x.abs().amax(dim=0, keepdim=True) / 127
    return torch.round(x / scale).to(torch.int8), scale


def _no_floor(x):
    scale = x.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(x / scale).to(torch.int8), scale


def _floor(x):
    scale = torch.clamp(x.abs().amax(dim=1, keepdim=True) / 127, min=torch.finfo().eps)
    return torch.floor(x / scale).to(torch.int8), scale


def _float_q(x):
    q, scale = my_quantize_per_token(x)
    return q.float(), scale


WRONG = [
    ("l5-per-token", _per_tensor, "per-tensor"),
    ("l5-per-token", _per_feature, "one scale per token (row), not per feature"),
    ("l5-per-token", _no_floor, "a row of zeros gets scale 0"),
    ("l5-per-token", _floor, "round x / s to the nearest, not floor"),
    ("l5-per-token", _float_q, "q should have dtype torch.int8"),
    ("l5-per-token", lambda x: my_quantize_per_token(x)[0], "return a pair (q, scale)"),
    ("l5-int8-matmul", lambda x, w: x @ w.T, "wrapped around"),
    ("l5-int8-matmul", lambda x, w: (x.float() @ w.float().T).int(), "float32 holds integers"),
    ("l5-int8-matmul", lambda x, w: x.long() @ w.long().T, "dtype torch.int32"),
    ("l5-w8a8-rescale", lambda a, sx, sw, b: a * sx * sw, "add the bias b[o]"),
    ("l5-w8a8-rescale", lambda a, sx, sw, b: sx * sw * (a + b), "add the bias after rescaling"),
    ("l5-w8a8-rescale", lambda a, sx, sw, b: a * sx + b, "multiply by the weight scale"),
    ("l5-w8a8-rescale", lambda a, sx, sw, b: a / (sx * sw) + b, "multiply by the scales"),
    ("l5-int32-headroom", (2**31 - 1) // 127**2, "(-128)^2 = 16,384, not 127^2"),
    ("l5-int32-headroom", 2**31 // 2**14, "2^31 - 1, not 2^31"),
    ("l5-int32-headroom", (2**31 - 1) / 2**14, "round down"),
    ("l5-int16-pairs", 255, "that pair saturates"),
    ("l5-int16-pairs", 127, "not the largest"),
    ("l5-int16-pairs", 130, "33,020 > 32,767"),
    ("l5-amdahl", 4.5, "the speedup of the linear layers only"),
    ("l5-amdahl", 93 / 13, "infinitely fast linear layers"),
    ("l5-amdahl", 2.9, "the right result is 3.02"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message


def test_amdahl_accepts_a_rounded_answer():
    assert check("l5-amdahl", 3.02).passed
