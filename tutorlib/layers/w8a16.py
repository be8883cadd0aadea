"""Lessons 4 and 5: int8 weights, float activations (W8A16).

The weight is quantized once, symmetric int8 per output channel, s_w[o] = max_i |W[o, i]| / 127;
forward dequantizes it and runs the float matmul, so it saves memory and not arithmetic.
Left out on purpose: fused dequantizing kernels (torch's _weight_int8pack_mm), which Lesson 7
times.
"""

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib._checks import check_bool, check_float_tensor, check_int, check_tensor
from tutorlib.quant.affine import QuantizedTensor, linear_dequantize, quantize_tensor
from tutorlib.quant.params import QuantParams

__all__ = ["quantize_weight_per_channel", "W8A16Linear"]


def _check_features(value: object, name: str, maximum: int | None = None) -> int:
    """A layer size: a positive int, at most `maximum` (W8A8's int32 limit) when given."""
    size = check_int(value, name, minimum=1)
    if maximum is not None and size > maximum:
        raise ValueError(
            f"{name} must be at most {maximum:,} so that the int32 sums of int8 products "
            f"(|acc| <= {name} * 127**2) cannot overflow, got {size:,}; split the layer along "
            "its input or keep it in float"
        )
    return size


def _check_linear(linear: object) -> nn.Linear:
    """An nn.Linear on the CPU with finite weights (what from_linear quantizes)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    check_float_tensor(linear.weight.detach(), "linear.weight")
    return linear


def _check_input(x: object, in_features: int) -> torch.Tensor:
    """x: a float tensor of shape (..., in_features); NaN is checked by each layer."""
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x must hold float activations, got {x.dtype}; cast with x.float()")
    if x.ndim == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must have shape (..., {in_features}), got {tuple(x.shape)}")
    return x


def quantize_weight_per_channel(weight: torch.Tensor) -> QuantizedTensor:
    """The weight quantizer both layers share: symmetric int8, one scale per output channel.

    s[o] = max_i |W[o, i]| / 127,  W_q[o, i] = clamp(round(W[o, i] / s[o]), -127, 127),
    which is optimum-quanto's qint8 weight scheme. Example: a row [0.5, -1.27, 0.1] gets
    s = 1.27 / 127 = 0.01 and the integers [50, -127, 10].
    Returns a QuantizedTensor: q int8 (out_features, in_features), scale (out_features, 1).
    """
    check_float_tensor(check_tensor(weight, "weight").detach(), "weight")
    if weight.ndim != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    return quantize_tensor(weight.detach(), bits=8, symmetric=True, dim=0)


class W8A16Linear(nn.Module):
    """Linear layer with int8 weights and float activations (weight-only quantization).

    Weights are quantized symmetrically per output channel, s_o = max_i |W[o, i]| / 127 and
    W_q = clamp(round(W / s), -127, 127), as optimum-quanto's qint8 weights. `forward`
    dequantizes, W ~ s * W_q, in the activation's dtype and runs an ordinary float matmul:
        y = x @ (s * W_q)^T + b
    Memory shrinks (1 byte per weight plus one scale per row); the matmul is the float one.

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features,), one s_o per
    output channel, as W8A8Linear's, but in `dtype` (the original weight's: from_linear keeps a
    bfloat16 model's scales in bfloat16, as optimum-quanto does), where W8A8Linear's are always
    float32 (what oneDNN's kernel reads); bias (out_features,) in `dtype`, or None.
    Constructor: W8A16Linear(in_features, out_features, *, bias=True, dtype=torch.float32),
    the order of W8A8Linear and W4A16Linear.

    Example: a 4 x 3 weight whose row 0 is [0.5, -1.27, 0.1] gets s_0 = 1.27 / 127 = 0.01 and
    int8 row [50, -127, 10].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = _check_features(in_features, "in_features")
        self.out_features = _check_features(out_features, "out_features")
        check_bool(bias, "bias")
        _check_float_dtype(dtype)
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )  # (out_features, in_features)
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype))  # (out_features,)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A16Linear":
        """Quantize an nn.Linear's weight (symmetric, per output channel) into a new layer."""
        weight = _check_linear(linear).weight.detach()  # (out_features, in_features)
        bias = linear.bias is not None
        layer = cls(linear.in_features, linear.out_features, bias=bias, dtype=weight.dtype)
        quantized = quantize_weight_per_channel(weight)
        layer.int8_weight.copy_(quantized.q)  # (out_features, in_features) int8
        layer.scales.copy_(quantized.params.scale.flatten())  # (out_features,)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(weight.device)

    def weight_params(self, dtype: torch.dtype) -> QuantParams:
        """The weight's QuantParams (symmetric int8, per output channel), scales in `dtype`.

        Its scale has shape (out_features, 1), one per row, to broadcast along the row's inputs
        (the buffer `scales` stores the same numbers as (out_features,)). Example: scales
        [0.01, 0.02] give scale [[0.01], [0.02]], zero_point [[0], [0]], 8 bits, symmetric.
        """
        scale = self.scales.to(_check_float_dtype(dtype))[:, None]  # (out_features, 1)
        return QuantParams(scale, torch.zeros_like(scale, dtype=torch.int32), 8, True, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor(_check_input(x, self.in_features).detach(), "x", allow_empty=True)
        weight = linear_dequantize(self.int8_weight, self.weight_params(x.dtype))  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=int8"


def _check_float_dtype(dtype: object) -> torch.dtype:
    """A floating-point torch.dtype (float16, bfloat16, float32, float64)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype, e.g. torch.float32, got {dtype!r}"
        )
    return dtype
