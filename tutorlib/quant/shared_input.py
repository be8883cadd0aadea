"""Lessons 6 and 7: the Linears that read one input, quantized as one weight.

A block's query, key and value (or an MLP's gate and up) read the very same tensor X. GPTQ's
moves and AWQ's scales depend on X alone, and every row of a weight has its own grid, so such
Linears can be quantized as one weight with their rows stacked, [W_1; W_2; ...], and the result
split back into one QuantizedTensor per Linear. Left out: finding the groups (a forward pass
does, in tutorlib.layers.calibrated.capture_next_inputs).
"""

import itertools
from collections.abc import Sequence

import torch

from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.rtn import _check_weight

__all__ = ["check_shared_weights", "split_rows"]


def check_shared_weights(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The weights of Linears that read one input: a non-empty list or tuple of 2-D
    (out_k, in) weights with one in_features, each returned as float32 (out_k, in).

    Example: [q (576, 576), k (192, 576), v (192, 576)] passes; [(4, 8), (4, 6)] is refused:
    Linears with different in_features cannot read one input.
    """
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError(
            "weights must be a non-empty list of (out_features, in_features) weight tensors, "
            f"got {type(weights).__name__}"
        )
    checked = [_check_weight(w, f"weights[{k}]") for k, w in enumerate(weights)]  # (out_k, in)
    widths = sorted({w.shape[1] for w in checked})
    if len(widths) != 1:
        raise ValueError(
            f"weights read one input, so they need one in_features; got {widths}: "
            "quantize Linears with different inputs separately"
        )
    return checked


def split_rows(stacked: QuantizedTensor, weights: Sequence[torch.Tensor]) -> list[QuantizedTensor]:
    """The stacked result [W_1; W_2; ...] split back into one QuantizedTensor per weight, by the
    weights' row counts, in order (QuantizedTensor.rows).

    Example: a (960, 576) result for q (576 rows), k and v (192 each) gives rows 0..575,
    576..767 and 768..959.
    """
    if not isinstance(stacked, QuantizedTensor):
        raise TypeError(f"stacked must be a QuantizedTensor, got {type(stacked).__name__}")
    counts = [w.shape[0] for w in check_shared_weights(weights)]  # out_k of each weight
    if sum(counts) != stacked.q.shape[0]:
        raise ValueError(
            f"the weights have {sum(counts)} rows in all, but stacked has {stacked.q.shape[0]}: "
            "split the result of quantizing exactly these weights, stacked"
        )
    ends = list(itertools.accumulate(counts))
    return [stacked.rows(end - count, end) for count, end in zip(counts, ends, strict=True)]
