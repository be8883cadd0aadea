"""Lesson 6: round-to-nearest weight quantization, per output channel or per group.

Each group of `group_size` input weights of a row gets its own asymmetric grid (scale and zero
point from its min and max), stored as float16 scales and uint8 zero points, as 4-bit formats
keep them. Left out on purpose: searched grids (clipping per group) and k-quant super-blocks.
"""

import torch

from tutorlib._checks import check_bits, check_float_tensor, check_group_size
from tutorlib.quant.affine import QuantizedTensor, linear_quantize
from tutorlib.quant.params import QuantParams, get_scale_and_zero_point

__all__ = ["GPTQ_BITS", "rtn_quantize"]


# Weights beyond this would need scales beyond float16's largest value, 65504 (at 2 bits,
# s = range / 3): refused rather than stored as inf.
_LARGEST_WEIGHT = 30_000


GPTQ_BITS = (2, 3, 4, 5, 6, 7, 8)  # the grids of this lesson: 2 to 8 bits


def _check_weight(weight: object, name: str = "weight") -> torch.Tensor:
    weight = check_float_tensor(weight, name)
    if weight.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (out_features, in_features) like nn.Linear's, "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.abs().max().item() > _LARGEST_WEIGHT:
        raise ValueError(
            f"{name} has values beyond {_LARGEST_WEIGHT:,}: their scales would overflow the "
            "float16 the 4-bit format stores; such weights are not a neural network's"
        )
    return weight.detach().float()  # (out_features, in_features)


def _storable(params: QuantParams) -> QuantParams:
    """The same grid with each scale rounded to the nearest float16 value, widened back to float32.

    The 4-bit layer stores scales in float16; quantizing with the rounded scale from the start
    means that storing it loses nothing (the layer gives exactly QuantizedTensor.dequantize()).
    Rounding a normal float16 moves a scale by at most 2**-11 of itself; below float16's
    smallest normal number (2**-14, a group range below (2**bits - 1) * 2**-14, e.g. 9.2e-4 at
    4 bits) the relative error grows without bound, so such grids are refused.
    """
    tiny = torch.finfo(torch.float16).tiny  # 2**-14: below it float16 is subnormal
    if bool((params.scale < tiny).any()):
        smallest = params.scale.min().item()
        raise ValueError(
            f"a group's scale ({smallest:.3g}) is below float16's smallest normal number "
            f"({tiny:.3g}): stored in float16 it would lose so many digits that the grid no "
            f"longer covers the group (weights up to half a step or more from their level). "
            f"The weight has a group whose range is below {tiny * (2**params.bits - 1):.3g}: "
            "use a larger group_size, or keep this layer in float"
        )
    scale = params.scale.half().float()
    return QuantParams(
        scale, params.zero_point, params.bits, params.symmetric, params.dim, params.group_size
    )


def rtn_quantize(
    weight: torch.Tensor, bits: int = 4, group_size: int | None = 128
) -> QuantizedTensor:
    """Round-to-nearest on an asymmetric per-group grid (group_size=None: per output channel).

    For each row o and group of g consecutive inputs: r_min = min(min(w), 0),
    r_max = max(max(w), 0), s = (r_max - r_min) / (2**k - 1) (rounded to float16),
    z = -round(r_min / s), q = clamp(round(w / s) + z, 0, 2**k - 1).
    Example: the row group [-0.3, 0.1, 0.15, 0.9] at 2 bits: s = 1.2 / 3 = 0.4 (float16:
    0.39990234), z = 1, q = [0, 1, 1, 3], w_hat = s * (q - z) = [-0.4, 0.0, 0.0, 0.8].
    Returns a QuantizedTensor with q int32 (uint8 at 8 bits) (out, in) and scale (out, n_g, 1).
    """
    weight = _check_weight(weight)
    bits = check_bits(bits, GPTQ_BITS)
    group_size = check_group_size(group_size, weight.shape[1]) or weight.shape[1]  # None: a row
    params = _storable(get_scale_and_zero_point(weight, bits, group_size=group_size))
    return QuantizedTensor(linear_quantize(weight, params), params)
