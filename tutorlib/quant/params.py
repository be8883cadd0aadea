"""Lesson 4: the scale and zero point of linear quantization, as one value.

integer_range gives a bit width's integers; get_scale_and_zero_point picks s and z from a
tensor's range, per tensor, per channel or per group, and returns them with their bit width,
symmetry and axis in one frozen QuantParams, so that no caller can mix a symmetric scale with an
asymmetric range. Shapes: per tensor 0-d; per channel r's shape with every other axis 1; per
group (..., n // g, 1) against r viewed as (..., n // g, g).
Left out on purpose: calibration over many batches, non-uniform grids and float8.
"""

from dataclasses import dataclass

import torch

from tutorlib._checks import (
    check_bits,
    check_bool,
    check_float_tensor,
    check_group_size,
    check_int,
    check_tensor,
)

__all__ = [
    "SUPPORTED_BITS",
    "SCALE_FLOOR",
    "integer_range",
    "QuantParams",
    "get_scale_and_zero_point",
]


# Bit widths this module quantizes to: every width from 2 to 8, and 16.
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 16)


# The smallest scale: float32's machine epsilon 2**-23, torch.ao's observers' default floor, so
# that a block of zeros does not divide 0 by 0. Every scale tutorlib computes is floored here.
SCALE_FLOOR = torch.finfo(torch.float32).eps


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


def _check_granularity(r: torch.Tensor, dim: object, group_size: object) -> tuple:
    """(dim, group_size) checked against r; at most one of them is given."""
    dim, group_size = _check_dim(r, dim), check_group_size(group_size, r.shape[-1] if r.ndim else 0)
    if dim is not None and group_size is not None:
        raise ValueError("give either dim (per-channel) or group_size (per-group), not both")
    return dim, group_size


def integer_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range (q_min, q_max) for a bit width.

    Asymmetric (affine, and the notes' form): unsigned [0, 2**k - 1], as in the notes and in
    Jacob et al. (2018). Symmetric: the restricted signed range [-(2**(k-1) - 1), 2**(k-1) - 1],
    which leaves -2**(k-1) unused so that the grid is symmetric about 0 (optimum-quanto's int8
    weights use absmax / 127 the same way).

    Example: integer_range(8, symmetric=False) == (0, 255);
    integer_range(4, symmetric=True) == (-7, 7).
    """
    check_bits(bits, SUPPORTED_BITS)
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
        check_bits(self.bits, SUPPORTED_BITS)
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
        # Its own copies: a caller who later edits the tensors it passed cannot change the grid.
        object.__setattr__(self, "scale", scale.detach().clone())
        object.__setattr__(self, "zero_point", zero_point.detach().to(torch.int32, copy=True))
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "dim", None if self.dim is None else int(self.dim))
        group_size = None if self.group_size is None else int(self.group_size)
        object.__setattr__(self, "group_size", group_size)

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
    return torch.clamp(scale, min=SCALE_FLOOR)


def _step(r_min: torch.Tensor, r_max: torch.Tensor, levels: int) -> torch.Tensor:
    """(r_max - r_min) / levels in r's dtype, as torch.ao's observers compute it; where the
    difference overflows (a float32 range of +-3e38, a float16 range of +-6e4) it is taken in
    float64 and divided there, so the step is always finite."""
    step = (r_max - r_min) / levels
    wide = ((r_max.double() - r_min.double()) / levels).to(r_min.dtype)
    return torch.where(torch.isfinite(step), step, wide)


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
    check_bits(bits, SUPPORTED_BITS)
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
        check_group_size(group_size, r.shape[-1] if r.ndim else 0)
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


def _grouped(r: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View r as (..., n // g, g) so that each group is one row of the last axis."""
    if group_size is None:
        return r
    return r.reshape(*r.shape[:-1], r.shape[-1] // group_size, group_size)


def _check_params(params: object, expected: type) -> None:
    if not isinstance(params, expected):
        how = "get_scale_and_zero_point" if expected is QuantParams else "get_scale_and_offset"
        raise TypeError(
            f"params must be a {expected.__name__} (from {how}), got {type(params).__name__}"
        )
