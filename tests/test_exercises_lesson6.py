"""Lesson 6 exercises: the references agree with tutorlib; mistakes are named."""

import pytest
import torch

from tutorlib.exercises import EXERCISES, check
from tutorlib.exercises.lesson6 import (
    BITS_PER_WEIGHT,
    BPW_BITS,
    BPW_GROUP,
    LAYER_BYTES,
    my_gptq_step,
)
from tutorlib.layers.w4a16 import W4A16Linear
from tutorlib.models.size import bits_per_weight
from tutorlib.quant.gptq import spread_column_error


def test_every_solution_passes_its_own_check():
    for exercise_id in ("l6-bits-per-weight", "l6-error-step", "l6-layer-bytes"):
        assert check(exercise_id, EXERCISES[exercise_id].solution).passed


def test_bits_per_weight_agrees_with_tutorlib():
    assert BITS_PER_WEIGHT == bits_per_weight(BPW_BITS, BPW_GROUP) == 3.75


def test_step_agrees_with_spread_column_error():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 6, generator=g)
    u = torch.triu(torch.rand(6, 6, generator=g)) + torch.eye(6)
    w_hat = torch.round(w[:, 2])
    assert torch.allclose(my_gptq_step(w, u, 2, w_hat), spread_column_error(w, u, 2, w_hat))


def test_layer_bytes_is_the_layers_buffers():
    layer = W4A16Linear(1536, 384, group_size=128)
    assert LAYER_BYTES == sum(b.nbytes for b in layer.buffers()) == 310_272


def _no_division(w, u, i, w_hat):
    out = w.clone()
    out[:, i + 1 :] -= (w[:, i] - w_hat)[:, None] * u[i, i + 1 :][None, :]
    out[:, i] = w_hat
    return out


WRONG = [
    ("l6-bits-per-weight", 3, "add the group's scale and zero point"),
    ("l6-bits-per-weight", 3.5, "the zero point costs 8 bits"),
    ("l6-bits-per-weight", 4.25, "not float32"),
    ("l6-bits-per-weight", 4, "not stored in 4 bits"),
    ("l6-error-step", _no_division, "divide the error by U[i, i]"),
    ("l6-error-step", lambda w, u, i, q: w, "nothing changed"),
    ("l6-layer-bytes", LAYER_BYTES - 384 * 4, "add the float32 bias"),
    ("l6-layer-bytes", 384 * 1536 * 4 + 384 * 4, "that is the float32 layer"),
    ("l6-layer-bytes", 12345, "the right result is 310272"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message


def test_stubs_are_not_solved_yet():
    assert "not solved yet" in check("l6-error-step", lambda w, u, i, q: None).message
    assert "not solved yet" in check("l6-layer-bytes", ...).message
