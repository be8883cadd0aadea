"""Lesson 7: weight-only linear layers on torch's own fused CPU kernels, int8 and int4.

Int8WeightOnlyLinear keeps Lesson 5's weight (symmetric int8, one scale per output channel)
and calls torch._weight_int8pack_mm, which multiplies float activations by the int8 weight
without writing a dequantized copy of it. Int4WeightOnlyLinear keeps 4-bit integers per group
of 32 to 256 inputs in the layout torch._convert_weight_to_int4pack_for_cpu packs them in, and
calls torch._weight_int4pack_mm_for_cpu, whose grid is w = (q - 8) * scale + zero per group:
Lesson 4's offset form with r_min = zero - 8 * scale, so GGUF's Q4_1 blocks and Lesson 6's
zero-point grids (r_min = -scale * z) both load into it unchanged.

These are private aten operators (the leading underscore): torch 2.13 has them on CPU, and their
arguments have changed between releases. Left out on purpose: the bfloat16 activations these
kernels are fastest with on some CPUs (the layer computes in its input's dtype), GPUs, and
batch-size-dependent kernel choice.
"""

import torch
from torch import nn

from tutorlib._checks import check_bool, check_float_tensor, check_int
from tutorlib.layers.w8a16 import _check_input, _check_linear, quantize_weight_per_channel
from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.block_rtn import OffsetQuantizedTensor, offset_rtn_quantize

__all__ = ["INT4_GROUP_SIZES", "Int8WeightOnlyLinear", "Int4WeightOnlyLinear"]

# Group sizes torch._weight_int4pack_mm_for_cpu accepts (its qGroupSize check).
INT4_GROUP_SIZES = (32, 64, 128, 256)
_INT4_MIDPOINT = 8  # the kernel reads q - 8: its 4-bit integers are centred on 8
_INNER_K_TILES = 2  # packing parameter of the int4 layout; the CPU kernel accepts 2, 4 or 8
_OUT_MULTIPLE = 16  # the packed layout tiles output rows by 16 (_convert_weight_to_int4pack_cpu)


def _check_bias(bias: object, out_features: int) -> torch.Tensor | None:
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (out_features,):
        raise ValueError(f"bias must be a tensor of shape ({out_features},) or None")
    return check_float_tensor(bias.detach(), "bias").float()


# The activation dtypes both kernels take; float64 inputs run in float32 (as W8A8Linear's).
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _kernel_rows(x: object, in_features: int) -> torch.Tensor:
    """x (..., in_features), finite, as contiguous rows in a dtype the kernels take."""
    x = check_float_tensor(_check_input(x, in_features), "x", allow_empty=True)
    rows = x.reshape(-1, in_features)  # (tokens, in)
    return rows.to(x.dtype if x.dtype in _KERNEL_DTYPES else torch.float32).contiguous()


def _linear_output(y: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """y (rows, out) plus the bias, in x's dtype and leading dimensions."""
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y.to(x.dtype).reshape(*x.shape[:-1], y.shape[-1])


class Int8WeightOnlyLinear(nn.Module):
    """Linear layer with int8 weights on torch's fused kernel: y = x @ (s_w * W_q)^T + b.

    W_q[o, i] = clamp(round(W[o, i] / s_w[o]), -127, 127), s_w[o] = max_i |W[o, i]| / 127
    (Lesson 5's per-channel weight, `quantize_weight_per_channel`). forward calls
    torch._weight_int8pack_mm(x, W_q, s_w): the products x * W_q are summed in float and scaled
    per output channel, with no float copy of the weight in memory.
    Buffers: int8_weight (out, in) int8, scales (out,) float32, bias (out,) float32 or None.
    Inputs are float32, bfloat16 or float16 (the kernel computes in that dtype); float64 runs in
    float32. NaN or inf inputs are refused.
    Example: a (1536, 576) layer stores 884,736 bytes of weights and 6,144 of scales, against
    3,538,944 in float32: 8.06 bits per weight.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        check_bool(bias, "bias")
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("scales", torch.ones(out_features))  # (out,) float32
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8WeightOnlyLinear":
        """The layer of an nn.Linear, its weight quantized per output channel to int8."""
        linear = _check_linear(linear)
        quantized = quantize_weight_per_channel(linear.weight.detach())
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.int8_weight.copy_(quantized.q)  # (out, in) int8
        layer.scales.copy_(quantized.params.scale[:, 0])  # (out,)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _kernel_rows(x, self.in_features)  # (tokens, in)
        if rows.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        y = torch._weight_int8pack_mm(rows, self.int8_weight, self.scales.to(rows.dtype))
        return _linear_output(y, self.bias, x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _offset_form(quantized: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(q, scale, r_min, group_size) of a 4-bit per-group grid, w = scale * q + r_min:
    an OffsetQuantizedTensor as it is, a zero-point QuantizedTensor with r_min = -scale * z."""
    if isinstance(quantized, OffsetQuantizedTensor):
        params = quantized.params
        r_min = params.offset
    elif isinstance(quantized, QuantizedTensor) and not quantized.params.symmetric:
        params = quantized.params
        r_min = -params.scale * params.zero_point.float()
    else:
        raise TypeError(
            "quantized must be an OffsetQuantizedTensor (offset_rtn_quantize) or an asymmetric "
            f"QuantizedTensor (rtn_quantize, gptq_quantize), got {type(quantized).__name__}"
        )
    if params.bits != 4 or params.group_size not in INT4_GROUP_SIZES or quantized.q.ndim != 2:
        raise ValueError(
            f"torch's int4 kernel needs a 2-D weight of 4-bit integers in groups of one of "
            f"{INT4_GROUP_SIZES}, got {params.bits} bits in groups of {params.group_size}"
        )
    return quantized.q, params.scale[..., 0], r_min[..., 0], params.group_size


class Int4WeightOnlyLinear(nn.Module):
    """Linear layer with 4-bit weights per group on torch's fused CPU kernel.

    Per group of g inputs of row o (j = i // g): W_hat[o, i] = scale[o, j] * (q[o, i] - 8) +
    zero[o, j], q in [0, 15], which is the offset form scale * q + r_min with
    zero = r_min + 8 * scale. forward calls torch._weight_int4pack_mm_for_cpu on the packed
    integers (two per byte, in the kernel's own tiled order).
    Buffers: packed_weight (out, in / 2) uint8; scale_and_zero (in / g, out, 2) float32 (the
    kernel's layout, [..., 0] the scale, [..., 1] the zero); bias (out,) float32 or None.
    out_features must be a multiple of 16 (the packed layout's tiles). Inputs are float32,
    bfloat16 or float16 (the kernel computes in that dtype); float64 runs in float32.
    Example: a Q4_1 block with d = 0.01, m = -0.08 and q = 3 gives 0.01 * (3 - 8) + 0.0 =
    -0.05 = 0.01 * 3 - 0.08: zero = m + 8 d = 0.0.
    """

    def __init__(
        self, in_features: int, out_features: int, *, bias: bool = True, group_size: int = 32
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        check_bool(bias, "bias")
        if group_size not in INT4_GROUP_SIZES or in_features % group_size != 0:
            raise ValueError(
                f"group_size must be one of {INT4_GROUP_SIZES} and divide in_features="
                f"{in_features}, got {group_size!r}"
            )
        if out_features % _OUT_MULTIPLE != 0:
            raise ValueError(
                f"out_features must be a multiple of {_OUT_MULTIPLE} for torch's int4 layout, "
                f"got {out_features}; keep such a layer in float"
            )
        self.group_size = group_size
        packed = torch.zeros(out_features, in_features // 2, dtype=torch.uint8)  # (out, in / 2)
        self.register_buffer("packed_weight", packed)
        n_groups = in_features // group_size
        self.register_buffer("scale_and_zero", torch.zeros(n_groups, out_features, 2))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_quantized(
        cls,
        quantized: OffsetQuantizedTensor | QuantizedTensor,
        bias: torch.Tensor | None = None,
    ) -> "Int4WeightOnlyLinear":
        """A layer holding a 4-bit grid: Q4_1's (offset_rtn_quantize) or a zero-point one
        (rtn_quantize, gptq_quantize). zero = r_min + 8 * scale, one per group."""
        q, scale, r_min, group_size = _offset_form(quantized)
        out_features, in_features = q.shape
        bias = _check_bias(bias, out_features)
        layer = cls(in_features, out_features, bias=bias is not None, group_size=group_size)
        packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), _INNER_K_TILES)
        layer.packed_weight.copy_(packed)  # (out, in / 2)
        zero = r_min + _INT4_MIDPOINT * scale  # (out, n_groups)
        layer.scale_and_zero.copy_(torch.stack([scale, zero], dim=-1).transpose(0, 1))
        if bias is not None:
            layer.bias.copy_(bias)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, group_size: int = 32) -> "Int4WeightOnlyLinear":
        """An nn.Linear's weight on Q4_1's grid (offset_rtn_quantize, groups of group_size)."""
        linear = _check_linear(linear)
        quantized = offset_rtn_quantize(linear.weight.detach(), 4, group_size)
        return cls.from_quantized(quantized, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _kernel_rows(x, self.in_features)  # (tokens, in)
        if rows.shape[0] == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        y = torch._weight_int4pack_mm_for_cpu(
            rows, self.packed_weight, self.group_size, self.scale_and_zero.to(rows.dtype)
        )
        return _linear_output(y, self.bias, x)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 weights, group_size={self.group_size}"
        )
