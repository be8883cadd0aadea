"""Tests of tutorlib.memory: bytes of parameters and buffers, each storage once."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optimum.quanto import freeze, qint4, qint8, quantize
from torch import nn

from tutorlib.models.architectures import build_architecture
from tutorlib.models.size import model_size_bytes, size_breakdown


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(torch.float32, 60), (torch.bfloat16, 30), (torch.float16, 30), (torch.float64, 120)],
    ids=["float32", "bfloat16", "float16", "float64"],
)
def test_linear_by_hand(dtype: torch.dtype, expected: int) -> None:
    # nn.Linear(4, 3): a (3, 4) weight and a (3,) bias = 15 numbers.
    layer = nn.Linear(4, 3, dtype=dtype)
    assert model_size_bytes(layer) == expected
    assert size_breakdown(layer) == {f"{str(dtype).removeprefix('torch.')} parameters": expected}


def test_batchnorm_buffers_by_hand() -> None:
    # BatchNorm1d(5): weight, bias (parameters) and running_mean, running_var (buffers) of 5
    # float32 each, plus num_batches_tracked, one int64.
    layer = nn.BatchNorm1d(5)
    assert size_breakdown(layer) == {
        "float32 parameters": 40,
        "float32 buffers": 40,
        "int64 buffers": 8,
    }
    assert model_size_bytes(layer) == 88


def test_tied_weights_counted_once() -> None:
    embedding = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied, as in a language model's output head
    model = nn.ModuleDict({"embedding": embedding, "head": head})
    assert model_size_bytes(model) == 10 * 4 * 4


def test_shared_storage_counted_once() -> None:
    # Two buffers that are views of one storage cost that storage once.
    model = nn.Module()
    base = torch.zeros(8)
    model.register_buffer("first_half", base[:4])
    model.register_buffer("second_half", base[4:])
    assert model_size_bytes(model) == 8 * 4


@settings(max_examples=25, deadline=None)
@given(
    in_features=st.integers(1, 64),
    out_features=st.integers(1, 64),
    bias=st.booleans(),
)
def test_linear_property(in_features: int, out_features: int, bias: bool) -> None:
    layer = nn.Linear(in_features, out_features, bias=bias)
    expected = (in_features * out_features + out_features * bias) * 4
    assert model_size_bytes(layer) == expected
    assert sum(size_breakdown(layer).values()) == expected


def test_quanto_int8_counts_data_and_scales() -> None:
    # quanto's int8 weights are symmetric per output channel: an int8 (out, in) tensor and one
    # float32 scale per output channel. The bias stays float32.
    model = nn.Sequential(nn.Linear(256, 8))
    quantize(model, weights=qint8)
    freeze(model)
    breakdown = size_breakdown(model)
    assert breakdown["int8 weights"] == 8 * 256
    assert breakdown["scales (float32)"] == 8 * 4
    assert breakdown["float32 parameters"] == 8 * 4  # the bias
    assert model_size_bytes(model) == sum(breakdown.values())
    # get_memory_footprint() sees the float dtype of the wrapper: it over-counts.
    wrapper_bytes = model[0].weight.numel() * model[0].weight.element_size()
    assert wrapper_bytes == 8 * 256 * 4


def test_quanto_int4_counts_packed_data() -> None:
    # Below 8 bits quanto packs two int4 values per uint8 and keeps a scale and a shift per
    # group of 128 values: a (8, 256) weight is 16 groups.
    model = nn.Sequential(nn.Linear(256, 8, bias=False))
    quantize(model, weights=qint4)
    freeze(model)
    breakdown = size_breakdown(model)
    assert breakdown["uint8 weights"] == 8 * 256 // 2
    assert breakdown["scales (float32)"] == 16 * 4
    assert breakdown["shifts (float32)"] == 16 * 4


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(torch.float32, 22_363_808), (torch.bfloat16, 11_182_032)],
    ids=["float32", "bfloat16"],
)
def test_mobilevit_matches_get_memory_footprint(dtype: torch.dtype, expected: int) -> None:
    # The notes: 22.36 MB and 11.18 MB. Without tied or quantized weights, transformers'
    # get_memory_footprint() (parameters and buffers) is an independent reference.
    model = build_architecture("mobilevit-small").to(dtype)
    assert model.get_memory_footprint() == expected
    assert model_size_bytes(model) == expected


def test_flan_t5_small_size() -> None:
    # 76,961,152 float32 parameters, no buffers: the notes' 307.84 MB.
    model = build_architecture("flan-t5-small")
    assert model_size_bytes(model) == 76_961_152 * 4 == 307_844_608


def test_not_a_module() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        model_size_bytes(torch.zeros(3))


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_counts_torch_ao_packed_linear_weights(per_channel):
    """torch.ao keeps a dynamic quantized Linear's weight in a packed object (no parameter, no
    buffer): 12 int8 weights + scale and zero point (8 + 8 bytes per tensor, or 3 * (8 + 8) per
    output channel) + 3 float32 biases."""
    linear = nn.Sequential(nn.Linear(4, 3))
    assert model_size_bytes(linear) == (12 + 3) * 4
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig if per_channel else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao announces its deprecation
        dynamic = torch.ao.quantization.quantize_dynamic(
            linear, {nn.Linear: qconfig} if qconfig else {nn.Linear}, dtype=torch.qint8
        )
    qparams = 3 * (8 + 8) if per_channel else 8 + 8
    assert model_size_bytes(dynamic) == 12 + qparams + 3 * 4
    assert size_breakdown(dynamic) == {"torch.ao packed linear": 12 + qparams + 3 * 4}
