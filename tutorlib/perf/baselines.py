"""Lessons 4 and 5: the reference implementations tutorlib is compared with ("theirs").

optimum-quanto's int8 weights (and its static int8 activations), and torch.ao's dynamic int8
quantization: the recipes each library documents, in one place, so that every comparison in the
course uses the same calls. The models are modified in place or copied, as each says.

Left out on purpose: these libraries' other schemes (float8, int4, static torch.ao
quantization with observers), and torchao, which the pinned torch does not ship.
"""

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

with warnings.catch_warnings():
    # optimum-quanto imports huggingface_hub, which imports tqdm.auto; in a Jupyter kernel
    # without ipywidgets, tqdm.auto warns "IProgress not found" on stderr with its file path.
    # Imported here, silenced, tqdm.auto is also cached for later imports (transformers).
    warnings.simplefilter("ignore")
    from optimum.quanto import Calibration, freeze, qint8, quantize

if TYPE_CHECKING:  # only for type hints: importing transformers takes seconds
    from transformers import PreTrainedTokenizerBase

from tutorlib._checks import check_names

__all__ = ["quantize_with_quanto", "quanto_w8a8", "torch_ao_dynamic"]


def _check_model(model: object) -> nn.Module:
    """A module that holds Linear layers (not a bare nn.Linear: both libraries replace the
    Linear children of a module, so a bare one would come back broken or unchanged)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear):
        raise TypeError(
            "model is a bare nn.Linear: wrap it as nn.Sequential(linear), whose child the "
            "library can replace"
        )
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise ValueError("model has no nn.Linear to quantize")
    return model


def quantize_with_quanto(model: nn.Module) -> nn.Module:
    """optimum-quanto's int8 weights, the reference: quantize(model, weights=qint8); freeze(model).

    Every nn.Linear (lm_head included) gets symmetric per-output-channel int8 weights with
    scale absmax / 127, the same integers and scales as W8A16Linear; embeddings, norms and
    biases stay float. In place; the model is also returned.
    """
    _check_model(model)
    quantize(model, weights=qint8)  # marks the Linear layers for int8 weights
    freeze(model)  # replaces each float weight by int8 data and float scales
    return model


def quanto_w8a8(
    model: nn.Module, tokenizer: "PreTrainedTokenizerBase", sentences: Sequence[str]
) -> nn.Module:
    """optimum-quanto's int8 weights and static int8 activations, calibrated on `sentences`.

    quantize(weights=qint8, activations=qint8) marks every Linear; inside Calibration() each
    forward records the activations' range (one scale per tensor), in batches of 32; freeze
    then stores the int8 weights. In place; the model is also returned.
    """
    _check_model(model)
    sentences = check_names(sentences, "sentences")
    if not sentences:
        raise ValueError("sentences is empty: static activation scales need calibration data")
    quantize(model, weights=qint8, activations=qint8)
    with torch.inference_mode(), Calibration():
        for start in range(0, len(sentences), 32):
            batch = tokenizer(
                list(sentences[start : start + 32]), padding=True, return_tensors="pt"
            )
            model(**batch)
    freeze(model)
    return model


def torch_ao_dynamic(model: nn.Module) -> nn.Module:
    """torch.ao's dynamic int8 quantization of every nn.Linear (a new model is returned)."""
    _check_model(model)
    with warnings.catch_warnings():
        # torch 2.13 warns that torch.ao.quantization is deprecated in favour of torchao and that
        # quantized tensor dtypes will go; it still runs, and it is the reference compared with.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
