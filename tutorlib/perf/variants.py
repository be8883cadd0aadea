"""Lesson 5: the seven variants of MiniLM the benchmark compares, each built from one model.

FP32, BF16, optimum-quanto's W8 and W8A8, torch.ao's dynamic int8, and tutorlib's W8A16 and
W8A8; two cuts that change no embedding apply to all (the unused pooler dropped, GELU in place).
"""

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib._checks import check_names
from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.layers.w8a16 import W8A16Linear
from tutorlib.perf.baselines import quantize_with_quanto, quanto_w8a8, torch_ao_dynamic

if TYPE_CHECKING:  # only for type hints: importing these takes seconds
    from transformers import PreTrainedTokenizerBase

__all__ = ["VARIANTS", "drop_unused_pooler", "use_inplace_gelu", "build_variants"]


# The variants of the benchmark, in the order of its table and chart.
VARIANTS: tuple[str, ...] = (
    "FP32",
    "BF16",
    "quanto W8",
    "quanto W8A8",
    "torch.ao dynamic",
    "tutorlib W8A16",
    "tutorlib W8A8",
)


def drop_unused_pooler(model: nn.Module) -> nn.Module:
    """Remove a BERT model's pooler, in place, when only its token states are used.

    BertModel's pooler computes tanh(dense(h[:, 0])) on every forward; a sentence embedding
    that mean-pools the last hidden states (tutorlib.search.embed) never reads it, so dropping
    it changes no embedding and saves a linear layer and a tanh per forward. Returns the model.
    Example: drop_unused_pooler(load_minilm()[0]).pooler is None.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(getattr(model, "pooler", None), nn.Module):
        raise ValueError("model has no pooler module to drop (expected a transformers BertModel)")
    model.pooler = None
    return model


class _InplaceGELU(nn.Module):
    """GELU that overwrites its input when no gradient is needed (the same numbers, no new
    tensor); with autograd on it is the ordinary out-of-place F.gelu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(x) if not torch.is_grad_enabled() else F.gelu(x)


def use_inplace_gelu(model: nn.Module) -> int:
    """Make every BERT feed-forward GELU work in place, in place; returns how many changed.

    BertIntermediate computes act(dense(x)) and nothing else reads dense(x), so GELU may
    overwrite it: the same numbers, one (tokens, 4 x hidden) tensor less per block and per
    forward (the allocation, and its page faults, disappear). Only without autograd: with
    gradients enabled the layer falls back to out-of-place F.gelu.
    Example: use_inplace_gelu(load_minilm()[0]) == 6 (one per block).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    blocks = [
        m for m in model.modules() if isinstance(getattr(m, "intermediate_act_fn", None), nn.Module)
    ]
    for block in blocks:
        block.intermediate_act_fn = _InplaceGELU()
    return len(blocks)


def build_variants(
    model: nn.Module,
    tokenizer: "PreTrainedTokenizerBase",
    calibration_sentences: Sequence[str],
    names: Sequence[str] = VARIANTS,
) -> dict[str, nn.Module]:
    """Copies of `model` in each variant of VARIANTS (the model itself is "FP32").

    - BF16: every parameter cast to bfloat16.
    - quanto W8: optimum-quanto int8 weights (quantize(weights=qint8); freeze).
    - quanto W8A8: int8 weights and int8 activations with static per-tensor scales, recorded by
      quanto's Calibration over `calibration_sentences` (batches of 32) before freeze.
    - torch.ao dynamic: torch.ao.quantization.quantize_dynamic of every nn.Linear (int8
      weights per tensor, activations quantized per tensor at run time).
    - tutorlib W8A16 / W8A8: replace_linear with W8A16Linear / W8A8Linear.
    """
    names = check_names(names, "names")  # a single string such as "FP32" is refused
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    make = {
        "FP32": lambda m: m,
        "BF16": lambda m: m.to(torch.bfloat16),
        "quanto W8": quantize_with_quanto,
        "quanto W8A8": lambda m: quanto_w8a8(m, tokenizer, calibration_sentences),
        "torch.ao dynamic": torch_ao_dynamic,
        "tutorlib W8A16": lambda m: replace_linear(m, W8A16Linear),
        "tutorlib W8A8": lambda m: replace_linear(m, W8A8Linear),
    }
    copies = {name: model if name == "FP32" else copy.deepcopy(model) for name in names}
    return {name: make[name](copied).eval() for name, copied in copies.items()}
