"""Lesson 7: round-to-nearest per block of weights, with float16 parameters, as GGUF files store it.

llama.cpp's simple formats quantize each block of 32 consecutive weights of a row on its own
grid and store the grid's parameters in float16: Q4_1 in Lesson 4's offset form, w ~ d * q + m
(d the step, m the block's minimum, q in [0, 2**k - 1]); Q4_0 and Q8_0 in the symmetric form,
w ~ d * q. `offset_rtn_quantize` and `symmetric_rtn_quantize` compute these grids with the
course's own formulas (tutorlib.quant.offset, tutorlib.quant.params) and round the parameters to
float16 before quantizing, so that storing them loses nothing.

Left out on purpose: llama.cpp's searched grids (its k-quants and the importance-matrix
variants choose d and m to minimise a weighted error), and writing the blocks' bytes.
"""

from dataclasses import dataclass

import torch

from tutorlib._checks import check_bits, check_group_size, check_integer_tensor
from tutorlib.quant.affine import QuantizedTensor, linear_quantize
from tutorlib.quant.offset import (
    OffsetParams,
    get_scale_and_offset,
    offset_dequantize,
    offset_quantize,
)
from tutorlib.quant.params import QuantParams, _check_fits, _check_params, get_scale_and_zero_point
from tutorlib.quant.rtn import GPTQ_BITS, _check_weight

__all__ = ["BLOCK_BITS", "OffsetQuantizedTensor", "offset_rtn_quantize", "symmetric_rtn_quantize"]

BLOCK_BITS = GPTQ_BITS  # 2 to 8 bits, as Lesson 6's quantizers


def _float16_values(parameter: torch.Tensor) -> torch.Tensor:
    """Each value rounded to the nearest float16, kept as float32 (exact: float16 fits)."""
    return parameter.half().float()


@dataclass(frozen=True)
class OffsetQuantizedTensor:
    """Integers q and the OffsetParams that read them back: w ~ s * q + r_min (Q4_1's form).

    Example: offset_rtn_quantize(torch.tensor([[-0.3, 0.1, 0.15, 0.9]]), 2, 4) holds
    q = [[0, 1, 1, 3]] and s = 0.39990234 (1.2 / 3 in float16), r_min = -0.30004883.
    """

    q: torch.Tensor
    params: OffsetParams

    def __post_init__(self) -> None:
        if check_integer_tensor(self.q, "q").ndim == 0:
            raise ValueError("q must hold the integers of a weight, (out, in), not one 0-d value")
        _check_params(self.params, OffsetParams)
        _check_fits(self.q, self.params.scale, self.params.dim, self.params.group_size, "q")
        q_max = 2**self.params.bits - 1
        if self.q.numel() and (int(self.q.min()) < 0 or int(self.q.max()) > q_max):
            raise ValueError(f"q must lie in [0, {q_max}], the {self.params.bits}-bit grid")
        object.__setattr__(self, "q", self.q.detach().clone())  # its own integers

    def dequantize(self) -> torch.Tensor:
        """The float weight these integers stand for, s * q + r_min, in float32."""
        return offset_dequantize(self.q, self.params)


def _check_block(weight: object, bits: object, group_size: object) -> tuple:
    weight = _check_weight(weight)  # (out_features, in_features) float32
    bits = check_bits(bits, BLOCK_BITS)
    if group_size is None:
        raise ValueError("group_size must be an int such as 32 (GGUF's blocks are 32 weights)")
    return weight, bits, check_group_size(group_size, weight.shape[1])


def offset_rtn_quantize(
    weight: torch.Tensor, bits: int = 4, group_size: int = 32
) -> OffsetQuantizedTensor:
    """GGUF Q4_1's grid: per block of g weights of a row, s = (max - min) / (2**k - 1) and the
    offset r_min = min, both rounded to float16; q = clamp(round((w - r_min) / s), 0, 2**k - 1).

    The range is the block's own [min, max] (Lesson 4's offset form, not widened to contain 0),
    so every level is spent on the data. At 4 bits and g = 32 this is how llama.cpp's reference
    quantizer fills a Q4_1 block (it rounds half up where torch rounds half to even: a tie
    needs a weight exactly between two levels). Bits per weight: k + (16 + 16) / g, 5.0 for Q4_1.
    Example: the block [-0.3, 0.1, 0.15, 0.9] at 2 bits: s = 1.2 / 3 = 0.4 (float16:
    0.39990234), r_min = -0.3 (float16: -0.30004883), q = [0, 1, 1, 3],
    w_hat = [-0.3000, 0.0999, 0.0999, 0.8997].
    """
    weight, bits, group_size = _check_block(weight, bits, group_size)
    params = get_scale_and_offset(weight, bits, group_size=group_size)
    params = OffsetParams(
        _float16_values(params.scale), _float16_values(params.offset), bits, group_size=group_size
    )
    return OffsetQuantizedTensor(offset_quantize(weight, params), params)


def symmetric_rtn_quantize(
    weight: torch.Tensor, bits: int = 4, group_size: int = 32
) -> QuantizedTensor:
    """The symmetric form per block (GGUF's Q8_0, and Q4_0 but for its 16th level):
    s = max|w| / (2**(k-1) - 1) rounded to float16, q = clamp(round(w / s), -q_max, q_max).

    No offset and no zero point: only the scale is stored, k + 16 / g bits per weight (4.5 at
    4 bits in blocks of 32, 8.5 for Q8_0). The grid is symmetric about 0, so a block whose
    weights are all positive wastes the negative half of its levels.
    Example: the block [-0.3, 0.1, 0.15, 0.9] at 4 bits: s = 0.9 / 7 = 0.12857 (float16:
    0.12854004), q = [-2, 1, 1, 7], w_hat = [-0.2571, 0.1285, 0.1285, 0.8998].
    """
    weight, bits, group_size = _check_block(weight, bits, group_size)
    params = get_scale_and_zero_point(weight, bits, symmetric=True, group_size=group_size)
    params = QuantParams(
        _float16_values(params.scale), params.zero_point, bits, True, group_size=group_size
    )
    return QuantizedTensor(linear_quantize(weight, params), params)
