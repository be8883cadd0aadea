"""Tests of tutorlib.w4_layers: bytes per weight, packing, the 4-bit layer against its weights."""

import copy

import pytest
import torch
from torch import nn

from tutorlib.layers.calibrated import fake_quantize_linear_weights
from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w4a16 import W4A16Linear, to_w4_layers
from tutorlib.models.size import bits_per_weight, model_size_bytes, size_table, weight_only_bytes
from tutorlib.quant.gptq import gptq_quantize
from tutorlib.quant.packing import pack_weights, unpack_weights
from tutorlib.quant.rtn import rtn_quantize


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_bits_per_weight_textbook():
    assert bits_per_weight(4, 128) == 4 + 24 / 128 == 4.1875
    assert bits_per_weight(3, 32) == 3.75
    assert bits_per_weight(8, 384) == 8.0625


def test_size_table_textbook():
    linear = nn.Linear(256, 128)  # 32,768 weights, 128 float32 biases: 131,584 bytes in float32
    table = size_table(linear, [(4, 128), (8, None)])
    assert table["bits"].tolist() == [4, 8]
    assert table["group"].tolist() == [128, "per channel"]
    # the k bits plus a float16 scale and a uint8 zero point per group, spread over its weights
    assert table["bits per weight"].tolist() == [bits_per_weight(4, 128), bits_per_weight(8, 256)]
    assert table["model (MB)"].tolist() == [17_664 / 1e6, (32_768 + 128 * 3 + 128 * 4) / 1e6]
    assert table["FP32 / this"][0] == 131_584 / 17_664


def test_size_table_refuses_a_model_without_linear_layers():
    with pytest.raises(ValueError, match="no nn.Linear"):
        size_table(nn.LayerNorm(4), [(4, None)])


def test_weight_only_bytes_textbook():
    torch.manual_seed(0)
    linear = nn.Linear(256, 128)
    assert weight_only_bytes(linear, 4, 128) == 32_768 // 2 + 256 * 3 + 128 * 4  # 17,664
    assert weight_only_bytes(linear, 4, None) == 32_768 // 2 + 128 * 3 + 128 * 4
    assert weight_only_bytes(linear, 3, 128) == 32_768 * 3 // 8 + 256 * 3 + 128 * 4


@pytest.mark.parametrize("bits", [2, 4])
def test_packing_round_trips(bits):
    q = torch.randint(0, 2**bits, (6, 32), generator=torch.Generator().manual_seed(bits))
    packed = pack_weights(q, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (6, 32 * bits // 8)
    assert torch.equal(unpack_weights(packed, bits).long(), q)


def test_two_nibbles_per_byte_by_hand():
    # q = [3, 12]: 3 in the low nibble, 12 in the high one: 3 + 12 * 16 = 195.
    assert pack_weights(torch.tensor([[3, 12]]), 4).tolist() == [[195]]


def test_layer_weight_is_the_quantized_tensor_exactly():
    w, x = seeded(16, 64), seeded(100, 64, seed=1)
    qt = gptq_quantize(w, x, 4, 32)
    layer = W4A16Linear.from_quantized(qt, bias=torch.zeros(16))
    assert torch.equal(layer.quantized_weight().dequantize(), qt.dequantize())
    assert torch.equal(layer(x), x @ qt.dequantize().T)


def test_from_linear_is_rtn_and_fits_replace_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 8))
    x = seeded(5, 256)
    reference = copy.deepcopy(model)
    replace_linear(model, W4A16Linear, skip=())
    assert isinstance(model[2], W4A16Linear) and model[0].group_size == 128
    weight_hat = rtn_quantize(reference[0].weight, 4, 128).dequantize()
    assert torch.equal(model[0].quantized_weight().dequantize(), weight_hat)
    assert torch.allclose(model(x), reference(x), atol=0.05)


def test_to_w4_layers_gives_the_fake_quantized_model_bit_for_bit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    x = seeded(40, 32)
    fp32_bytes = model_size_bytes(model)
    results = fake_quantize_linear_weights(model, "gptq", 4, 16, run=lambda: model(x))
    fake = model(x)
    to_w4_layers(model, {name: r.quantized for name, r in results.items()})
    assert torch.equal(model(x), fake)
    assert model_size_bytes(model) == weight_only_bytes(
        nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16)), 4, 16
    )
    assert model_size_bytes(model) < fp32_bytes / 4


def test_layer_refuses_bad_shapes_and_grids():
    with pytest.raises(ValueError, match="in_features"):
        W4A16Linear(63, 4, group_size=21)
    with pytest.raises(ValueError, match="4-bit"):
        W4A16Linear.from_quantized(rtn_quantize(seeded(4, 8), 3, 8))
    with pytest.raises(TypeError, match="QuantizedTensor"):
        W4A16Linear.from_quantized(seeded(4, 8))


def test_constructor_order_matches_the_other_layers():
    # (in_features, out_features, *, bias, ...) as W8A16Linear and W8A8Linear; one scale and
    # one zero point per group of each row: (out_features, in_features / group_size).
    with pytest.raises(TypeError):
        W4A16Linear(256, 8, 64)  # the point: group_size is keyword-only
    layer = W4A16Linear(256, 8, bias=False, group_size=64)
    assert layer.bias is None
    assert layer.scales.shape == layer.zero_points.shape == (8, 4)
    assert W4A16Linear(256, 8, group_size=None).scales.shape == (8, 1)  # per channel
