"""Lesson 6: several sub-byte integers per byte.

pack_weights puts 8 // bits unsigned integers into each uint8 (the first in the low bits);
unpack_weights takes them out. Left out on purpose: bit widths that do not divide 8 (3, 5, 6,
7 bits), which real formats pack in blocks.
"""

import torch

from tutorlib._checks import check_integer_tensor, check_tensor

__all__ = ["pack_weights", "unpack_weights"]


def pack_weights(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack 8 // bits unsigned k-bit values per uint8 byte, along the last axis.

    Value i of each run of 8 // bits consecutive values goes to bits [i*k, (i+1)*k) of the
    byte (the first value in the lowest bits):  byte = sum_i q_i << (i * k).
    Example, 2 bits: [1, 0, 3, 2] -> 1 + (0 << 2) + (3 << 4) + (2 << 6) = 177 = 0b10110001.
    Values must lie in [0, 2**k - 1]; shift signed values by 2**(k-1) first. optimum-quanto
    packs along the first axis instead; the saving (a factor 8 // bits) is the same.
    """
    if isinstance(bits, bool) or bits not in (2, 4):
        raise ValueError(f"pack_weights packs 2-bit or 4-bit values, got bits={bits!r}")
    check_integer_tensor(q, "q")
    per_byte = 8 // bits
    if q.ndim == 0 or q.shape[-1] % per_byte != 0:
        raise ValueError(
            f"q's last dimension must be a multiple of {per_byte} to pack {bits}-bit values; "
            f"got shape {tuple(q.shape)} (pad it first)"
        )
    if q.numel() and (q.min() < 0 or q.max() > 2**bits - 1):
        raise ValueError(
            f"the values of q must lie in [0, {2**bits - 1}] to fit in {bits} bits; "
            f"shift signed values by {2 ** (bits - 1)} first"
        )
    runs = q.to(torch.uint8).reshape(*q.shape[:-1], -1, per_byte)  # (..., n // per_byte, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.uint8) * bits  # [0, k, 2k, ...]
    return (runs << shifts).sum(dim=-1, dtype=torch.uint8)  # bits never overlap: sum == OR


def unpack_weights(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of pack_weights: q_i = (byte >> (i * k)) & (2**k - 1), as uint8.

    Example, 2 bits: 177 = 0b10110001 -> [1, 0, 3, 2]. The last axis grows by 8 // bits.
    """
    if isinstance(bits, bool) or bits not in (2, 4):
        raise ValueError(f"unpack_weights unpacks 2-bit or 4-bit values, got bits={bits!r}")
    check_tensor(packed, "packed")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got {packed.dtype}")
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.uint8) * bits  # [0, k, 2k, ...]
    mask = 2**bits - 1
    runs = (packed.unsqueeze(-1) >> shifts) & mask  # (..., n_bytes, per_byte)
    return runs.reshape(*packed.shape[:-1], -1)
