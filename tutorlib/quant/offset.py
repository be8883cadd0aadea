"""Lesson 4: the original notes' min-max form, r ~ s * q + r_min, beside the zero-point form.

The offset is a float (r_min), so real 0 is generally not exact; compare_forms measures both
forms on the same tensor. Left out on purpose: anything beyond the notes' per-tensor and
per-group use of it.
"""

from dataclasses import dataclass

import torch

from tutorlib._checks import check_bits, check_float_tensor, check_int, check_integer_tensor
from tutorlib.quant.affine import _saturate, fake_quantize
from tutorlib.quant.error import quantization_error
from tutorlib.quant.params import (
    SUPPORTED_BITS,
    _check_fits,
    _check_granularity,
    _check_params,
    _floor_scale,
    _grouped,
    _integer_dtype,
    _range,
    _step,
    integer_range,
)

__all__ = [
    "OffsetParams",
    "get_scale_and_offset",
    "offset_quantize",
    "offset_dequantize",
    "offset_fake_quantize",
    "FormResult",
    "compare_forms",
]


@dataclass(frozen=True)
class OffsetParams:
    """The original notes' parameters: scale s, float offset r_min, bits, axis or group.

    Example: r = [-1.0, 0.5, 3.0] at 8 bits: OffsetParams(scale=4 / 255, offset=-1.0, bits=8).
    The integers are unsigned, [0, 2**k - 1].
    """

    scale: torch.Tensor
    offset: torch.Tensor
    bits: int
    dim: int | None = None
    group_size: int | None = None

    def __post_init__(self) -> None:
        check_bits(self.bits, SUPPORTED_BITS)
        scale = check_float_tensor(self.scale, "scale")
        if not bool((scale > 0).all()):
            raise ValueError(
                "scale must be positive everywhere; a zero or negative step has no grid"
            )
        offset = check_float_tensor(self.offset, "offset")
        if offset.shape != scale.shape:
            raise ValueError(
                f"offset has shape {tuple(offset.shape)} but scale has {tuple(scale.shape)}"
            )
        if self.dim is not None and self.group_size is not None:
            raise ValueError("give either dim (per-channel) or group_size (per-group), not both")
        if self.dim is not None:  # an axis of the quantized tensor, as QuantParams: 0 or more
            object.__setattr__(self, "dim", check_int(self.dim, "dim", minimum=0))
        if self.group_size is not None:
            object.__setattr__(self, "group_size", check_int(self.group_size, "group_size", 1))
        # Its own copies: a caller who later edits the tensors it passed cannot change the grid.
        object.__setattr__(self, "scale", scale.detach().clone())
        object.__setattr__(self, "offset", offset.detach().clone())
        object.__setattr__(self, "bits", int(self.bits))

    def __iter__(self):
        raise TypeError(
            "OffsetParams is one value: pass it whole, e.g. q = offset_quantize(r, params); "
            "read its parts as params.scale and params.offset"
        )


def get_scale_and_offset(
    r: torch.Tensor,
    bits: int = 8,
    dim: int | None = None,
    group_size: int | None = None,
) -> OffsetParams:
    """The original notes' parameters: s = (r_max - r_min) / (2**k - 1) and the float offset r_min.

    Unlike the zero-point form, the range is exactly [min(r), max(r)] (not widened to contain
    0), so the grid spends all 2**k levels on the data, but real 0 usually falls between two
    levels. torch.ao calls this scheme per_channel_affine_float_qparams. A constant tensor gets
    the floor s = 2**-23 (float32's eps) instead of 0, so q = 0 and the offset gives it back.

    Example: r = [-1.0, 0.5, 3.0], bits=8: s = 4 / 255 = 0.015686, offset = -1.0.
    Returns an OffsetParams, scale and offset in r's dtype, shaped as in the module docstring.
    """
    check_float_tensor(r, "r")
    check_bits(bits, SUPPORTED_BITS)
    dim, group_size = _check_granularity(r, dim, group_size)
    q_min, q_max = integer_range(bits, symmetric=False)
    r_min, r_max = _range(r.detach(), dim, group_size)
    scale = _floor_scale(_step(r_min, r_max, q_max - q_min))
    return OffsetParams(scale, r_min, bits, dim, group_size)


def offset_quantize(r: torch.Tensor, params: OffsetParams) -> torch.Tensor:
    """The notes' quantizer: q = clamp(round((r - r_min) / s), 0, 2**k - 1).

    Example: r = [-1.0, 0.0, 3.0], s = 4 / 255, r_min = -1.0: (r - r_min) / s =
    [0, 63.75, 255], q = [0, 64, 255] (uint8 for 8 bits, int32 otherwise).
    """
    check_float_tensor(r, "r")
    _check_params(params, OffsetParams)
    _check_fits(r, params.scale, params.dim, params.group_size, "r")
    q_min, q_max = integer_range(params.bits, symmetric=False)
    compute = torch.float64  # r - r_min can exceed the float32 range for extreme data
    r_view = _grouped(r.detach(), params.group_size).to(compute)
    q = torch.round((r_view - params.offset.to(compute)) / params.scale.to(compute))
    q = torch.clamp(q, q_min, q_max)
    return q.reshape(r.shape).to(_integer_dtype(params.bits, symmetric=False))


def offset_dequantize(q: torch.Tensor, params: OffsetParams) -> torch.Tensor:
    """The notes' dequantizer: r ~ s * q + r_min.

    Example: q = [0, 64, 255], s = 4 / 255, r_min = -1.0: [-1.0, 0.003922, 3.0]; real 0
    comes back as 0.0039 = s / 4 because it fell a quarter step from a grid level.
    """
    check_integer_tensor(q, "q")
    _check_params(params, OffsetParams)
    _check_fits(q, params.scale, params.dim, params.group_size, "q")
    q_view = _grouped(q, params.group_size).double()  # (..., n // g, g), as in offset_quantize
    r_hat = params.scale.double() * q_view + params.offset.double()  # float64: s * q < 2**1024
    return _saturate(r_hat, params.scale.dtype).reshape(q.shape)


def offset_fake_quantize(
    r: torch.Tensor,
    bits: int = 8,
    dim: int | None = None,
    group_size: int | None = None,
) -> torch.Tensor:
    """The notes' form there and back: r_hat = s * round((r - r_min) / s) + r_min.

    Example: offset_fake_quantize(tensor([-1.0, 0.0, 3.0])) == [-1.0, 0.003922, 3.0].
    """
    params = get_scale_and_offset(r, bits, dim, group_size)
    return offset_dequantize(offset_quantize(r, params), params)


@dataclass(frozen=True)
class FormResult:
    """What one form of the formula does to a tensor (see `compare_forms`)."""

    sqnr_db: float  # 10 log10(sum r**2 / sum (r - r_hat)**2)
    zero_comes_back_as: float  # r_hat where r == 0 (the same for every zero); nan if r has none
    zeros_kept: float  # fraction of the exact zeros of r that come back as exactly 0; nan if none


def compare_forms(r: torch.Tensor, bits: int = 8) -> dict[str, FormResult]:
    """The three per-tensor forms side by side: the notes' min-max, zero point, symmetric.

    Example: r = [-1.0, 0.0, 3.0] at 8 bits: the notes' form returns 0 as s / 4 = 0.0039
    (zeros_kept 0.0); the zero-point and symmetric forms return it as exactly 0 (zeros_kept 1.0).
    """
    r_hats = {
        "notes' min-max": offset_fake_quantize(r, bits),
        "zero point": fake_quantize(r, bits),
        "symmetric": fake_quantize(r, bits, symmetric=True),
    }
    zeros = r == 0
    nan = float("nan")
    return {
        name: FormResult(
            sqnr_db=quantization_error(r, r_hat).sqnr_db,
            zero_comes_back_as=r_hat[zeros][0].item() if zeros.any() else nan,
            zeros_kept=(r_hat[zeros] == 0).double().mean().item() if zeros.any() else nan,
        )
        for name, r_hat in r_hats.items()
    }
