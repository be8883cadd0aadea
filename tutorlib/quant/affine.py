"""Lesson 4: quantize and dequantize with the affine formula, q = clamp(round(r / s) + z).

linear_quantize and linear_dequantize apply a QuantParams (tutorlib.quant.params); a
QuantizedTensor keeps the integers with their parameters; fake_quantize is the round trip.
Rounding is torch.round (halves to even); r / s and s * (q - z) are computed in float32 at
least, whatever r's dtype, so every value comes back within half a step.
Left out on purpose: stochastic rounding and integer-only requantization.
"""

import dataclasses
from dataclasses import dataclass

import torch

from tutorlib._checks import check_float_tensor, check_int, check_integer_tensor
from tutorlib.quant.params import (
    QuantParams,
    _check_fits,
    _check_params,
    _compute_dtype,
    _grouped,
    get_scale_and_zero_point,
)

__all__ = [
    "linear_quantize",
    "linear_dequantize",
    "QuantizedTensor",
    "quantize_tensor",
    "fake_quantize",
]


def linear_quantize(r: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """Quantize: q = clamp(round(r / s) + z, q_min, q_max), with s, z, q_min, q_max from params.

    round is torch.round, which rounds halves to even (2.5 -> 2, 3.5 -> 4). The result is
    params.integer_dtype: int8 (symmetric) or uint8 (asymmetric) at 8 bits, int32 otherwise.

    Example: r = [-1.0, 0.5, 3.0], s = 4 / 255, z = 64: r / s = [-63.75, 31.875, 191.25],
    rounded [-64, 32, 191], plus z: q = [0, 96, 255] (uint8).
    """
    check_float_tensor(r, "r")
    _check_params(params, QuantParams)
    _check_fits(r, params.scale, params.dim, params.group_size, "r")
    compute = _compute_dtype(r.dtype)
    r_view = _grouped(r.detach(), params.group_size).to(compute)  # scale (..., n // g, 1) fits
    q = torch.round(r_view / params.scale.to(compute)) + params.zero_point
    q = torch.clamp(q, params.q_min, params.q_max)
    return q.reshape(r.shape).to(params.integer_dtype)


def linear_dequantize(q: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """Dequantize: r ~ s * (q - z), in the scale's dtype.

    q must lie on the grid, in [q_min, q_max] (an integer outside it was not made by this grid:
    q = 300 on an 8-bit grid is refused, not read as 300 or wrapped to 44).
    Example: q = [0, 96, 255], s = 4 / 255, z = 64: s * [-64, 32, 191] = [-1.0039, 0.5020, 2.9961].
    """
    check_integer_tensor(q, "q")
    _check_params(params, QuantParams)
    _check_fits(q, params.scale, params.dim, params.group_size, "q")
    _check_on_grid(q, params)
    compute = _compute_dtype(params.scale.dtype)
    q_view = _grouped(q, params.group_size).to(compute)  # (..., n // g, g), as in linear_quantize
    r_hat = params.scale.to(compute) * (q_view - params.zero_point)
    return _saturate(r_hat, params.scale.dtype).reshape(q.shape)


def _check_on_grid(q: torch.Tensor, params: QuantParams) -> None:
    """Refuse integers outside [q_min, q_max]: they cannot come from this grid."""
    if q.numel() and (int(q.min()) < params.q_min or int(q.max()) > params.q_max):
        raise ValueError(
            f"q must lie in [{params.q_min}, {params.q_max}], the {params.bits}-bit "
            f"{'symmetric' if params.symmetric else 'asymmetric'} grid of params; got values in "
            f"[{int(q.min())}, {int(q.max())}]"
        )


def _saturate(r_hat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """r_hat in `dtype`, a level beyond its range set to the largest finite value.

    A coarse grid can put its top level past the dtype's maximum (2 bits over a float16 range
    [-4e4, 6e4]: s = 33344, level 2 * s = 66688 > 65504); the data lie inside the range, so
    65504 is nearer to every value that rounds to that level than inf would be.
    """
    finfo = torch.finfo(dtype)
    return torch.clamp(r_hat, finfo.min, finfo.max).to(dtype)


@dataclass(frozen=True)
class QuantizedTensor:
    """Integers q and the QuantParams that read them back: r ~ s * (q - z).

    Example: quantize_tensor(torch.tensor([-1.0, 0.5, 3.0])) holds q = [0, 96, 255] (uint8)
    and params with s = 4 / 255, z = 64; .dequantize() gives [-1.0039, 0.5020, 2.9961].
    """

    q: torch.Tensor
    params: QuantParams

    def __post_init__(self) -> None:
        check_integer_tensor(self.q, "q")
        _check_params(self.params, QuantParams)
        _check_fits(self.q, self.params.scale, self.params.dim, self.params.group_size, "q")
        _check_on_grid(self.q, self.params)
        object.__setattr__(self, "q", self.q.detach().clone())  # its own integers

    def dequantize(self) -> torch.Tensor:
        """The float tensor these integers stand for, s * (q - z)."""
        return linear_dequantize(self.q, self.params)

    def rows(self, start: int, end: int) -> "QuantizedTensor":
        """Rows start .. end - 1 of a 2-D tensor quantized per row (dim=0) or per group, with
        their own scales and zero points. Example: GPTQ on a block's stacked query, key and
        value (960, 576) gives the key back as .rows(576, 768)."""
        per_row = self.params.dim == 0 or self.params.group_size is not None
        if self.q.ndim != 2 or not per_row:
            raise ValueError("rows() needs a 2-D tensor quantized per row (dim=0) or per group")
        start, end = check_int(start, "start", minimum=0), check_int(end, "end", minimum=1)
        if not start < end <= self.q.shape[0]:
            raise ValueError(f"need 0 <= start < end <= {self.q.shape[0]}, got {start}, {end}")
        params = self.params  # scale and zero point: (out, 1) or (out, n_groups, 1)
        kept = dataclasses.replace(
            params, scale=params.scale[start:end], zero_point=params.zero_point[start:end]
        )
        return QuantizedTensor(self.q[start:end], kept)


def quantize_tensor(
    r: torch.Tensor,
    bits: int = 8,
    symmetric: bool = False,
    dim: int | None = None,
    group_size: int | None = None,
) -> QuantizedTensor:
    """Parameters from r's range, then the integers: the two steps of Lesson 4 in one call.

    Example: quantize_tensor(torch.tensor([-1.0, 0.5, 3.0])).q == [0, 96, 255] (uint8).
    """
    params = get_scale_and_zero_point(r, bits, symmetric, dim, group_size)
    return QuantizedTensor(linear_quantize(r, params), params)


def fake_quantize(
    r: torch.Tensor,
    bits: int = 8,
    symmetric: bool = False,
    dim: int | None = None,
    group_size: int | None = None,
) -> torch.Tensor:
    """Quantize r and dequantize it again: r_hat = s * (clamp(round(r / s) + z, ...) - z).

    For measuring what quantization does to a tensor.
    Example: fake_quantize(tensor([-1.0, 0.5, 3.0])) == [-1.0039, 0.5020, 2.9961].
    """
    return quantize_tensor(r, bits, symmetric, dim, group_size).dequantize()
