"""Lesson 7: GGUF's block formats (llama.cpp's file format), read with the course's own formulas.

A GGUF file stores each weight matrix as blocks of 32 consecutive weights of a row; a block
holds float16 parameters and one small integer code per weight. Q4_1 is Lesson 4's offset form
per group of 32, w = d * q + m (d the step, m the block's minimum, q in 0..15); Q8_0 is the
symmetric form, w = d * q with q in -128..127. `dequantize_gguf` turns any tensor of such a file
into a float32 torch tensor, bit for bit what the `gguf` package's reference code gives.

Left out on purpose: writing GGUF files, the k-quants (Q4_K, Q6_K, ...: blocks of 256 with
scales that are themselves quantized; `gguf.quants.dequantize` reads them), big-endian files and
hosts, and parsing the file by hand (`gguf.GGUFReader` reads the header and metadata).
"""

import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from tutorlib._checks import check_int

__all__ = [
    "BlockFormat",
    "F32",
    "F16",
    "Q8_0",
    "Q4_1",
    "BLOCK_FORMATS",
    "torch_shape",
    "GGUFTensorRow",
    "gguf_tensor_table",
    "dequantize_q4_1",
    "dequantize_q8_0",
    "dequantize_gguf",
]


@dataclass(frozen=True)
class BlockFormat:
    """How one block of a GGUF tensor is laid out: its weights, its parameters, its codes.

    A block of `block_size` weights stores `scale_bytes` of float16 scale d, then
    `minimum_bytes` of float16 minimum m (0 for a symmetric format), then one `code_bits`-bit
    integer per weight. Plain floats are blocks of one weight with no parameters.

    bytes per block = scale_bytes + minimum_bytes + block_size * code_bits / 8
    bits per weight = 8 * bytes per block / block_size

    Example: Q4_1 = BlockFormat("Q4_1", 32, 2, 2, 4): 2 + 2 + 32 * 4 / 8 = 20 bytes per block,
    8 * 20 / 32 = 5.0 bits per weight; Q8_0: 2 + 32 = 34 bytes, 8.5 bits per weight.
    """

    name: str
    block_size: int
    scale_bytes: int
    minimum_bytes: int
    code_bits: int

    @property
    def bytes_per_block(self) -> int:
        return self.scale_bytes + self.minimum_bytes + self.block_size * self.code_bits // 8

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.bytes_per_block / self.block_size


# Block sizes from ggml's ggml-common.h: QK4_1 = QK8_0 = 32 weights per block.
F32 = BlockFormat("F32", block_size=1, scale_bytes=0, minimum_bytes=0, code_bits=32)
F16 = BlockFormat("F16", block_size=1, scale_bytes=0, minimum_bytes=0, code_bits=16)
Q8_0 = BlockFormat("Q8_0", block_size=32, scale_bytes=2, minimum_bytes=0, code_bits=8)
Q4_1 = BlockFormat("Q4_1", block_size=32, scale_bytes=2, minimum_bytes=2, code_bits=4)
# Read-only: the formats tutorlib dequantizes, by the type name GGUF gives them.
BLOCK_FORMATS = types.MappingProxyType({f.name: f for f in (F32, F16, Q8_0, Q4_1)})


def torch_shape(gguf_dims: Sequence[int]) -> tuple[int, ...]:
    """GGUF's dimensions in torch's order: reversed, because GGUF lists the fastest axis first.

    GGUF (like ggml) names a weight's dimensions ne0, ne1, ... with ne0 the axis along which
    values are contiguous: for a linear layer that is in_features. torch lists it last.
    Example: blk.0.ffn_down.weight has GGUF dims [1536, 576], torch shape (576, 1536), i.e.
    (out_features, in_features) of a layer from 1536 inputs to 576 outputs.
    """
    if isinstance(gguf_dims, str) or not isinstance(gguf_dims, Sequence | np.ndarray):
        raise TypeError(
            f"gguf_dims must be a sequence of ints such as [1536, 576], got {gguf_dims!r}"
        )
    return tuple(check_int(n, "gguf_dims", minimum=0) for n in reversed(list(gguf_dims)))


@dataclass(frozen=True)
class GGUFTensorRow:
    """One row of `gguf_tensor_table`: a tensor's name, type, torch shape and storage."""

    name: str
    type_name: str
    shape: tuple[int, ...]  # torch order, e.g. (out_features, in_features)
    n_elements: int
    n_bytes: int
    bits_per_weight: float  # 8 * n_bytes / n_elements, read from the file


def _check_path(path: object) -> Path:
    """`path` as a Path to an existing file; TypeError or ValueError naming `path` otherwise."""
    if isinstance(path, bool) or not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or a pathlib.Path, got {type(path).__name__}")
    if not Path(path).is_file():
        raise ValueError(f"path {str(path)!r} is not a file; pass the path of a .gguf file")
    return Path(path)


def gguf_tensor_table(path: str | Path) -> list[GGUFTensorRow]:
    """Every tensor of a GGUF file: name, type, torch shape, elements, bytes, bits per weight.

    bits per weight = 8 * bytes / elements, measured on the bytes the file holds for the tensor.
    Example (SmolLM2-135M Q4_1): blk.0.ffn_down.weight, Q4_1, (576, 1536), 884,736 elements,
    552,960 bytes, 5.0 bits per weight; token_embd.weight, Q8_0, (49152, 576), 8.5 bits.
    """
    reader = gguf.GGUFReader(_check_path(path))
    return [
        GGUFTensorRow(
            name=tensor.name,
            type_name=tensor.tensor_type.name,
            shape=torch_shape(tensor.shape),
            n_elements=int(tensor.n_elements),
            n_bytes=int(tensor.data.nbytes),
            bits_per_weight=8 * int(tensor.data.nbytes) / int(tensor.n_elements),
        )
        for tensor in reader.tensors
    ]


def _byte_tensor(raw: object) -> torch.Tensor:
    """`raw` as a flat uint8 tensor (a copy for bytes and numpy arrays, which may be read-only)."""
    if isinstance(raw, bytes | bytearray):
        return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).copy())
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8:
        return torch.from_numpy(np.array(raw, copy=True).reshape(-1))
    if isinstance(raw, torch.Tensor) and raw.dtype == torch.uint8:
        return raw.detach().reshape(-1)
    dtype = f" of dtype {raw.dtype}" if isinstance(raw, np.ndarray | torch.Tensor) else ""
    raise TypeError(
        "raw must be bytes, a numpy uint8 array or a torch uint8 tensor (the block bytes as "
        f"stored in the file), got {type(raw).__name__}{dtype}"
    )


def _check_shape(shape: object, block_format: BlockFormat) -> tuple[int, ...]:
    """`shape` as a tuple of positive ints whose last (fastest) axis holds whole blocks."""
    if isinstance(shape, int | str) or not isinstance(shape, Sequence | torch.Size):
        raise TypeError(f"shape must be a sequence of ints such as (576, 1536), got {shape!r}")
    dims = tuple(check_int(n, "shape", minimum=1) for n in shape)
    if not dims:
        raise ValueError("shape is empty; give the tensor's torch shape, e.g. (576, 1536)")
    if dims[-1] % block_format.block_size != 0:
        raise ValueError(
            f"shape[-1] = {dims[-1]} is not a multiple of {block_format.name}'s block size "
            f"{block_format.block_size}: blocks run along the last (contiguous) axis"
        )
    return dims


def _blocks(raw: object, shape: object, block_format: BlockFormat) -> torch.Tensor:
    """The bytes of a tensor of `shape`, one row per block: (n_blocks, bytes_per_block) uint8."""
    data = _byte_tensor(raw)
    dims = _check_shape(shape, block_format)
    n_blocks = math.prod(dims) // block_format.block_size
    expected = n_blocks * block_format.bytes_per_block
    if data.numel() != expected:
        raise ValueError(
            f"raw has {data.numel()} bytes, but a {block_format.name} tensor of shape {dims} "
            f"takes {expected} ({n_blocks} blocks of {block_format.bytes_per_block} bytes); "
            "check the shape (torch order) and the tensor type"
        )
    return data.reshape(n_blocks, block_format.bytes_per_block)


def _float16_column(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The little-endian float16 at bytes [start, start + 2) of every block, as float32."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()  # (n_blocks, 1)


def dequantize_q4_1(raw: bytes | np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Q4_1 blocks to float32: w = d * q + m, Lesson 4's offset form (r ~ s * q + r_min) per 32.

    Each 20-byte block: float16 d (the step), float16 m (the block's minimum), then 16 bytes of
    4-bit codes q in [0, 15]. Byte j holds weight j in its low nibble and weight j + 16 in its
    high nibble (ggml's order; Lesson 6's pack_weights puts neighbours in one byte instead).
    `shape` is the torch shape (out_features, in_features); blocks run along the last axis.
    d * q is exact in float32 (an 11-bit significand times a 4-bit integer), so only "+ m"
    rounds: any correct implementation gives the same bits.

    Example: d = 0.5, m = -2.0 and byte 0 = 0x71: weight 0 has q = 1, w = 0.5 * 1 - 2 = -1.5;
    weight 16 has q = 7, w = 1.5; a zero byte gives w = m = -2.0 for both of its weights.
    """
    blocks = _blocks(raw, shape, Q4_1)  # (n_blocks, 20)
    d = _float16_column(blocks, 0)  # (n_blocks, 1) the step
    m = _float16_column(blocks, Q4_1.scale_bytes)  # (n_blocks, 1) the minimum
    packed = blocks[:, Q4_1.scale_bytes + Q4_1.minimum_bytes :]  # (n_blocks, 16)
    low_nibble = 2**Q4_1.code_bits - 1  # 0x0F
    q = torch.cat([packed & low_nibble, packed >> Q4_1.code_bits], dim=1)  # (n_blocks, 32)
    w = d * q.float() + m
    return w.reshape(tuple(shape))


def dequantize_q8_0(raw: bytes | np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Q8_0 blocks to float32: w = d * q, the symmetric form (zero point 0) per block of 32.

    Each 34-byte block: float16 d, then 32 signed 8-bit codes q in [-128, 127] (llama.cpp's
    quantizer uses [-127, 127], d = max|w| / 127). d * q is exact in float32.
    `shape` is the torch shape (rows, columns); blocks run along the last axis.

    Example: d = 0.25 and codes [-127, -1, 0, 1, 127, ...] give [-31.75, -0.25, 0.0, 0.25,
    31.75, ...].
    """
    blocks = _blocks(raw, shape, Q8_0)  # (n_blocks, 34)
    d = _float16_column(blocks, 0)  # (n_blocks, 1)
    q = blocks[:, Q8_0.scale_bytes :].contiguous().view(torch.int8)  # (n_blocks, 32)
    w = d * q.float()
    return w.reshape(tuple(shape))


def _dequantize_float(raw: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """F32 or F16 values (the reader gives them typed) as float32; float16 -> float32 is exact."""
    return torch.from_numpy(np.array(raw, dtype=np.float32)).reshape(tuple(shape))


_DEQUANTIZERS: dict[str, Callable[..., torch.Tensor]] = {
    "F32": _dequantize_float,
    "F16": _dequantize_float,
    "Q8_0": dequantize_q8_0,
    "Q4_1": dequantize_q4_1,
}


def dequantize_gguf(tensor: gguf.ReaderTensor) -> torch.Tensor:
    """A tensor of a GGUF file (a `gguf.ReaderTensor`) as float32, in torch's shape order.

    F32 and F16 are read as they are; Q8_0 with w = d * q, Q4_1 with w = d * q + m. The shape
    is GGUF's dimensions reversed (see `torch_shape`), so a linear weight comes back as
    (out_features, in_features), ready for nn.Linear.
    Example: reader = gguf.GGUFReader(path); dequantize_gguf(reader.tensors[2]) gives the
    (576, 1536) float32 weight of blk.0.ffn_down for SmolLM2-135M, bit-exact with
    gguf.quants.dequantize.
    """
    if not isinstance(tensor, gguf.ReaderTensor):
        raise TypeError(
            f"tensor must be a gguf.ReaderTensor (an item of gguf.GGUFReader(path).tensors), "
            f"got {type(tensor).__name__}"
        )
    type_name = tensor.tensor_type.name
    if type_name not in _DEQUANTIZERS:
        raise ValueError(
            f"tensor {tensor.name!r} has type {type_name}, which tutorlib does not dequantize "
            f"(it reads {', '.join(_DEQUANTIZERS)}); gguf.quants.dequantize reads the others"
        )
    return _DEQUANTIZERS[type_name](tensor.data, torch_shape(tensor.shape))
