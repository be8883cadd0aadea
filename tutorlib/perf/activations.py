"""Lesson 5: how hard a layer's activations are to quantize, per tensor and per token.

activation_stats measures the SQNR of one layer's input quantized with one scale per tensor and
with one per token; bert_layer_label names a BERT linear layer for a table.
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tutorlib._checks import check_float_tensor, check_tensor
from tutorlib.quant.affine import fake_quantize
from tutorlib.quant.error import quantization_error

if TYPE_CHECKING:  # only for type hints: pandas takes a second to import
    import pandas as pd

__all__ = [
    "ActivationStats",
    "BERT_LINEAR_ROLES",
    "bert_layer_label",
    "activation_stats",
    "activation_table",
]


@dataclass(frozen=True)
class ActivationStats:
    """How one linear layer's input quantizes to int8 with one scale, or one scale per token."""

    layer: str
    abs_max: float  # max |x| over the whole input
    median_token_abs_max: float  # median over tokens of max |x[t]|
    sqnr_per_tensor_db: float  # symmetric int8, one scale for the tensor
    sqnr_per_token_db: float  # symmetric int8, one scale per row (what W8A8Linear does)


# What each linear layer of a BERT block reads (module names as in transformers' BertModel).
BERT_LINEAR_ROLES = {
    "attention.self.query": "attention in",  # the block's input (query, key and value read it)
    "attention.self.key": "attention in",
    "attention.self.value": "attention in",
    "attention.output.dense": "attention out",  # the heads' concatenated outputs
    "intermediate.dense": "FFN up",  # the FFN's input, after attention
    "output.dense": "FFN down",  # the FFN's hidden layer, after GELU
}


def bert_layer_label(name: str) -> str:
    """Short label of a BERT linear layer: block number and what it reads.

    Example: "encoder.layer.0.intermediate.dense" -> "0 FFN up"; a layer outside the encoder
    blocks keeps its first name component: "pooler.dense" -> "pooler".
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a module name (str), got {type(name).__name__}")
    block, _, role = name.removeprefix("encoder.layer.").partition(".")
    if name.startswith("encoder.layer.") and role in BERT_LINEAR_ROLES:
        return f"{block} {BERT_LINEAR_ROLES[role]}"
    return name.split(".")[0]


def activation_stats(layer: str, rows: torch.Tensor) -> ActivationStats:
    """Quantize rows (tokens, features) to symmetric int8 per tensor and per token; SQNR of each.

    SQNR = 10 log10(sum x**2 / sum (x - x_hat)**2) from `tutorlib.quantization`. One outlier
    token sets the per-tensor scale s = max|x| / 127 for every token; per token, each row gets
    s_t = max|x[t]| / 127, a finer grid wherever that row is small. An input that int8 holds
    exactly (constant rows, zeros) reports float32's own SQNR, 146 dB, instead of infinity.
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be the layer's name (str), got {type(layer).__name__}")
    check_float_tensor(check_tensor(rows, "rows"), "rows")
    if rows.ndim != 2:
        raise ValueError(f"rows must be 2-D (tokens, features), got shape {tuple(rows.shape)}")
    per_tensor = fake_quantize(rows, bits=8, symmetric=True)
    per_token = fake_quantize(rows, bits=8, symmetric=True, dim=0)  # dim 0 keeps a scale per row
    return ActivationStats(
        layer=layer,
        abs_max=rows.abs().max().item(),
        median_token_abs_max=rows.abs().amax(dim=1).median().item(),
        sqnr_per_tensor_db=_capped(quantization_error(rows, per_tensor).sqnr_db),
        sqnr_per_token_db=_capped(quantization_error(rows, per_token).sqnr_db),
    )


# An input that int8 represents exactly (constants, zeros) has no quantization noise: its SQNR
# is reported as that of float32 itself, 6.02 * 24 + 1.76 dB (24 significand bits; MT-001).
_SQNR_CEILING_DB = 6.02 * 24 + 1.76


def _capped(sqnr_db: float) -> float:
    return sqnr_db if math.isfinite(sqnr_db) and sqnr_db < _SQNR_CEILING_DB else _SQNR_CEILING_DB


def activation_table(stats: "list[ActivationStats]") -> "pd.DataFrame":
    """The activation statistics as a table: one row per layer input, rounded for printing.

    Columns: layer input, max|x|, median row max, per tensor (dB), per token (dB), gain (dB),
    the last being per token minus per tensor.
    """
    import pandas as pd

    if not isinstance(stats, list | tuple) or not all(
        isinstance(s, ActivationStats) for s in stats
    ):
        raise TypeError("stats must be a list of ActivationStats (from activation_stats)")
    frame = pd.DataFrame(
        {
            "layer input": [s.layer for s in stats],
            "max|x|": [round(s.abs_max, 1) for s in stats],
            "median row max": [round(s.median_token_abs_max, 1) for s in stats],
            "per tensor (dB)": [round(s.sqnr_per_tensor_db, 1) for s in stats],
            "per token (dB)": [round(s.sqnr_per_token_db, 1) for s in stats],
        }
    )
    frame["gain (dB)"] = (frame["per token (dB)"] - frame["per tensor (dB)"]).round(1)
    return frame
