"""Lesson 7: AWQ (Lin et al., 2024): scale a weight's input channels by the size of their
inputs before rounding to nearest.

Column j of W multiplies input feature j, so the rounding error of column j reaches the output
multiplied by x_j: where the inputs are large, the same rounding costs more. AWQ multiplies
column j by s_j = mean_t |x_tj|^a before quantizing, giving those columns a finer share of the
grid, and divides the input by s_j, which the layer before absorbs at no cost (a norm's weight,
or a linear's output rows): X W^T = (X diag(s)^-1) (W diag(s))^T. The exponent a is searched on
a grid for the smallest output error ||X (W - W_hat)^T||, the quantity GPTQ minimises too; a = 0
is round-to-nearest itself, so on the calibration inputs AWQ is never worse than RTN.

Left out on purpose: AWQ's search of clipping ranges; the folding itself (fake quantization
keeps W_hat = Q(W diag(s)) diag(s)^-1 in the layer, the same product up to float rounding);
AutoAWQ's default scales s = x_mean^a / w_mean^(1 - a) (here the paper's s = x_mean^a, AutoAWQ's
duo_scaling=False); and AutoAWQ's objective, the error of a whole attention or MLP block's
output (here the summed output errors of the linears that read one input, as in the paper's
Eq. 4).
"""

import dataclasses
import math
from collections.abc import Sequence

import torch

from tutorlib._checks import check_float_tensor, check_int, check_real
from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.rtn import rtn_quantize
from tutorlib.quant.shared_input import check_shared_weights, split_rows

__all__ = ["activation_scales", "AWQQuantized", "awq_quantize_shared"]


def _check_inputs(inputs: object, in_features: int) -> torch.Tensor:
    x = check_float_tensor(inputs, "inputs")
    if x.ndim != 2 or x.shape[1] != in_features:
        raise ValueError(
            f"inputs must be (samples, {in_features}) for weights with {in_features} input "
            f"features, got shape {tuple(x.shape)}"
        )
    return x.detach().float()  # (samples, in)


def activation_scales(inputs: torch.Tensor, alpha: float) -> torch.Tensor:
    """AWQ's per-input-channel scales: s_j = m_j^a / sqrt(max_k m_k^a * min_k m_k^a), where
    m_j = mean_t |x_tj| over the calibration rows, floored at 1e-4 (AutoAWQ floors m_j^a).

    Dividing by the geometric mean of the largest and smallest scale centres s around 1 (any
    common factor cancels in W_hat = Q(W diag(s)) diag(s)^-1 up to float16 rounding).
    Example: inputs [[1, -4], [3, 4]]: m = (2, 4); a = 1 gives (2, 4) / sqrt(8) =
    (0.7071, 1.4142); a = 0 gives (1, 1), round-to-nearest's.
    """
    x = check_float_tensor(inputs, "inputs")
    if x.ndim != 2:
        raise ValueError(f"inputs must be (samples, in_features), got shape {tuple(x.shape)}")
    alpha = check_real(alpha, "alpha", 0.0, 1.0)
    mean_abs = x.detach().double().abs().mean(dim=0).clamp(min=1e-4)  # (in,): m_j, no overflow
    scales = mean_abs.pow(alpha)  # (in,)
    return (scales / (scales.max() * scales.min()).sqrt()).float()


@dataclasses.dataclass(frozen=True)
class AWQQuantized:
    """A weight quantized by AWQ: the integers and grid of W diag(s), the scales s, and a.

    W_hat = Q(W diag(s)) diag(s)^-1; in a file, Q(W diag(s)) is what is stored (same bits as
    round-to-nearest) and 1/s is folded into the layer before.
    """

    quantized: QuantizedTensor  # Q(W diag(s)), (out, in)
    scales: torch.Tensor  # s, (in,)
    alpha: float

    def dequantize(self) -> torch.Tensor:
        """W_hat = Q(W diag(s)) diag(s)^-1, (out, in) float32."""
        return self.quantized.dequantize() / self.scales  # divides column j by s_j


def _output_error_sq(delta: torch.Tensor, x: torch.Tensor, h: torch.Tensor | None) -> float:
    """||X dW^T||^2 for dW = W - W_hat (out, in): from X (samples, in) or from H = X^T X
    (in, in) as sum((dW H) * dW), whichever product is smaller."""
    if h is None:
        error = float((x @ delta.T).square().sum())  # (samples, out)
    else:
        error = float(((delta @ h) * delta).sum())  # (out, in)
    if math.isfinite(error):
        return error
    return float((x.double() @ delta.double().T).square().sum())  # beyond float32's range


def awq_quantize_shared(
    weights: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 128,
    n_grid: int = 20,
) -> list[AWQQuantized]:
    """AWQ on the weights of Linears that read the same inputs X: one scale vector s for all
    of them (the layer before can absorb only one), a searched on a grid.

    For a = 0, 1/n, ..., (n - 1)/n (n = n_grid): s = activation_scales(X, a), each W_k becomes
    W_hat_k = Q(W_k diag(s)) diag(s)^-1 by rtn_quantize, and the error is
    sum_k ||X (W_k - W_hat_k)^T||^2. The smallest error wins (the smaller a on a tie). A grid
    that float16 cannot store (a tiny scaled group) rules its a out; a = 0 is rtn_quantize.
    Example: with n_grid=1 only a = 0 is tried: every result equals rtn_quantize(W_k).
    Returns one AWQQuantized per weight, in the order given, all with the same s and a.
    """
    checked = check_shared_weights(weights)  # each (out_k, in), one in_features
    x = _check_inputs(inputs, checked[0].shape[1])
    n_grid = check_int(n_grid, "n_grid", minimum=1)
    h = x.T @ x if x.shape[0] > x.shape[1] else None  # (in, in): X^T X, if it is the cheaper
    stacked = torch.cat(checked)  # (sum of out_k, in): one grid per row, rows independent
    best, best_error = None, float("inf")
    for alpha in (step / n_grid for step in range(n_grid)):
        scales = activation_scales(x, alpha)  # (in,)
        try:
            quantized = rtn_quantize(stacked * scales, bits, group_size)  # Q(W diag(s))
        except ValueError:
            if alpha == 0:
                raise  # round-to-nearest itself is refused: say why
            continue  # this a makes a group that float16 cannot store
        error = _output_error_sq(stacked - quantized.dequantize() / scales, x, h)
        if error < best_error:
            best, best_error = (quantized, scales, alpha), error
    quantized, scales, alpha = best
    return [AWQQuantized(rows, scales, alpha) for rows in split_rows(quantized, checked)]
