"""Tests of tutorlib.layers.weight_only (Lesson 7): torch's fused int8 and int4 CPU kernels.

Each layer against the plain float matmul on its own dequantized weight, the independent
reference. The fused kernels sum in another order than MKL's float32 matmul, so results agree to
float32 rounding, not bit for bit: with |x| ~ 1 and |w| ~ 0.1 over 64 to 576 inputs the sums are
~1, and 1e-5 allows tens of float32 roundings (eps = 1.2e-7) of values of that size.
"""

import pytest
import torch
from torch import nn

from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w8a16 import quantize_weight_per_channel
from tutorlib.layers.weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from tutorlib.quant.block_rtn import offset_rtn_quantize, symmetric_rtn_quantize
from tutorlib.quant.rtn import rtn_quantize

TOLERANCE = 1e-5


def linear(in_features: int = 64, out_features: int = 48, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features, bias=bias)


def inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (2, 3, 64)])
def test_int8_matches_its_dequantized_weight(bias, shape) -> None:
    float_layer = linear(bias=bias)
    layer = Int8WeightOnlyLinear.from_linear(float_layer)
    weight_hat = quantize_weight_per_channel(float_layer.weight.detach()).dequantize()
    x = inputs(*shape)
    expected = nn.functional.linear(x, weight_hat, float_layer.bias)
    got = layer(x)
    assert got.shape == (*shape[:-1], 48)
    assert torch.allclose(got, expected, atol=TOLERANCE, rtol=0)


def test_int8_stores_the_lesson_5_weight() -> None:
    float_layer = linear()
    layer = Int8WeightOnlyLinear.from_linear(float_layer)
    quantized = quantize_weight_per_channel(float_layer.weight.detach())
    assert layer.int8_weight.dtype == torch.int8
    assert torch.equal(layer.int8_weight, quantized.q)
    assert torch.equal(layer.scales, quantized.params.scale[:, 0])


@pytest.mark.parametrize(
    "quantize",
    [
        lambda w: offset_rtn_quantize(w, 4, 32),  # Q4_1's grid
        lambda w: rtn_quantize(w, 4, 32),  # Lesson 6's zero-point grid
        lambda w: rtn_quantize(w, 4, 64),
    ],
    ids=["offset-g32", "zero-point-g32", "zero-point-g64"],
)
@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (2, 3, 64)])
def test_int4_matches_its_dequantized_weight(quantize, shape) -> None:
    float_layer = linear()
    quantized = quantize(float_layer.weight.detach())
    layer = Int4WeightOnlyLinear.from_quantized(quantized, float_layer.bias)
    x = inputs(*shape)
    expected = nn.functional.linear(x, quantized.dequantize(), float_layer.bias)
    assert torch.allclose(layer(x), expected, atol=TOLERANCE, rtol=0)


def test_int4_from_linear_uses_q4_1s_grid() -> None:
    float_layer = linear(bias=False)
    layer = Int4WeightOnlyLinear.from_linear(float_layer)
    weight_hat = offset_rtn_quantize(float_layer.weight.detach(), 4, 32).dequantize()
    identity = torch.eye(64)
    assert torch.allclose(layer(identity), weight_hat.T, atol=1e-6, rtol=0)  # column by column


def test_zero_is_offset_plus_eight_steps() -> None:
    # One block by hand: d = 0.5, m = -4.0 (the weights 0, 1, ..., 15 scaled by d, minus 4).
    weight = (torch.arange(32.0) % 16 * 0.5 - 4.0)[None].repeat(16, 1)  # (16, 32)
    layer = Int4WeightOnlyLinear.from_quantized(offset_rtn_quantize(weight, 4, 32))
    scale, zero = layer.scale_and_zero[0, 0].tolist()
    assert (scale, zero) == (0.5, -4.0 + 8 * 0.5)
    assert torch.equal(layer(torch.eye(32)), weight.T)


def test_bfloat16_activations_take_the_fast_path_and_stay_close() -> None:
    float_layer = linear(576, 256)
    x = inputs(4, 576)
    for layer in (
        Int8WeightOnlyLinear.from_linear(float_layer),
        Int4WeightOnlyLinear.from_linear(float_layer),
    ):
        full = layer(x)
        half = layer.to(torch.bfloat16)(x.bfloat16())
        assert half.dtype == torch.bfloat16
        # bfloat16 keeps 8 significant bits: relative error ~2**-8 per value, summed over 576
        assert (half.float() - full).norm() / full.norm() < 2**-6


def test_replace_linear_swaps_them_in() -> None:
    model = nn.Sequential(linear(64, 64), nn.ReLU(), linear(64, 32))
    x = inputs(3, 64)
    expected = model(x)
    for cls in (Int8WeightOnlyLinear, Int4WeightOnlyLinear):
        swapped = replace_linear(
            nn.Sequential(*[m for m in model]).__class__(*[m for m in model]), cls, skip=()
        )
        assert all(not isinstance(m, nn.Linear) for m in swapped)
        assert (swapped(x) - expected).abs().max() < 0.1  # quantized: close, not equal


@pytest.mark.parametrize(
    ("quantized", "error", "message"),
    [
        (lambda w: rtn_quantize(w, 3, 32), ValueError, "4-bit integers"),
        (lambda w: rtn_quantize(w, 4, 16), ValueError, "groups of one of"),
        (lambda w: symmetric_rtn_quantize(w, 4, 32), TypeError, "asymmetric"),
        (lambda w: w, TypeError, "OffsetQuantizedTensor"),
    ],
    ids=["3-bit", "group-16", "symmetric", "float-weight"],
)
def test_int4_refuses_other_grids(quantized, error, message) -> None:
    with pytest.raises(error, match=message):
        Int4WeightOnlyLinear.from_quantized(quantized(linear().weight.detach()))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="group_size must be one of"):
        Int4WeightOnlyLinear(64, 16, group_size=48)
    with pytest.raises(ValueError, match="multiple of 16"):
        Int4WeightOnlyLinear(64, 8)
    with pytest.raises(ValueError, match="must have shape"):
        Int8WeightOnlyLinear.from_linear(linear())(inputs(2, 63))
    with pytest.raises(TypeError, match="float activations"):
        Int4WeightOnlyLinear.from_linear(linear())(torch.ones(2, 64, dtype=torch.long))
    with pytest.raises(TypeError, match="nn.Linear"):
        Int8WeightOnlyLinear.from_linear(nn.Conv1d(1, 1, 1))
    with pytest.raises(ValueError, match="bias must be"):
        Int4WeightOnlyLinear.from_quantized(rtn_quantize(linear().weight, 4, 32), torch.ones(3))
