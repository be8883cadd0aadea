"""Tests of tutorlib.quant.awq (Lesson 7): AWQ's activation-aware scales and its search.

A textbook case of the scales; a = 0 is round-to-nearest exactly; the search never does worse
than RTN on its calibration inputs and does much better where a few input channels are large
(AWQ's premise); the chosen a is the argmin of an independent float64 error over the grid; the
fake-quantized weight computes what folding 1/s into the inputs would. Refusals by name.
"""

import math

import pytest
import torch

from tutorlib.quant.awq import AWQQuantized, activation_scales, awq_quantize_shared
from tutorlib.quant.rtn import rtn_quantize


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def outlier_inputs(samples=256, features=64, seed=0):
    """Inputs with four channels 30 times larger than the rest, as in LLM activations."""
    x = seeded(samples, features, seed=seed)
    x[:, :4] *= 30.0
    return x


def output_error(weight, weight_hat, x):
    return torch.linalg.norm(x.double() @ (weight.double() - weight_hat.double()).T).item()


def test_activation_scales_textbook():
    x = torch.tensor([[1.0, -4.0], [3.0, 4.0]])  # mean |x| per channel: (2, 4)
    got = activation_scales(x, 1.0)
    assert torch.allclose(got, torch.tensor([2 / math.sqrt(8), 4 / math.sqrt(8)]))
    assert torch.equal(activation_scales(x, 0.0), torch.ones(2))
    half = activation_scales(x, 0.5)  # sqrt(2), 2 over sqrt(sqrt(2) * 2)
    assert torch.allclose(half, torch.tensor([2**0.5, 2.0]) / (2**0.5 * 2) ** 0.5)


def test_alpha_zero_is_round_to_nearest():
    w, x = seeded(16, 64), outlier_inputs()
    (only_rtn,) = awq_quantize_shared([w], x, 4, 32, n_grid=1)
    rtn = rtn_quantize(w, 4, 32)
    assert only_rtn.alpha == 0.0
    assert torch.equal(only_rtn.quantized.q, rtn.q)
    assert torch.equal(only_rtn.dequantize(), rtn.dequantize())


@pytest.mark.parametrize("bits", [3, 4])
def test_awq_never_worse_than_rtn_and_better_with_outlier_channels(bits):
    w, x = seeded(48, 64, seed=1), outlier_inputs()
    (awq,) = awq_quantize_shared([w], x, bits, 32)
    rtn_error = output_error(w, rtn_quantize(w, bits, 32).dequantize(), x)
    awq_error = output_error(w, awq.dequantize(), x)
    assert awq_error <= rtn_error
    assert awq_error < 0.8 * rtn_error  # the large channels' columns get a finer grid
    assert awq.alpha > 0


def test_chosen_alpha_is_the_argmin_of_an_independent_error():
    weights, x = [seeded(24, 64, seed=2), seeded(8, 64, seed=3)], outlier_inputs(seed=4)
    shared = awq_quantize_shared(weights, x, 3, 32, n_grid=10)
    errors = {}
    for step in range(10):
        alpha = step / 10
        scales = activation_scales(x, alpha)
        errors[alpha] = sum(
            output_error(w, rtn_quantize(w * scales, 3, 32).dequantize() / scales, x) ** 2
            for w in weights
        )
    best = min(errors, key=errors.get)
    assert {q.alpha for q in shared} == {best}  # one a for the whole group
    assert torch.equal(shared[0].scales, activation_scales(x, best))  # the s of that a


def test_equal_input_sizes_give_round_to_nearest():
    # Every channel the same mean size: s = 1 for every a, all errors tie, and the smallest a
    # (0, round-to-nearest) wins.
    x = torch.ones(32, 16)
    x[::2] = -1.0
    (awq,) = awq_quantize_shared([seeded(8, 16)], x, 4, 8, n_grid=5)
    assert awq.alpha == 0.0
    assert torch.equal(awq.dequantize(), rtn_quantize(seeded(8, 16), 4, 8).dequantize())


def test_a_grid_float16_cannot_store_rules_its_a_out():
    # Tiny weights with tiny inputs on half the columns: every a > 0 scales those columns' groups
    # below float16's smallest normal step, so the search falls back to a = 0 (RTN), not an error.
    w = seeded(4, 64, seed=7)
    w[:, :32] *= 5e-4  # group ranges just above 15 * 2**-14, the smallest 4-bit step's
    x = seeded(64, 64, seed=8)
    x[:, :32] *= 1e-6
    for alpha in (0.25, 0.5, 0.75):  # the premise: float16 cannot store these grids
        with pytest.raises(ValueError, match="smallest normal"):
            rtn_quantize(w * activation_scales(x, alpha), 4, 32)
    (awq,) = awq_quantize_shared([w], x, 4, 32, n_grid=4)
    assert awq.alpha == 0.0
    assert torch.equal(awq.quantized.q, rtn_quantize(w, 4, 32).q)


def test_fake_quantized_weight_computes_the_folded_product():
    # X W_hat^T with W_hat = Q(W s) / s is (X / s) Q(W s)^T: 1/s can move into the layer before.
    w, x = seeded(16, 64, seed=5), outlier_inputs(seed=6)
    (awq,) = awq_quantize_shared([w], x, 4, 32)
    folded = (x / awq.scales) @ awq.quantized.dequantize().T
    assert torch.allclose(x @ awq.dequantize().T, folded, rtol=1e-4, atol=1e-4)


def test_refusals_name_the_argument():
    x = seeded(32, 8)
    with pytest.raises(ValueError, match="one in_features"):
        awq_quantize_shared([seeded(4, 8), seeded(4, 6)], x)
    with pytest.raises(TypeError, match="non-empty list"):
        awq_quantize_shared(seeded(4, 8), x)
    with pytest.raises(ValueError, match=r"inputs must be \(samples, 8\)"):
        awq_quantize_shared([seeded(4, 8)], seeded(32, 6))
    with pytest.raises(ValueError, match="n_grid"):
        awq_quantize_shared([seeded(4, 8)], x, n_grid=0)
    with pytest.raises(ValueError, match="alpha must be >= 0.0 and <= 1.0"):
        activation_scales(x, 1.5)
    with pytest.raises(ValueError, match="alpha must be finite"):
        activation_scales(x, float("nan"))
    with pytest.raises(TypeError, match="alpha must be a real number"):
        activation_scales(x, "0.5")


def test_result_is_a_frozen_value():
    (awq,) = awq_quantize_shared([seeded(4, 8)], seeded(32, 8), 4, 8)
    assert isinstance(awq, AWQQuantized)
    with pytest.raises(AttributeError):
        awq.alpha = 0.5
