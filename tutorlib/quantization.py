"""Linear quantization: real numbers to k-bit integers and back (Lesson 4).

A tensor r is mapped to integers by one affine formula, q = clamp(round(r / s) + z, q_min, q_max),
and read back as r ~ s * (q - z); everything else in this module chooses s (the scale) and z (the
zero point) per tensor, per channel or per group, and measures the error that rounding leaves.

The scale means nothing without its zero point, its bit width, its symmetry and its axis or
group, so they travel together in one frozen value, `QuantParams`, which
`get_scale_and_zero_point` returns and `linear_quantize` / `linear_dequantize` take whole; a
caller cannot mix a symmetric scale with an asymmetric integer range. `QuantizedTensor` holds
the integers with their parameters and gives the float tensor back with `.dequantize()`.

Three forms are implemented, each with the formula in its docstring:

- the original notes' min-max form with a float offset: ``get_scale_and_offset`` (an
  `OffsetParams`), ``offset_quantize``, ``offset_dequantize`` (r ~ s * q + r_min; real 0 is
  generally not exact);
- the affine zero-point form of Jacob et al. (2018): ``symmetric=False``, unsigned integers
  [0, 2**k - 1] and an integer zero point, so that real 0 is exactly representable;
- the symmetric form: ``symmetric=True``, z = 0, s = max|r| / q_max, signed integers in the
  restricted range [-(2**(k-1) - 1), 2**(k-1) - 1] (optimum-quanto's absmax / 127 for int8).

The error is measured by ``quantization_error`` and predicted from the step alone by
``predicted_sqnr_db`` (noise power s**2 / 12); ``sqnr_by_bits`` and ``db_per_bit`` tabulate the
6-dB-per-bit rule, ``clipping_sweep``, ``best_clipping`` and ``one_outlier`` the lesson's
experiments with outliers and clipping.

Shapes of scale and zero point (they broadcast against r, or against r's grouped view):

- per-tensor (``dim=None``, ``group_size=None``): 0-d tensors;
- per-channel (``dim=d``): ``dim`` is the axis that keeps its own scale; the result has r's
  shape with every other axis set to 1, e.g. (out_features, 1) for a weight
  (out_features, in_features) with ``dim=0``, or (tokens, 1) for activations (tokens, features);
- per-group (``group_size=g`` along the last axis): r is viewed as (..., n // g, g) and the
  scale has shape (..., n // g, 1).

Conventions: rounding is torch.round (halves to even); integers are uint8 (asymmetric) or int8
(symmetric) at 8 bits and int32 at every other width (2 to 7, and 16); a zero range (an all-zero
tensor) gets the scale floor 2**-23 (float32's eps, as torch.ao's observers) instead of 0 / 0.
Where r_max - r_min overflows (+-3e38 in float32, +-6e4 in float16) the step is computed in
float64; r / s and s * (q - z) are computed in float32 at least, whatever r's dtype, so that
every value comes back within half a step (optimum-quanto divides bfloat16 weights in bfloat16,
whose 8-bit significand rounds r / s before torch.round does: its integers then differ from
these by one on some weights, and are not always the nearest level).

Left out on purpose: calibration of activation ranges over many batches (Lesson 5 quantizes
activations per token on the fly), non-uniform grids, float8 formats, and stochastic rounding.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tutorlib._checks import (
    check_bool,
    check_float_tensor,
    check_int,
    check_integer_tensor,
    check_real,
    check_tensor,
)

__all__ = [
    "SUPPORTED_BITS",
    "QuantParams",
    "QuantizedTensor",
    "OffsetParams",
    "QuantizationError",
    "FormResult",
    "integer_range",
    "get_scale_and_zero_point",
    "linear_quantize",
    "linear_dequantize",
    "quantize_tensor",
    "fake_quantize",
    "get_scale_and_offset",
    "offset_quantize",
    "offset_dequantize",
    "offset_fake_quantize",
    "quantization_error",
    "compare_forms",
    "clipped_fake_quantize",
    "clipping_sweep",
    "predicted_sqnr_db",
    "sqnr_by_bits",
    "db_per_bit",
    "ClippingChoice",
    "best_clipping",
    "OutlierExperiment",
    "one_outlier",
    "pack_weights",
    "unpack_weights",
]

# Bit widths this module quantizes to: every width from 2 to 8, and 16.
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16)

# The smallest scale: float32's machine epsilon 2**-23, torch.ao's observers' default floor.
_SCALE_FLOOR = torch.finfo(torch.float32).eps


# ---------------------------------------------------------------- checks of user input


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")
    return bits


def _check_dim(r: torch.Tensor, dim: object) -> int | None:
    """Return dim as a non-negative axis, or None for per-tensor."""
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int) or not -r.ndim <= dim < r.ndim:
        raise ValueError(
            f"dim={dim!r} is out of range for a tensor with {r.ndim} dimensions "
            f"(shape {tuple(r.shape)}); use an axis in [-{r.ndim}, {r.ndim - 1}] or None"
        )
    return dim % r.ndim


def _check_group_size(r: torch.Tensor, group_size: object) -> int | None:
    if group_size is None:
        return None
    check_int(group_size, "group_size", minimum=1)
    if r.ndim == 0 or r.shape[-1] % group_size != 0:
        n = r.shape[-1] if r.ndim else 0
        raise ValueError(
            f"group_size={group_size} does not divide the last dimension ({n}) of a tensor "
            f"of shape {tuple(r.shape)}; choose a divisor of {n}"
        )
    return group_size


def _check_granularity(r: torch.Tensor, dim: object, group_size: object) -> tuple:
    """(dim, group_size) checked against r; at most one of them is given."""
    dim, group_size = _check_dim(r, dim), _check_group_size(r, group_size)
    if dim is not None and group_size is not None:
        raise ValueError("give either dim (per-channel) or group_size (per-group), not both")
    return dim, group_size


def _parameter_shape(shape: torch.Size, dim: int | None, group_size: int | None) -> tuple:
    """The shape of the scale for a tensor of `shape` (see the module docstring)."""
    if group_size is not None:
        return (*shape[:-1], shape[-1] // group_size, 1)
    if dim is not None:
        return tuple(n if axis == dim else 1 for axis, n in enumerate(shape))
    return ()


def _check_fits(r: torch.Tensor, scale: torch.Tensor, dim, group_size, name: str) -> None:
    """Raise ValueError unless the parameters were made for a tensor of r's shape."""
    if group_size is not None:
        _check_group_size(r, group_size)
    if dim is not None and not 0 <= dim < max(r.ndim, 1):
        raise ValueError(
            f"the parameters are per-channel along dim {dim}, but {name} is {r.ndim}-d"
        )
    expected = _parameter_shape(r.shape, dim, group_size)
    if tuple(scale.shape) != expected:
        raise ValueError(
            f"the parameters have scale shape {tuple(scale.shape)}, but {name} of shape "
            f"{tuple(r.shape)} needs {expected}; compute them from this tensor with "
            "get_scale_and_zero_point"
        )


# ---------------------------------------------------------------- the integer grid


def integer_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range (q_min, q_max) for a bit width.

    Asymmetric (affine, and the notes' form): unsigned [0, 2**k - 1], as in the notes and in
    Jacob et al. (2018). Symmetric: the restricted signed range [-(2**(k-1) - 1), 2**(k-1) - 1],
    which leaves -2**(k-1) unused so that the grid is symmetric about 0 (optimum-quanto's int8
    weights use absmax / 127 the same way).

    Example: integer_range(8, symmetric=False) == (0, 255);
    integer_range(4, symmetric=True) == (-7, 7).
    """
    _check_bits(bits)
    check_bool(symmetric, "symmetric")
    if symmetric:
        q_max = 2 ** (bits - 1) - 1
        return -q_max, q_max
    return 0, 2**bits - 1


def _integer_dtype(bits: int, symmetric: bool) -> torch.dtype:
    """int8 (symmetric) or uint8 (asymmetric) for 8 bits; int32 for every other width."""
    if bits == 8:
        return torch.int8 if symmetric else torch.uint8
    return torch.int32


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype r / s and s * (q - z) are computed in: float32 at least, whatever r's dtype.

    A 16-bit float cannot hold r / s precisely enough: float16 keeps 11 significant bits, so
    r / s near 128 is rounded to a multiple of 2**-3 before torch.round sees it, and a value
    just below a half-way point can round up (a float16 range [-4e4, 6e4] at 8 bits: 10000 / s =
    25.494 becomes 25.5 and rounds to 26, an error above half a step); bfloat16 (8 bits) is
    worse. float32 (24 bits) resolves r / s for every grid up to 16 bits.
    Example: float16 and bfloat16 -> float32; float32 -> float32; float64 -> float64.
    """
    return torch.promote_types(dtype, torch.float32)


@dataclass(frozen=True)
class QuantParams:
    """Everything needed to quantize and dequantize: one value, not loose pieces.

    scale: positive and finite, shaped as in the module docstring (0-d per tensor);
    zero_point: int32, the same shape, whole numbers in [q_min, q_max] (all 0 if symmetric);
        an int is accepted and used for every scale;
    bits, symmetric: the integer grid, integer_range(bits, symmetric) = (q_min, q_max);
    dim: the per-channel axis, or None; group_size: the per-group size, or None.

    Example: QuantParams(scale=torch.tensor(4 / 255), zero_point=torch.tensor(64), bits=8,
    symmetric=False) is the grid of r = [-1.0, 0.5, 3.0]: q_min, q_max = 0, 255.
    A QuantParams cannot be unpacked (`s, z = params` raises TypeError): pass it whole.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor | int
    bits: int
    symmetric: bool
    dim: int | None = None
    group_size: int | None = None

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        check_bool(self.symmetric, "symmetric")
        scale = check_float_tensor(self.scale, "scale")
        if not bool((scale > 0).all()):
            raise ValueError(
                "scale must be positive everywhere; a zero or negative step has no grid"
            )
        zero_point = self.zero_point
        if isinstance(zero_point, int) and not isinstance(zero_point, bool):
            zero_point = torch.full_like(scale, zero_point, dtype=torch.int32)  # one z for all
        zero_point = check_tensor(zero_point, "zero_point")
        if zero_point.is_complex() or zero_point.dtype == torch.bool:
            raise TypeError(f"zero_point must be an integer tensor, got {zero_point.dtype}")
        if zero_point.shape != scale.shape:
            raise ValueError(
                f"zero_point has shape {tuple(zero_point.shape)} but scale has "
                f"{tuple(scale.shape)}: give one zero point per scale"
            )
        q_min, q_max = integer_range(self.bits, self.symmetric)
        whole = bool((zero_point == torch.round(zero_point.double())).all())
        inside = bool(((zero_point >= q_min) & (zero_point <= q_max)).all())
        if not (whole and inside):
            raise ValueError(f"zero_point must hold whole numbers in [{q_min}, {q_max}]")
        if self.symmetric and bool((zero_point != 0).any()):
            raise ValueError("a symmetric grid has zero_point 0; use symmetric=False for others")
        if self.dim is not None and self.group_size is not None:
            raise ValueError("give either dim (per-channel) or group_size (per-group), not both")
        if self.dim is not None:
            check_int(self.dim, "dim", minimum=0)
        if self.group_size is not None:
            check_int(self.group_size, "group_size", minimum=1)
        object.__setattr__(self, "zero_point", zero_point.to(torch.int32))

    @property
    def q_min(self) -> int:
        """The smallest integer of the grid."""
        return integer_range(self.bits, self.symmetric)[0]

    @property
    def q_max(self) -> int:
        """The largest integer of the grid."""
        return integer_range(self.bits, self.symmetric)[1]

    @property
    def integer_dtype(self) -> torch.dtype:
        """The dtype of the integers: int8 / uint8 at 8 bits, int32 at other widths."""
        return _integer_dtype(self.bits, self.symmetric)

    def __iter__(self):
        raise TypeError(
            "QuantParams is one value: pass it whole, e.g. q = linear_quantize(r, params); "
            "read its parts as params.scale and params.zero_point"
        )


def _grouped(r: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View r as (..., n // g, g) so that each group is one row of the last axis."""
    if group_size is None:
        return r
    return r.reshape(*r.shape[:-1], r.shape[-1] // group_size, group_size)


def _range(
    r: torch.Tensor, dim: int | None, group_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_min, r_max) per tensor, per channel or per group, shaped to broadcast (see module doc).

    The three granularities are one reduction over different axes:
    per-tensor reduces every axis; per-channel reduces every axis but `dim` (keepdim, so the
    result broadcasts against r); per-group first views r as (..., n // g, g), then reduces
    only the last axis (keepdim), which leaves one value per group.
    """
    if group_size is not None:
        axes = (-1,)
        r = _grouped(r, group_size)  # (..., n // g, g)
    elif dim is not None:
        axes = tuple(a for a in range(r.ndim) if a != dim)
    else:
        return r.min(), r.max()  # 0-d
    if not axes:  # a 1-d tensor per channel: every element is its own channel
        return r, r
    return r.amin(dim=axes, keepdim=True), r.amax(dim=axes, keepdim=True)


def _floor_scale(scale: torch.Tensor) -> torch.Tensor:
    """Raise a zero scale (an all-zero input, or a constant one in the notes' form) to a floor.

    The floor is float32's machine epsilon, 2**-23, for every input dtype, as in torch.ao's
    observers (they compute in float32): r / s stays finite, q lands on the zero point, and
    dequantization gives the constant back. (bfloat16's own eps, 2**-7, would be far too coarse
    a floor for weights of size 1e-3.) Scales below 2**-23 (ranges below about 3e-5 at 8 bits)
    are raised too, which makes their grid coarser than it could be; weights are never that
    small in practice.
    """
    return torch.clamp(scale, min=_SCALE_FLOOR)


def _step(r_min: torch.Tensor, r_max: torch.Tensor, levels: int) -> torch.Tensor:
    """(r_max - r_min) / levels in r's dtype, as torch.ao's observers compute it; where the
    difference overflows (a float32 range of +-3e38, a float16 range of +-6e4) it is taken in
    float64 and divided there, so the step is always finite."""
    step = (r_max - r_min) / levels
    wide = ((r_max.double() - r_min.double()) / levels).to(r_min.dtype)
    return torch.where(torch.isfinite(step), step, wide)


# ---------------------------------------------------------------- the affine (zero-point) form


def get_scale_and_zero_point(
    r: torch.Tensor,
    bits: int = 8,
    symmetric: bool = False,
    dim: int | None = None,
    group_size: int | None = None,
) -> QuantParams:
    """Scale s and integer zero point z that map r's range onto the k-bit integers.

    Asymmetric (Jacob et al., 2018): the range is widened to contain 0,
    r_min = min(min(r), 0), r_max = max(max(r), 0), then
        s = (r_max - r_min) / (q_max - q_min),   z = q_min - round(r_min / s)
    with q in [0, 2**k - 1]; z is an integer in that range, so real 0 maps to q = z exactly.
    Symmetric: s = max|r| / q_max and z = 0, with q in [-(2**(k-1) - 1), 2**(k-1) - 1].
    A zero range (only an all-zero tensor, since the range contains 0) gets the floor
    s = torch.finfo(torch.float32).eps = 2**-23, like torch.ao's observers, instead of 0 / 0.

    `dim` is the axis that keeps its own scale (per-channel); `group_size` splits the last axis
    into groups of that many values (per-group). Shapes are described in the module docstring.

    Example: r = [-1.0, 0.5, 3.0], bits=8, asymmetric: s = 4 / 255 = 0.015686,
    z = 0 - round(-1.0 / 0.015686) = round(63.75) = 64. Symmetric: s = 3 / 127 = 0.023622, z = 0.

    Returns a QuantParams: scale in r's dtype, zero_point int32, both of the same shape.
    """
    check_float_tensor(r, "r")
    _check_bits(bits)
    check_bool(symmetric, "symmetric")
    dim, group_size = _check_granularity(r, dim, group_size)
    q_min, q_max = integer_range(bits, symmetric)
    r_min, r_max = _range(r.detach(), dim, group_size)
    if symmetric:
        abs_max = torch.maximum(r_min.abs(), r_max.abs())
        scale = _floor_scale(abs_max / q_max)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        r_min = torch.clamp(r_min, max=0.0)  # widen the range to contain 0
        r_max = torch.clamp(r_max, min=0.0)
        scale = _floor_scale(_step(r_min, r_max, q_max - q_min))
        compute = _compute_dtype(r.dtype)
        zero_point = q_min - torch.round(r_min.to(compute) / scale.to(compute))
        zero_point = torch.clamp(zero_point, q_min, q_max).to(torch.int32)
    return QuantParams(scale, zero_point, bits, symmetric, dim, group_size)


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

    Example: q = [0, 96, 255], s = 4 / 255, z = 64: s * [-64, 32, 191] = [-1.0039, 0.5020, 2.9961].
    """
    check_integer_tensor(q, "q")
    _check_params(params, QuantParams)
    _check_fits(q, params.scale, params.dim, params.group_size, "q")
    compute = _compute_dtype(params.scale.dtype)
    q_view = _grouped(q, params.group_size).to(compute)  # (..., n // g, g), as in linear_quantize
    r_hat = params.scale.to(compute) * (q_view - params.zero_point)
    return _saturate(r_hat, params.scale.dtype).reshape(q.shape)


def _saturate(r_hat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """r_hat in `dtype`, a level beyond its range set to the largest finite value.

    A coarse grid can put its top level past the dtype's maximum (2 bits over a float16 range
    [-4e4, 6e4]: s = 33344, level 2 * s = 66688 > 65504); the data lie inside the range, so
    65504 is nearer to every value that rounds to that level than inf would be.
    """
    finfo = torch.finfo(dtype)
    return torch.clamp(r_hat, finfo.min, finfo.max).to(dtype)


def _check_params(params: object, expected: type) -> None:
    if not isinstance(params, expected):
        how = "get_scale_and_zero_point" if expected is QuantParams else "get_scale_and_offset"
        raise TypeError(
            f"params must be a {expected.__name__} (from {how}), got {type(params).__name__}"
        )


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

    def dequantize(self) -> torch.Tensor:
        """The float tensor these integers stand for, s * (q - z)."""
        return linear_dequantize(self.q, self.params)


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


# ---------------------------------------------------------------- the notes' min-max form


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
        _check_bits(self.bits)
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
    _check_bits(bits)
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


# ---------------------------------------------------------------- measuring the error


@dataclass(frozen=True)
class QuantizationError:
    """Mean squared error and signal-to-quantization-noise ratio of r_hat against r.

    sqnr_db = 10 * log10(sum(r**2) / sum((r - r_hat)**2)); each extra bit of a uniform grid
    adds about 6.02 dB (Analog Devices MT-001), since the step halves and noise power quarters.
    """

    mse: float
    sqnr_db: float


def quantization_error(r: torch.Tensor, r_hat: torch.Tensor) -> QuantizationError:
    """MSE = mean((r - r_hat)**2) and SQNR in dB, computed in float64.

    SQNR is +inf when r_hat == r exactly. Both are computed on r / m and r_hat / m with
    m = max(|r|, |r_hat|), so that squares of values near float64's limit (1e200) do not
    overflow; the MSE is scaled back by m**2 (and is inf only if the true MSE exceeds float64).
    Example: r = [1.0, -1.0], r_hat = [0.9, -1.1]: MSE = 0.01,
    SQNR = 10 * log10(2 / 0.02) = 20.0 dB.
    """
    check_float_tensor(r, "r")
    check_float_tensor(r_hat, "r_hat")
    if r.shape != r_hat.shape:
        raise ValueError(f"r and r_hat must have the same shape: {r.shape} vs {r_hat.shape}")
    r64, r_hat64 = r.detach().double(), r_hat.detach().double()
    m = max(r64.abs().max().item(), r_hat64.abs().max().item()) or 1.0  # 1.0 for all zeros
    noise_power = (((r64 - r_hat64) / m) ** 2).sum().item()  # in units of m**2
    signal_power = ((r64 / m) ** 2).sum().item()
    mse = noise_power / r.numel() * m * m if noise_power else 0.0
    if noise_power == 0:
        sqnr_db = float("inf")
    elif signal_power == 0:
        sqnr_db = float("-inf")  # all signal is noise: r is all zeros, r_hat is not
    else:
        sqnr_db = 10 * math.log10(signal_power / noise_power)
    return QuantizationError(mse=mse, sqnr_db=sqnr_db)


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


def clipped_fake_quantize(r: torch.Tensor, threshold: float, bits: int = 8) -> torch.Tensor:
    """Symmetric per-tensor quantization with the range clipped at +-threshold, there and back.

    s = threshold / q_max; linear_quantize's clamp does the clipping: every |r| > threshold
    comes back as +-threshold. Example, 8 bits: r = [0.01, 0.5, 3.0], threshold 1.27:
    s = 0.01, q = [1, 50, 127], r_hat = [0.01, 0.5, 1.27].
    """
    check_float_tensor(r, "r")
    threshold = check_real(threshold, "threshold", 0.0, strict_minimum=True)
    q_max = integer_range(bits, symmetric=True)[1]
    scale = _floor_scale(torch.tensor(threshold / q_max, dtype=torch.float64).to(r.dtype))
    if not torch.isfinite(scale):
        raise ValueError(f"threshold {threshold} is too large for {r.dtype}; clip at a smaller one")
    params = QuantParams(scale, torch.tensor(0), bits, symmetric=True)
    return linear_dequantize(linear_quantize(r, params), params)


def clipping_sweep(
    r: torch.Tensor, bits: int = 8, n_thresholds: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """SQNR of symmetric per-tensor quantization when the range is clipped at each threshold c.

    For c in absmax * [1/n, 2/n, ..., 1]: s = c / q_max, and linear_quantize's clamp sends every
    |r| > c to +-q_max (clipping); the rest is rounded on a finer grid. Small c clips too much,
    c = absmax rounds everything coarsely; the best c lies between when a few values are far
    out (Nagel et al., 2021, section 3.4 on range setting).

    Example: 4096 standard normal values (seed 0) plus one value 50 at 4 bits: SQNR 2.1 dB at
    c = absmax = 50, best 4.8 dB at c = 7; the clipped outlier's own error (43) then dominates.
    Returns (thresholds (n,), sqnr_db (n,)), both float64. The SQNR is +inf where a threshold
    reproduces r exactly (a constant r at c = absmax), as in `quantization_error`; an all-zero r
    has no range to clip: every threshold is 0 and every SQNR +inf (r comes back exactly).
    """
    check_float_tensor(r, "r")
    _check_bits(bits)
    check_int(n_thresholds, "n_thresholds", minimum=1)
    abs_max = r.detach().abs().max().double()
    if abs_max == 0:  # nothing to clip, and zeros quantize exactly
        return torch.zeros(n_thresholds, dtype=torch.float64), torch.full(
            (n_thresholds,), math.inf, dtype=torch.float64
        )
    thresholds = abs_max * torch.arange(1, n_thresholds + 1, dtype=torch.float64) / n_thresholds
    sqnr_db = [
        quantization_error(r, clipped_fake_quantize(r, c.item(), bits)).sqnr_db for c in thresholds
    ]
    return thresholds, torch.tensor(sqnr_db, dtype=torch.float64)


# ---------------------------------------------------------------- predicting the error


def predicted_sqnr_db(r: torch.Tensor, params: QuantParams) -> float:
    """The SQNR that uniform rounding noise predicts: 10 log10(mean(r**2) / mean(s**2 / 12)).

    Rounding to a grid of step s leaves an error spread evenly over [-s/2, s/2], whose mean
    square is s**2 / 12 (Analog Devices MT-001); with one s per channel or group, the noise is
    the mean of s**2 / 12 over all values. The model assumes no clipping and values that fall
    anywhere between two levels, which holds once the step is small next to the data's spread.

    Example: r = [-1.0, 0.5, 3.0], 8 bits, asymmetric: s = 4 / 255, mean(r**2) = 10.25 / 3,
    12 * 3.4167 / (4 / 255)**2 = 166,627, so 52.22 dB. -inf for an all-zero r (no signal).
    """
    check_float_tensor(r, "r")
    _check_params(params, QuantParams)
    _check_fits(r, params.scale, params.dim, params.group_size, "r")
    r64 = _grouped(r.detach(), params.group_size).double()  # (..., n // g, g) per group
    step_squared = (params.scale.double() ** 2).expand_as(r64)  # each value's s**2
    signal_power = (r64**2).mean().item()
    noise_power = step_squared.mean().item() / 12
    return 10 * math.log10(signal_power / noise_power) if signal_power else -math.inf


def _check_bit_widths(bits: object) -> list[int]:
    if isinstance(bits, str | bytes) or not hasattr(bits, "__iter__"):
        raise TypeError(f"bits must be a sequence of bit widths such as [2, 4, 8], got {bits!r}")
    widths = list(bits)
    if not widths:
        raise ValueError("bits is empty: give at least one bit width, e.g. [2, 4, 8]")
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int) or width not in SUPPORTED_BITS:
            raise ValueError(f"every entry of bits must be one of {SUPPORTED_BITS}, got {width!r}")
    return widths


def sqnr_by_bits(
    r: torch.Tensor,
    bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    group_size: int = 64,
    predicted: bool = False,
) -> pd.DataFrame:
    """SQNR (dB) of zero-point quantization of r at each bit width, for three granularities.

    Columns: "per-tensor" (one scale), "per-channel" (one scale per index of dim 0, e.g. per
    output row of a weight) and "per-group (g)" (one scale per g consecutive values of the last
    axis). Measured: quantization_error(r, fake_quantize(r, k, ...)).sqnr_db; with
    predicted=True, predicted_sqnr_db from the step alone, 10 log10(mean r**2 * 12 / s**2).

    Example: r = [[-1.0, 0.5, 3.0, 2.0], [0.25, -0.75, 1.5, -2.0]], bits [8], group_size 2:
    per-tensor 49.44 dB, per-channel 51.22 dB, per-group (2) 58.11 dB.
    Returns a DataFrame indexed by bits.
    """
    check_float_tensor(r, "r")
    if r.ndim == 0:
        raise ValueError("r must have at least one dimension (channels and groups need an axis)")
    widths = _check_bit_widths(bits)
    _check_group_size(r, check_int(group_size, "group_size", minimum=1))
    check_bool(predicted, "predicted")
    granularities = {"per-tensor": {}, "per-channel": {"dim": 0}}
    granularities[f"per-group ({group_size})"] = {"group_size": group_size}

    def sqnr(k: int, kwargs: dict) -> float:
        if predicted:
            return predicted_sqnr_db(r, get_scale_and_zero_point(r, k, **kwargs))
        return quantization_error(r, fake_quantize(r, k, **kwargs)).sqnr_db

    table = {name: [sqnr(k, kw) for k in widths] for name, kw in granularities.items()}
    return pd.DataFrame(table, index=pd.Index(widths, name="bits"))


def db_per_bit(table: pd.DataFrame, min_bits: int = 4) -> pd.Series:
    """Slope of each column of an SQNR table (see `sqnr_by_bits`), in dB per bit.

    The least-squares line through (k, SQNR_k) for every k >= min_bits (below about 4 bits the
    grid is too coarse for the uniform-noise picture). The rule 20 log10(2) = 6.02 dB per bit
    holds if one more bit halves s; with s = range / (2**k - 1) it shrinks by slightly more,
    (2**k - 1) / (2**(k+1) - 1), so a range-set grid gains 6.15 dB per bit from 4 to 8 bits.
    Example: SQNR [10.0, 16.0, 22.0] at bits [4, 5, 6] -> 6.0 dB per bit.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame from sqnr_by_bits, got {table!r}")
    check_int(min_bits, "min_bits", minimum=1)
    rows = table[table.index >= min_bits].astype(float)
    if len(rows) < 2 or not np.isfinite(rows.to_numpy()).all():
        raise ValueError(
            f"table needs finite SQNRs at two or more bit widths >= min_bits={min_bits}; "
            f"it has bit widths {list(table.index)}"
        )
    bits = rows.index.to_numpy(dtype=float)
    return rows.apply(lambda column: np.polyfit(bits, column.to_numpy(), 1)[0]).rename("dB per bit")


@dataclass(frozen=True)
class ClippingChoice:
    """The best clipping threshold of a sweep (see `best_clipping`)."""

    threshold: float  # c, the clipping range +-c
    fraction_of_max: float  # c / max|r|
    sqnr_db: float  # SQNR with the range clipped at c
    sqnr_db_unclipped: float  # SQNR with c = max|r| (no clipping)
    n_clipped: int  # values with |r| > c, which come back as +-c


def best_clipping(r: torch.Tensor, bits: int = 8, n_thresholds: int = 100) -> ClippingChoice:
    """The threshold c of `clipping_sweep` with the highest SQNR, and what it costs.

    Example: 4096 standard normal values (seed 0) plus one value 50 at 4 bits: c = 7.0, 14% of
    the maximum, SQNR 4.8 dB against 2.1 dB unclipped; 1 value clipped (the outlier).
    """
    thresholds, sqnr_db = clipping_sweep(r, bits, n_thresholds)
    best = int(torch.argmax(sqnr_db))  # the first of equal maxima
    threshold, abs_max = thresholds[best].item(), thresholds[-1].item()
    return ClippingChoice(
        threshold=threshold,
        fraction_of_max=threshold / abs_max if abs_max else 1.0,  # all zeros: nothing clipped
        sqnr_db=sqnr_db[best].item(),
        sqnr_db_unclipped=sqnr_db[-1].item(),
        n_clipped=int((r.detach().abs().double() > threshold).sum()),
    )


@dataclass(frozen=True)
class OutlierExperiment:
    """What one outlier does to the others' SQNR (see `one_outlier`)."""

    sqnr_others_db: dict[str, float]  # SQNR of every value but the outlier, by treatment
    clipping: ClippingChoice  # the best clipping of the tensor with the outlier
    outlier_kept: float  # r_hat / r at the outlier after that clipping (1.0: kept whole)


def one_outlier(
    r: torch.Tensor, factor: float = 10.0, bits: int = 8, n_thresholds: int = 100
) -> OutlierExperiment:
    """Set r's first value to factor * max|r| and measure the other values' SQNR four ways.

    Symmetric quantization of: r itself ("no outlier, per-tensor"); r with the outlier, one
    scale ("outlier, per-tensor"), one scale per index of dim 0 ("outlier, per-channel"), and
    one scale clipped at the best threshold of `clipping_sweep` ("outlier, per-tensor,
    clipped"). The SQNRs leave the outlier out: they measure what it does to everyone else.
    Example: with a 384 x 384 weight at 8 bits and factor 10, the per-tensor SQNR of the
    others drops by about 20 dB (a ten times larger step), and per-channel gets it back.
    """
    check_float_tensor(r, "r")
    factor = check_real(factor, "factor", 1.0)
    if r.ndim == 0 or r.numel() < 2:
        raise ValueError(f"r needs at least two values (one becomes the outlier), got {r.shape}")
    with_outlier = r.detach().clone()
    with_outlier.view(-1)[0] = factor * r.detach().abs().max()
    if not torch.isfinite(with_outlier.view(-1)[0]):
        raise ValueError(
            f"factor * max|r| overflows {r.dtype}: use a smaller factor or cast r to float64"
        )
    others = torch.ones_like(r, dtype=torch.bool)
    others.view(-1)[0] = False  # every value but the outlier
    clipping = best_clipping(with_outlier, bits, n_thresholds)
    clipped = (
        clipped_fake_quantize(with_outlier, clipping.threshold, bits)
        if clipping.threshold
        else with_outlier
    )
    r_hats = {
        "no outlier, per-tensor": (r.detach(), fake_quantize(r.detach(), bits, symmetric=True)),
        "outlier, per-tensor": (with_outlier, fake_quantize(with_outlier, bits, symmetric=True)),
        "outlier, per-channel": (with_outlier, fake_quantize(with_outlier, bits, True, dim=0)),
        "outlier, per-tensor, clipped": (with_outlier, clipped),
    }
    sqnr_others_db = {
        name: quantization_error(values[others], r_hat[others]).sqnr_db
        for name, (values, r_hat) in r_hats.items()
    }
    outlier = with_outlier.view(-1)[0].item()
    kept = clipped.reshape(-1)[0].item() / outlier if outlier else 1.0
    return OutlierExperiment(sqnr_others_db, clipping, kept)


# ---------------------------------------------------------------- 2-bit and 4-bit packing


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
