"""Lesson 6: what a weight-only quantized model weighs, in bits per weight and bytes.

bits_per_weight counts the integers and each group's scale and zero point; weight_only_bytes
and size_table apply it to every linear layer of a model, the rest kept in float.
"""

from collections.abc import Sequence

import pandas as pd
from torch import nn

from tutorlib._checks import check_int
from tutorlib.layers.w4a16 import SCALE_BITS, ZERO_POINT_BITS
from tutorlib.models.size import model_size_bytes

__all__ = ["bits_per_weight", "weight_only_bytes", "size_table"]


def bits_per_weight(bits: int, group_size: int) -> float:
    """Storage per weight, the group's parameters included: k + (16 + 8) / g bits.

    Each group of g weights shares a float16 scale (16 bits) and a uint8 zero point (8 bits).
    Example: 4 bits, groups of 128: 4 + 24 / 128 = 4.1875 bits; per channel of a 384-input
    layer (g = 384): 4 + 24 / 384 = 4.0625 bits.
    """
    bits = check_int(bits, "bits", 1, 16)
    group_size = check_int(group_size, "group_size", minimum=1)
    return bits + (SCALE_BITS + ZERO_POINT_BITS) / group_size


def weight_only_bytes(model: nn.Module, bits: int, group_size: int | None) -> int:
    """Bytes of a model whose nn.Linear weights are k-bit per group, everything else float32.

    bytes = sum over Linear weights of (n * k / 8 + n / g * 3) + 4 * (every other parameter and
    buffer), with g = the layer's in_features when group_size is None (per channel) and one
    float16 scale plus one uint8 zero point (3 bytes) per group. k-bit integers are counted as
    packed without gaps (ceil(n * k / 8) bytes), which this layer does for k = 4.
    Example: nn.Linear(256, 128) at 4 bits, groups of 128: 32,768 * 0.5 + 256 * 3 + 128 * 4
    (the float32 bias) = 17,664 bytes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bits = check_int(bits, "bits", 1, 16)
    if group_size is not None:
        check_int(group_size, "group_size", minimum=1)
    linear_weights = {id(m.weight): m for m in model.modules() if isinstance(m, nn.Linear)}
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        linear = linear_weights.get(id(tensor))
        if linear is None:
            total += tensor.numel() * tensor.element_size()
            continue
        g = linear.in_features if group_size is None else group_size
        if linear.in_features % g != 0:
            raise ValueError(
                f"group_size={g} does not divide in_features={linear.in_features} of a Linear"
            )
        total += -(-tensor.numel() * bits // 8) + tensor.numel() // g * 3
    return total


def size_table(model: nn.Module, settings: Sequence[tuple[int, int | None]]) -> pd.DataFrame:
    """weight_only_bytes of a float32 `model` at each (bits, group_size) setting, as a table.

    Columns: bits; group ("per channel" for None); bits per weight = 8 * (bytes - float32
    bytes of everything but the Linear weights) / Linear weights, i.e. the k bits plus each
    group's scale and zero point spread over its weights; model (MB) = bytes / 1e6; and
    FP32 / this = float32 bytes / bytes.
    Example: nn.Linear(256, 128) at (4, 128): 4 + 24 / 128 = 4.1875 bits per weight, 17,664
    bytes against 131,584 in float32, 7.45x smaller.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pairs = isinstance(settings, Sequence) and not isinstance(settings, str) and settings
    if not pairs or not all(isinstance(s, tuple | list) and len(s) == 2 for s in settings):
        raise TypeError("settings must be a non-empty sequence of (bits, group_size) pairs")
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    if linear_weights == 0:
        raise ValueError("model has no nn.Linear layer: there are no weights to quantize")
    fp32_bytes = model_size_bytes(model)  # the float32 model, as it is
    other_bytes = fp32_bytes - 4 * linear_weights  # embeddings, norms, biases: float32
    rows = []
    for bits, group_size in settings:
        total = weight_only_bytes(model, bits, group_size)
        rows.append(
            {
                "bits": bits,
                "group": "per channel" if group_size is None else group_size,
                "bits per weight": 8 * (total - other_bytes) / linear_weights,
                "model (MB)": total / 1e6,
                "FP32 / this": fp32_bytes / total,
            }
        )
    return pd.DataFrame(rows)
