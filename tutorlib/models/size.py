"""Lessons 3 to 7: how many bytes a model occupies, measured or predicted from bits per weight.

A model's size is the bytes of every tensor it stores: parameters and buffers, each storage
counted once (a weight tied to another is paid for once). Quantized tensors of optimum-quanto are
wrapper subclasses whose `dtype` is the float one they stand for, so their size is the size of
the tensors they wrap (`_data`, `_scale`, `_shift`), found through `__tensor_flatten__`.
torch.ao's dynamic quantized Linear keeps its int8 weight and float bias in a packed C++ object,
neither parameter nor buffer; those bytes are counted from the tensors it unpacks to.

bits_per_weight, weight_only_bytes and size_table predict the size of a model whose linear
weights are stored at k bits with one scale and zero point per group (Lesson 6), the rest kept
in float: every size in the course is computed here.

Leaves out: activations, optimizer state, the Python objects around the tensors, and memory held
by the allocator but not by a tensor.
"""

from collections.abc import Iterator, Sequence

import pandas as pd
import torch
from torch import nn

from tutorlib._checks import check_int, dtype_name
from tutorlib.layers.w4a16 import SCALE_BITS, ZERO_POINT_BITS

__all__ = [
    "model_size_bytes",
    "size_breakdown",
    "bits_per_weight",
    "weight_only_bytes",
    "size_table",
]

# Role of each tensor a quantized weight wraps (optimum-quanto 0.2.7 names them so).
_INNER_ROLES = {"_data": "weights", "_scale": "scales", "_shift": "shifts"}


def _leaves(tensor: torch.Tensor, role: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (role, plain tensor) for a tensor, unwrapping tensor subclasses recursively.

    A plain tensor yields itself. A wrapper subclass (anything with `__tensor_flatten__`, such as
    quanto's WeightQBytesTensor) yields the tensors it wraps; their role comes from the attribute
    name: `_data` -> "weights", `_scale` -> "scales", `_shift` -> "shifts".
    """
    if type(tensor) in (torch.Tensor, nn.Parameter) or not hasattr(tensor, "__tensor_flatten__"):
        yield role, tensor
        return
    inner_names, _context = tensor.__tensor_flatten__()
    for inner_name in inner_names:
        # A packed tensor inside a quantized weight (int4 data in uint8) keeps the outer role.
        outer_is_inner = role in _INNER_ROLES.values()
        inner_role = role if outer_is_inner else _INNER_ROLES.get(inner_name, inner_name.strip("_"))
        yield from _leaves(getattr(tensor, inner_name), inner_role)


def _category(role: str, dtype: torch.dtype) -> str:
    """Name a group of bytes by role and dtype: "int8 weights", "scales (float32)", ..."""
    name = dtype_name(dtype)
    if role in ("parameters", "buffers", "weights"):
        return f"{name} {role}"
    return f"{role} ({name})"


def _packed_linear_bytes(module: nn.Module) -> int:
    """Bytes of a torch.ao quantized Linear's packed weight and bias: int8 data, the scale and
    zero point (a float64 and an int64 per tensor, or one of each per channel) and the bias.

    Example: quantize_dynamic on nn.Linear(4, 3): 12 int8 weights + 8 + 8 bytes of scale and
    zero point + 3 float32 biases = 40 bytes.
    """
    weight, bias = module._weight_bias()
    if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        qparams_bytes = 8 + 8  # q_scale() is a float64, q_zero_point() an int64
    else:
        scales, zero_points = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
        qparams_bytes = scales.nbytes + zero_points.nbytes
    bias_bytes = 0 if bias is None else bias.nbytes
    return weight.int_repr().nbytes + qparams_bytes + bias_bytes


def _is_packed_linear(module: nn.Module) -> bool:
    """A torch.ao quantized Linear (not its inner _packed_params, which unpacks the same)."""
    return hasattr(module, "in_features") and callable(getattr(module, "_weight_bias", None))


def size_breakdown(model: nn.Module) -> dict[str, int]:
    """Bytes of a model split by what they are, each storage counted once.

    Keys name role and dtype: "float32 parameters", "int64 buffers", and for quantized weights
    "int8 weights" and "scales (float32)"; torch.ao's packed Linear weights (with their scales
    and biases) under "torch.ao packed linear". The values sum to `model_size_bytes(model)`.

    Example: nn.Linear(4, 3) has a (3, 4) weight and a (3,) bias in float32:
    (12 + 3) * 4 bytes = {"float32 parameters": 60}.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    sizes: dict[str, int] = {}
    seen_storages: set[int] = set()
    named = [("parameters", p) for p in model.parameters()] + [
        ("buffers", b) for b in model.buffers()
    ]
    for role, tensor in named:
        for leaf_role, leaf in _leaves(tensor, role):
            storage = leaf.untyped_storage()
            if storage.data_ptr() in seen_storages and storage.data_ptr() != 0:
                continue  # tied or shared: already paid for
            seen_storages.add(storage.data_ptr())
            key = _category(leaf_role, leaf.dtype)
            sizes[key] = sizes.get(key, 0) + storage.nbytes()
    packed = sum(_packed_linear_bytes(m) for m in model.modules() if _is_packed_linear(m))
    if packed:
        sizes["torch.ao packed linear"] = packed
    return sizes


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of a model, each storage counted once, with the
    inner tensors of quantized weights (optimum-quanto's, torch.ao's packed ones).

    size = sum over distinct storages of (number of elements * bytes per element)

    Example: MobileViT-small (5,578,632 parameters plus its batch-norm buffers) takes
    22,363,808 bytes in float32 and 11,182,032 in bfloat16 (the int64 batch counters stay).
    """
    return sum(size_breakdown(model).values())


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
        group_size = check_int(group_size, "group_size", minimum=1)
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
