"""Lesson 3 exercises: the references agree with torch, and each common mistake is named."""

import copy

import pytest
import torch
from torch import nn

from tutorlib.exercises import check
from tutorlib.exercises.lesson3 import (
    BF16_MAX_CHANGE_8_TO_16,
    COSINE,
    COSINE_DISTANCE,
    FP16_OVERFLOW_FROM,
    _hidden_models,
    my_min_cosine,
    my_model_bytes,
    my_top1_agreement,
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_model_bytes_agrees_with_a_real_cast(dtype):
    for _, model in _hidden_models():
        cast = copy.deepcopy(model).to(dtype)
        tensors = {t.data_ptr(): t for t in [*cast.parameters(), *cast.buffers()]}
        assert my_model_bytes(model, dtype) == sum(t.nbytes for t in tensors.values())


def test_bf16_max_change_is_reached_and_not_exceeded():
    x = torch.linspace(8, 16, 100_001, dtype=torch.float64)[:-1].float()  # [8, 16)
    change = (x.bfloat16().double() - x.double()).abs().max().item()
    assert change <= BF16_MAX_CHANGE_8_TO_16 == 1 / 32
    halfway = torch.tensor(8 + 1 / 32)  # between 8 and 8 + 1/16: a tie, rounded to even 8
    assert 8 + 1 / 32 - halfway.bfloat16().item() == BF16_MAX_CHANGE_8_TO_16


def test_fp16_overflow_starts_where_the_answer_says():
    at = torch.tensor([FP16_OVERFLOW_FROM], dtype=torch.float32)
    below = torch.nextafter(at, torch.tensor([0.0]))  # the float32 just below 65,520
    assert at.half().isinf().item() and below.half().item() == 65_504
    assert FP16_OVERFLOW_FROM == 65_520


def test_cosine_distance_agrees_with_two_real_vectors():
    angle = torch.tensor(COSINE, dtype=torch.float64).acos()
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    b = torch.stack([angle.cos(), angle.sin()])  # unit length, cosine 0.9995 to a
    assert (a - b).norm().item() == pytest.approx(COSINE_DISTANCE, rel=1e-12)


def test_min_cosine_and_top1_textbook_cases():
    assert my_min_cosine(torch.tensor([[1.0, 0], [0, 1]]), torch.tensor([[1.0, 0], [1, 1]])) == (
        pytest.approx(2**-0.5)
    )
    a, b = torch.tensor([[2.0, 1], [0, 3]]), torch.tensor([[1.0, 2], [0, 4]])
    assert my_top1_agreement(a, b) == 0.5


def _bytes_casting_in_place(model, dtype):
    model.to(dtype)
    return sum(p.nbytes for p in model.parameters())


def _bytes_state_dict(model, dtype):
    return sum(
        t.numel() * (dtype.itemsize if t.is_floating_point() else t.itemsize)
        for t in model.state_dict().values()
    )


def _bytes_parameters_only(model, dtype):
    return sum(p.numel() * dtype.itemsize for p in model.parameters())


def _bytes_all_cast(model, dtype):
    return sum(t.numel() * dtype.itemsize for t in [*model.parameters(), *model.buffers()])


cosine = nn.functional.cosine_similarity

WRONG = [
    ("l3-model-bytes", _bytes_casting_in_place, "your function cast the model itself"),
    ("l3-model-bytes", _bytes_all_cast, "integer buffers"),
    ("l3-model-bytes", _bytes_parameters_only, "count the buffers too"),
    ("l3-model-bytes", _bytes_state_dict, "a tied weight is one tensor"),
    ("l3-bf16-max-change", 1 / 16, "rounding to nearest moves at most half of it"),
    ("l3-bf16-max-change", 2**-8, "u, a relative bound"),
    ("l3-bf16-max-change", 2**-7, "the gap above 1 (eps)"),
    ("l3-fp16-overflow", 65_504, "largest finite value"),
    ("l3-fp16-overflow", 65_536, "round up to it"),
    ("l3-fp16-overflow", 65_505, "closer to 65,504"),
    ("l3-cosine-distance", 0.0005, "1 - cos is not a distance"),
    ("l3-cosine-distance", 0.001, "take its square root"),
    ("l3-cosine-distance", 0.0005**0.5, "the factor 2 is missing"),
    ("l3-min-cosine", lambda a, b: cosine(a, b, dim=1).mean(), "that is the mean cosine"),
    ("l3-min-cosine", lambda a, b: cosine(a, b, dim=0).min(), "compare rows (dim=1)"),
    ("l3-min-cosine", lambda a, b: (a * b).sum(1).min(), "divide each dot product"),
    ("l3-min-cosine", lambda a, b: [1.0], "should be a number, got list"),
    ("l3-top1-agreement", lambda a, b: (a.argmax(1) == b.argmax(1)).sum(), "that is a count"),
    ("l3-top1-agreement", lambda a, b: my_top1_agreement(a.T, b.T), "the last axis"),
    ("l3-top1-agreement", lambda a, b: 100 * my_top1_agreement(a, b), "that is a percentage"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message
