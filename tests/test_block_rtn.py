"""Tests of tutorlib.quant.block_rtn (Lesson 7): RTN per block with float16 parameters.

A hand-computed block for each form; properties over random weights (hypothesis): every level
within half a step, parameters that are float16 values; and the `gguf` package's reference
quantizers (llama.cpp's Q4_1 and Q8_0 in numpy) as the independent reference: re-quantizing
what they produce gives back their values exactly, as the lesson claims for SmolLM2's file.
"""

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.block_rtn import (
    OffsetQuantizedTensor,
    offset_rtn_quantize,
    symmetric_rtn_quantize,
)


def test_offset_block_by_hand() -> None:
    # [-0.3, 0.1, 0.15, 0.9] at 2 bits: s = 1.2 / 3 = 0.4 -> float16 0.39990234375,
    # r_min = -0.3 -> float16 -0.300048828125; (w - r_min) / s = [0, 1.0003, 1.1253, 3.0008].
    result = offset_rtn_quantize(torch.tensor([[-0.3, 0.1, 0.15, 0.9]]), bits=2, group_size=4)
    assert isinstance(result, OffsetQuantizedTensor)
    assert result.q.tolist() == [[0, 1, 1, 3]]
    assert result.params.scale.item() == 0.39990234375
    assert result.params.offset.item() == -0.300048828125
    expected = torch.tensor([[0.0, 1.0, 1.0, 3.0]]) * 0.39990234375 - 0.300048828125
    assert torch.equal(result.dequantize(), expected)


def test_symmetric_block_by_hand() -> None:
    # max |w| = 0.9, s = 0.9 / 7 = 0.128571 -> float16 0.1285400390625; w / s = [-2.33, 0.78,
    # 1.17, 7.002] -> q = [-2, 1, 1, 7].
    result = symmetric_rtn_quantize(torch.tensor([[-0.3, 0.1, 0.15, 0.9]]), bits=4, group_size=4)
    assert isinstance(result, QuantizedTensor) and result.params.symmetric
    assert result.q.tolist() == [[-2, 1, 1, 7]]
    assert result.params.scale.item() == 0.1285400390625
    assert torch.equal(result.dequantize(), torch.tensor([[-2.0, 1.0, 1.0, 7.0]]) * 0.1285400390625)


weights = st.integers(0, 2**31 - 1).map(
    lambda seed: torch.randn(3, 64, generator=torch.Generator().manual_seed(seed)) * 0.05
)


@settings(max_examples=40, deadline=None)
@given(weight=weights, bits=st.sampled_from([2, 3, 4, 8]), group=st.sampled_from([8, 32, 64]))
def test_every_weight_lies_within_half_a_step(weight, bits, group) -> None:
    # float16 parameters: the grid is exact in float32, so |w - w_hat| <= s / 2 up to the
    # float16 rounding of r_min (at most half a float16 ulp of it) and float32 rounding.
    for quantized in (
        offset_rtn_quantize(weight, bits, group),
        symmetric_rtn_quantize(weight, bits, group),
    ):
        scale = quantized.params.scale  # (rows, groups, 1)
        assert torch.equal(scale.half().float(), scale)  # storable in float16 as it is
        error = (weight - quantized.dequantize()).reshape(3, 64 // group, group).abs()
        slack = 2 * torch.finfo(torch.float16).eps * weight.abs().max()
        assert bool((error <= scale / 2 + slack).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_requantizing_llama_cpp_q4_1_gives_it_back(seed: int) -> None:
    # gguf.quants.quantize is llama.cpp's reference quantizer in numpy; its dequantized blocks
    # lie on a Q4_1 grid whose min and max are levels, so RTN in Q4_1's form finds the grid.
    original = np.random.default_rng(seed).normal(0, 0.05, (16, 256)).astype(np.float32)
    blocks = gguf.quants.quantize(original, GGMLQuantizationType.Q4_1)
    file_weights = torch.tensor(gguf.quants.dequantize(blocks, GGMLQuantizationType.Q4_1))
    again = offset_rtn_quantize(file_weights, bits=4, group_size=32)
    assert torch.equal(again.dequantize(), file_weights)


@pytest.mark.parametrize("seed", [0, 1])
def test_requantizing_llama_cpp_q8_0_gives_it_back(seed: int) -> None:
    original = np.random.default_rng(seed).normal(0, 0.05, (8, 128)).astype(np.float32)
    blocks = gguf.quants.quantize(original, GGMLQuantizationType.Q8_0)
    file_weights = torch.tensor(gguf.quants.dequantize(blocks, GGMLQuantizationType.Q8_0))
    again = symmetric_rtn_quantize(file_weights, bits=8, group_size=32)
    assert torch.equal(again.dequantize(), file_weights)


def test_close_to_llama_cpp_on_original_weights() -> None:
    # On unquantized weights the two differ only where llama.cpp rounds with the unrounded
    # float32 step and we with its float16 value: a few codes by one level at most.
    original = np.random.default_rng(3).normal(0, 0.05, (16, 256)).astype(np.float32)
    blocks = gguf.quants.quantize(original, GGMLQuantizationType.Q4_1)
    theirs = torch.tensor(gguf.quants.dequantize(blocks, GGMLQuantizationType.Q4_1))
    ours = offset_rtn_quantize(torch.tensor(original), 4, 32)
    step = ours.params.scale.expand(16, 8, 32).reshape(16, 256)
    differ = (ours.dequantize() - theirs).abs()
    assert bool((differ <= step * 1.001).all())
    assert (differ > 0).double().mean() < 0.01


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bits": 1}, ValueError, "bits must be one of"),
        ({"bits": 16}, ValueError, "bits must be one of"),
        ({"group_size": None}, ValueError, "group_size must be an int"),
        ({"group_size": 5}, ValueError, "does not divide"),
        ({"weight": torch.zeros(8)}, ValueError, "must be 2-D"),
        ({"weight": torch.ones(2, 8, dtype=torch.int32)}, TypeError, "floating-point"),
        ({"weight": torch.full((2, 8), float("nan"))}, ValueError, "NaN"),
        ({"weight": torch.full((2, 8), 1e6)}, ValueError, "float16"),
    ],
)
@pytest.mark.parametrize("quantize", [offset_rtn_quantize, symmetric_rtn_quantize])
def test_bad_inputs_are_refused(quantize, kwargs, error, message) -> None:
    arguments = {"weight": torch.randn(2, 8), "bits": 4, "group_size": 4} | kwargs
    with pytest.raises(error, match=message):
        quantize(**arguments)


def test_offset_quantized_tensor_refuses_integers_off_its_grid() -> None:
    params = offset_rtn_quantize(torch.randn(2, 8), 4, 4).params
    with pytest.raises(ValueError, match=r"q must lie in \[0, 15\]"):
        OffsetQuantizedTensor(torch.full((2, 8), 16), params)
    with pytest.raises(TypeError, match="integer tensor"):
        OffsetQuantizedTensor(torch.zeros(2, 8), params)
    with pytest.raises(ValueError, match="scale shape"):
        OffsetQuantizedTensor(torch.zeros(2, 4, dtype=torch.int32), params)
