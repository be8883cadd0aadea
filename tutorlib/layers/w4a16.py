"""Lesson 6: the 4-bit linear layer: two integers per byte, one grid per group.

W4A16Linear stores a weight's 4-bit integers packed two per byte, with a float16 scale and a
uint8 zero point per group of input features, and dequantizes in forward; to_w4_layers swaps a
model's quantized linears for it. Left out on purpose: fused 4-bit kernels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib._checks import check_bool, check_float_tensor, check_int
from tutorlib.quant.affine import QuantizedTensor, linear_dequantize
from tutorlib.quant.packing import pack_weights, unpack_weights
from tutorlib.quant.params import QuantParams
from tutorlib.quant.rtn import rtn_quantize

__all__ = ["SCALE_BITS", "ZERO_POINT_BITS", "W4A16Linear", "to_w4_layers"]


SCALE_BITS = 16  # one float16 scale per group


ZERO_POINT_BITS = 8  # one uint8 zero point per group


_BITS = 4  # the layer's integers: [0, 15], two per byte


def _check_quantized(quantized: object) -> QuantizedTensor:
    if not isinstance(quantized, QuantizedTensor):
        raise TypeError(
            "quantized must be a QuantizedTensor (from rtn_quantize or gptq_quantize), "
            f"got {type(quantized).__name__}"
        )
    params = quantized.params
    if params.bits != _BITS or params.symmetric or params.group_size is None:
        raise ValueError(
            "W4A16Linear stores asymmetric 4-bit per-group weights; quantize with "
            "rtn_quantize(weight, bits=4) or gptq_quantize(weight, inputs, bits=4)"
        )
    if quantized.q.ndim != 2 or quantized.q.shape[1] % 2 != 0:
        raise ValueError(
            "the weight must be 2-D (out, in) with an even in_features to pack two per byte, "
            f"got shape {tuple(quantized.q.shape)}"
        )
    if not bool((params.scale.half().float() == params.scale).all()):
        raise ValueError(
            "the scales are not float16 values, so storing them in float16 would change them; "
            "quantize with rtn_quantize or gptq_quantize, which round them"
        )
    return quantized


class W4A16Linear(nn.Module):
    """Linear layer with 4-bit weights (two per byte) and float activations.

    Per group of g consecutive inputs of row o, with j = i // g:
    W_hat[o, i] = s[o, j] * (q[o, i] - z[o, j]), q in [0, 15];
    forward: y = x @ W_hat^T + b, a float32 matmul after unpacking.

    Buffers: packed_weight (out, in / 2) uint8, byte = q[2j] | q[2j + 1] << 4;
    scales (out_features, in_features / group_size) float16, one per group of each row (not
    one per row as W8A16Linear's and W8A8Linear's (out_features,): a 4-bit grid is too coarse to
    span a whole row); zero_points (out, in / g) uint8; bias (out,) float32 or None.
    Constructor: W4A16Linear(in_features, out_features, *, bias=True, group_size=128), the
    order of W8A16Linear and W8A8Linear (group_size=None: one group per row).

    Example: a (384, 1536) layer with groups of 128 stores 294,912 packed bytes, 4,608 float16
    scales and 4,608 zero points: 4.1875 bits per weight instead of 32.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        group_size: int | None = 128,
    ) -> None:
        super().__init__()
        in_features = check_int(in_features, "in_features", minimum=1)
        out_features = check_int(out_features, "out_features", minimum=1)
        group_size = in_features if group_size is None else group_size  # None: per channel
        group_size = check_int(group_size, "group_size", minimum=1)
        check_bool(bias, "bias")
        if in_features % group_size != 0 or in_features % 2 != 0:
            raise ValueError(
                f"in_features={in_features} must be even and a multiple of group_size={group_size}"
            )
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        n_groups = in_features // group_size
        self.register_buffer(
            "packed_weight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
        )  # (out, in / 2)
        self.register_buffer("scales", torch.ones(out_features, n_groups, dtype=torch.float16))
        self.register_buffer("zero_points", torch.zeros(out_features, n_groups, dtype=torch.uint8))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_quantized(
        cls, quantized: QuantizedTensor, bias: torch.Tensor | None = None
    ) -> "W4A16Linear":
        """A layer holding these 4-bit integers and grids (from rtn_quantize or gptq_quantize).

        Its dequantized weight equals quantized.dequantize() exactly: the scales are float16
        values already, and (q - z) is a small integer.
        """
        quantized = _check_quantized(quantized)
        out_features, in_features = quantized.q.shape
        if bias is not None and (
            not isinstance(bias, torch.Tensor) or bias.shape != (out_features,)
        ):
            raise ValueError(f"bias must be a tensor of shape ({out_features},) or None")
        params = quantized.params
        layer = cls(in_features, out_features, bias=bias is not None, group_size=params.group_size)
        layer.packed_weight.copy_(pack_weights(quantized.q, _BITS))  # (out, in / 2)
        layer.scales.copy_(params.scale[..., 0])  # (out, n_groups), exact in float16
        layer.zero_points.copy_(params.zero_point[..., 0])  # (out, n_groups)
        if bias is not None:
            layer.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, group_size: int | None = 128) -> "W4A16Linear":
        """Round-to-nearest 4-bit weights of an nn.Linear (`rtn_quantize`), groups of group_size
        (None: one group per row, per channel).

        Works with `replace_linear(model, W4A16Linear)`. For GPTQ, quantize the weight with
        gptq_quantize and use from_quantized (or `to_w4_layers` for a whole model).
        """

        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        quantized = rtn_quantize(linear.weight.detach(), _BITS, group_size)
        return cls.from_quantized(quantized, linear.bias)

    def quantized_weight(self) -> QuantizedTensor:
        """The stored weight as a QuantizedTensor: unpacked integers and their per-group grid."""
        q = unpack_weights(self.packed_weight, _BITS)  # (out, in) uint8
        params = QuantParams(
            self.scales.float()[..., None],  # (out, n_groups, 1)
            self.zero_points.to(torch.int32)[..., None],
            _BITS,
            symmetric=False,
            group_size=self.group_size,
        )
        return QuantizedTensor(q, params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor(x, "x", allow_empty=True)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        quantized = self.quantized_weight()
        weight = linear_dequantize(quantized.q, quantized.params)  # (out, in) float32
        return F.linear(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"weights=int4 packed, group_size={self.group_size}"
        )


def to_w4_layers(model: nn.Module, quantized: dict[str, QuantizedTensor]) -> nn.Module:
    """Swap each named nn.Linear of `model` for a W4A16Linear holding its quantized weight.

    `quantized` maps dotted names to 4-bit QuantizedTensors, e.g. {name: result.quantized for
    name, result in fake_quantize_linear_weights(model, "gptq", run=...).items()}. The model is
    changed in place and returned; its bias vectors are kept in float32.
    Example: MiniLM's 37 Linears at 4 bits, groups of 128: 90.9 MB -> 53.4 MB (the float32
    word embeddings are most of what is left).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(quantized, dict):
        raise TypeError(f"quantized must be a dict {{name: QuantizedTensor}}, got {quantized!r}")
    for name, value in quantized.items():
        linear = _submodule(model, name)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{name!r} is not an nn.Linear of the model")
        if tuple(_check_quantized(value).q.shape) != tuple(linear.weight.shape):
            raise ValueError(f"the weight of {name!r} has shape {tuple(linear.weight.shape)}")
    for name, value in quantized.items():
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child_name)
        setattr(parent, child_name, W4A16Linear.from_quantized(value, linear.bias))
    return model


def _submodule(model: nn.Module, name: object) -> nn.Module | None:
    """model.get_submodule(name), or None when there is no such module."""
    if not isinstance(name, str):
        return None
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
