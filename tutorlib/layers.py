"""Quantized linear layers and the function that swaps them into a model (Lessons 4 and 5).

A quantized layer stores integer weights and per-output-channel scales as buffers and calls the
primitives of `tutorlib.quantization` in a few lines of `forward`; `replace_linear` walks a model
and swaps every `nn.Linear` (except the ones named in `skip`) for such a layer.
Left out on purpose: tensor-subclass dispatch (optimum-quanto's machinery), packed sub-8-bit
weights, quantized convolutions and embeddings, and training through quantized weights.
"""

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.quantization import (
    QuantizedTensor,
    QuantParams,
    integer_range,
    linear_dequantize,
    quantize_tensor,
)

__all__ = ["quantize_weight_per_channel", "W8A16Linear", "W8A8Linear", "replace_linear"]

# Integer range of both layers' weights (and W8A8's activations): symmetric int8, [-127, 127].
_INT8_MAX = integer_range(8, symmetric=True)[1]


def quantize_weight_per_channel(weight: torch.Tensor) -> QuantizedTensor:
    """The weight quantizer both layers share: symmetric int8, one scale per output channel.

    s[o] = max_i |W[o, i]| / 127,  W_q[o, i] = clamp(round(W[o, i] / s[o]), -127, 127),
    which is optimum-quanto's qint8 weight scheme. Example: a row [0.5, -1.27, 0.1] gets
    s = 1.27 / 127 = 0.01 and the integers [50, -127, 10].
    Returns a QuantizedTensor: q int8 (out_features, in_features), scale (out_features, 1).
    """
    return quantize_tensor(weight.detach(), bits=8, symmetric=True, dim=0)


class W8A16Linear(nn.Module):
    """Linear layer with int8 weights and float activations (weight-only quantization).

    Weights are quantized symmetrically per output channel, s_o = max_i |W[o, i]| / 127 and
    W_q = clamp(round(W / s), -127, 127), as optimum-quanto's qint8 weights. `forward`
    dequantizes, W ~ s * W_q, in the activation's dtype and runs an ordinary float matmul:
        y = x @ (s * W_q)^T + b
    Memory shrinks (1 byte per weight plus one scale per row); the matmul is the float one.

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features, 1) in the
    original weight's dtype; bias (out_features,) or None, kept in float.

    Example: a 4 x 3 weight whose row 0 is [0.5, -1.27, 0.1] gets s_0 = 1.27 / 127 = 0.01 and
    int8 row [50, -127, 10].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )  # (out_features, in_features)
        self.register_buffer("scales", torch.ones(out_features, 1, dtype=dtype))  # (out, 1)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A16Linear":
        """Quantize an nn.Linear's weight (symmetric, per output channel) into a new layer."""
        weight = linear.weight.detach()  # (out_features, in_features)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, weight.dtype)
        quantized = quantize_weight_per_channel(weight)
        layer.int8_weight.copy_(quantized.q)  # (out_features, in_features) int8
        layer.scales.copy_(quantized.params.scale)  # (out_features, 1)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(weight.device)

    def weight_params(self, dtype: torch.dtype) -> QuantParams:
        """The weight's QuantParams (symmetric int8, per output channel), scales in `dtype`."""
        scale = self.scales.to(dtype)  # (out_features, 1)
        return QuantParams(scale, torch.zeros_like(scale, dtype=torch.int32), 8, True, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = linear_dequantize(self.int8_weight, self.weight_params(x.dtype))  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=int8"


def replace_linear(
    model: nn.Module, layer_cls: type[nn.Module], skip: Iterable[str] = ("lm_head",)
) -> nn.Module:
    """Replace every nn.Linear in `model` by `layer_cls.from_linear(linear)`, in place.

    A Linear is kept when its attribute name (e.g. "lm_head") or its full dotted name
    (e.g. "encoder.layer.0.output.dense") is in `skip`. Any class with a `from_linear`
    classmethod works (W8A16Linear here, W8A8Linear in Lesson 5). The model is modified in
    place and also returned, so `q = replace_linear(copy.deepcopy(m), W8A16Linear)` keeps m.

    Example: a BERT encoder of 6 layers has 36 Linear layers; all 36 become W8A16Linear.
    """
    if not hasattr(layer_cls, "from_linear"):
        raise TypeError(f"{layer_cls.__name__} needs a from_linear(linear) classmethod")
    if isinstance(model, nn.Linear):
        raise TypeError("model is itself an nn.Linear: call layer_cls.from_linear(model) instead")
    skip = set(skip) if not isinstance(skip, str) else {skip}
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in skip and name.split(".")[-1] not in skip
    ]  # collected first: swapping modules while iterating named_modules() is unsafe
    for name, linear in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, layer_cls.from_linear(linear))
    return model


# ---------------------------------------------------------------- W8A8Linear (Lesson 5)


class W8A8Linear(nn.Module):
    """Linear layer with int8 weights AND int8 activations: the matmul runs on integer units.

    Weights: symmetric per output channel, as W8A16Linear, s_w[o] = max_i |W[o, i]| / 127.
    Activations: symmetric per token (per row), computed on the fly at every call,
        s_x[t] = max_i |x[t, i]| / 127,   x_q = clamp(round(x / s_x), -127, 127)
    (dynamic quantization; a row of zeros gets s_x = torch.finfo(float32).eps, as in
    `get_scale_and_zero_point`). Then one integer matmul and one rescale:
        acc[t, o] = sum_i x_q[t, i] * W_q[o, i]      (int8 x int8 -> int32, exact)
        y[t, o]   = s_x[t] * s_w[o] * acc[t, o] + b[o]
    acc is exact because |acc| <= in_features * 127**2 < 2**31 for in_features <= 133,144.

    The integer matmul is `torch._int_mm`. On CPU (torch 2.13) it takes any (m, k) @ (k, n)
    with m, k, n >= 1 (and m = 0), so one token (batch 1) needs no padding; on CUDA it needs
    m > 16 and k, n multiples of 8, which this CPU course does not handle. Inputs of any
    leading shape (..., in_features) are flattened to rows (tokens, in_features); the
    activation quantization runs in float32 whatever the input dtype, and the output has the
    input's dtype. Non-finite activations (NaN or inf) raise ValueError: int8 has no NaN, and
    a row containing inf would get an infinite scale and turn every other value of the row to 0.

    Buffers: int8_weight_t (in_features, out_features) int8, the weight stored transposed and
    contiguous, the (k, n) layout torch._int_mm takes (a transposed view of an
    (out_features, 1) weight has strides (1, 1), and torch 2.13's CPU _int_mm returns garbage
    for that layout, so the view is not used); scales (out_features, 1) float32;
    bias (out_features,) float32 or None.

    Example: x row [0.5, -1.27, 0.1] gets s_x = 0.01 and x_q = [50, -127, 10]; with a weight
    row W_q = [127, 0, -127] and s_w = 0.02: acc = 6350 - 1270 = 5080, y = 0.01 * 0.02 * 5080
    = 1.016 (in float: 0.5 * 2.54 - 0.1 * 2.54 = 1.016).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer(
            "int8_weight_t", torch.zeros(in_features, out_features, dtype=torch.int8)
        )  # (in_features, out_features)
        self.register_buffer("scales", torch.ones(out_features, 1))  # (out_features, 1)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A8Linear":
        """Quantize an nn.Linear's weight (symmetric int8, per output channel) into a new layer."""
        if linear.weight.device.type != "cpu":
            raise ValueError("W8A8Linear runs torch._int_mm on CPU; move the model to the CPU")
        weight = linear.weight.detach().float()  # (out_features, in_features)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        quantized = quantize_weight_per_channel(weight)  # q (out, in) int8, scale (out, 1)
        layer.int8_weight_t.copy_(quantized.q.t())  # (in_features, out_features), contiguous
        layer.scales.copy_(quantized.params.scale)  # (out_features, 1)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer

    @staticmethod
    def quantize_activations(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token symmetric int8: s_x = max|row| / 127, x_q = clamp(round(row / s_x), ...).

        The same numbers as `get_scale_and_zero_point(rows, 8, symmetric=True, dim=0)` followed
        by `linear_quantize(...)` (a test checks that they are identical), written for the hot
        path: one absmax reduction instead of min and max, rounding in place, no clamp (see the
        comment), and a finiteness check on the largest absmax instead of every element.

        Example: rows [[0.5, -1.27, 0.1]] -> x_q [[50, -127, 10]], s_x [[0.01]].
        Returns (x_q int8 (tokens, features), s_x float32 (tokens, 1)).
        """
        rows = rows.float()  # float32 math: bf16's 8-bit significand could round 127 up to 128
        abs_max = rows.abs().amax(dim=-1, keepdim=True)  # (tokens, 1); NaN if a row has NaN
        if abs_max.numel() and not math.isfinite(abs_max.max().item()):
            raise ValueError(
                "the activations contain NaN or inf, which int8 cannot represent; find where "
                "they come from (e.g. an overflow in float16) or run this layer in float"
            )
        scale = torch.clamp(abs_max / _INT8_MAX, min=torch.finfo(torch.float32).eps)
        # clamp(., -127, 127) would change nothing: |row / s_x| <= max|row| / (max|row| / 127)
        # = 127 up to two float32 roundings (127 * (1 + 2**-22) < 127.5, which rounds to 127),
        # and a scale floored at eps only makes |row / s_x| smaller. A test checks q == generic.
        x_q = torch.div(rows, scale).round_().to(torch.int8)  # (tokens, features)
        return x_q, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise TypeError(f"W8A8Linear expects float activations, got {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"expected input of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        rows = x.reshape(-1, self.in_features)  # (tokens, in_features)
        x_q, x_scale = self.quantize_activations(rows)  # int8 (tokens, in), float32 (tokens, 1)
        acc = torch._int_mm(x_q, self.int8_weight_t)  # (tokens, out) int32, exact
        y = self.rescale(acc, x_scale)  # (tokens, out) float32
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def rescale(self, acc: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """y[t, o] = s_x[t] * s_w[o] * acc[t, o] + b[o], from the int32 products, in float32.

        Example: acc = [[5080]], s_x = [[0.01]], s_w = [0.02], no bias -> [[1.016]].
        """
        w_scale = self.scales.t()  # (1, out_features)
        if self.bias is None:
            return (acc * x_scale).mul_(w_scale)  # s_x[t] * acc[t, o] * s_w[o]
        return torch.addcmul(self.bias, acc * x_scale, w_scale)  # b[o] + the same, in one pass

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            "weights=int8, activations=int8 per token"
        )
