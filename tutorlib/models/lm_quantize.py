"""Lesson 7: every linear weight of a causal language model re-quantized by one recipe.

A `WeightRecipe` says how each weight is stored: the method (round-to-nearest, or GPTQ or AWQ
calibrated on text), the form of the grid (GGUF Q4_1's offset form, Lesson 6's zero-point form,
or the symmetric form), the bit width and the group size, and from those its bits per weight.
`quantize_lm_weights` applies it to every nn.Linear of the decoder layers and writes the
dequantized weights back (fake quantization: the model stays float32 in memory, and its outputs
are those of the stored integers). The output head is skipped: in SmolLM2 it is the token
embedding itself (tied), kept exactly as the file stores it. GPTQ and AWQ run block by block:
the calibration text goes through the embedding once, then each decoder layer is quantized on
the inputs it receives from the layers before it, already quantized, as in the GPTQ paper.
`lm_storage` counts what a file of the variant would hold.

Left out on purpose: quantizing the embedding or the output head, act-order, AWQ's clipping
search, and models whose decoder layers are not at model.model.layers (transformers'
llama layout).
"""

from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_bits, check_int, check_names, check_real, iter_linears
from tutorlib.formats.gguf import Q8_0, BlockFormat
from tutorlib.layers.calibrated import capture_next_inputs
from tutorlib.quant.affine import QuantizedTensor, quantize_tensor
from tutorlib.quant.awq import AWQQuantized, awq_quantize_shared
from tutorlib.quant.block_rtn import (
    BLOCK_BITS,
    OffsetQuantizedTensor,
    offset_rtn_quantize,
    symmetric_rtn_quantize,
)
from tutorlib.quant.gptq import gptq_quantize_shared
from tutorlib.quant.rtn import rtn_quantize

__all__ = [
    "METHODS",
    "FORMS",
    "AWQ_GRID",
    "WeightRecipe",
    "quantize_lm_weights",
    "LMStorage",
    "lm_storage",
]

METHODS = ("rtn", "gptq", "awq")
CALIBRATED = ("gptq", "awq")  # the methods that need the layers' inputs
# AWQ's 1/s must fold into the layer before: a norm's weight (query, key and value; gate and
# up) or up_proj's rows (down_proj). o_proj reads the attention's output, where grouped-query
# attention shares each value channel among several heads, so no single row can take 1/s:
# o_proj is rounded to nearest, as AutoAWQ does when the shapes do not match.
_AWQ_UNSCALED = ("self_attn.o_proj",)
AWQ_GRID = 10  # exponents a = 0, 0.1, ..., 0.9: half AutoAWQ's 20, for half the search time
# The grid's form -> the bits its per-group parameters cost besides the float16 scale: the
# offset form stores a float16 minimum, the zero-point form a uint8 zero point (Lesson 6).
FORMS = {"offset": 16, "zero_point": 8, "symmetric": 0}
_FLOAT16_BITS, _FLOAT32_BITS = 16, 32


@dataclass(frozen=True)
class WeightRecipe:
    """How every linear weight of a variant is stored: method, grid form, bits, group size.

    Per group of g weights of a row (g = group_size; None: one group per output channel) the
    grid stores one scale, float16 for groups and float32 per channel, plus a float16 minimum
    (form "offset") or a uint8 zero point (form "zero_point"), or nothing more ("symmetric").
    bits per weight = bits + parameter bits / g.
    Example: WeightRecipe("rtn", "offset", 4, 32) is GGUF's Q4_1: 4 + (16 + 16) / 32 = 5.0
    bits; WeightRecipe("rtn", "symmetric", 8, None) on 576 inputs: 8 + 32 / 576 = 8.056.
    """

    method: str
    form: str
    bits: int
    group_size: int | None = 32

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {tuple(FORMS)}, got {self.form!r}")
        check_bits(self.bits, BLOCK_BITS)
        if self.group_size is not None:
            check_int(self.group_size, "group_size", minimum=1)
        if self.method in CALIBRATED and self.form != "zero_point":
            raise ValueError(
                f"{self.method.upper()} here uses Lesson 6's zero-point grid: form='zero_point'"
            )
        if self.group_size is None and self.form == "offset":
            raise ValueError("the offset form is a block format: give group_size, e.g. 32")

    @property
    def label(self) -> str:
        """A short name, e.g. "RTN 4-bit offset g32" or "RTN 8-bit symmetric per channel"."""
        group = "per channel" if self.group_size is None else f"g{self.group_size}"
        return f"{self.method.upper()} {self.bits}-bit {self.form.replace('_', '-')} {group}"

    def parameter_bits(self) -> int:
        """Bits of one group's parameters: its scale and its minimum or zero point, if any."""
        scale_bits = _FLOAT32_BITS if self.group_size is None else _FLOAT16_BITS
        return scale_bits + FORMS[self.form]

    def bits_per_weight(self, in_features: int) -> float:
        """bits + parameter_bits / g for a layer of in_features inputs (g = in_features per
        channel). Example: Q4_1's recipe gives 4 + 32 / 32 = 5.0 on any layer."""
        in_features = check_int(in_features, "in_features", minimum=1)
        group = in_features if self.group_size is None else self.group_size
        return self.bits + self.parameter_bits() / group

    def quantize(self, weight: torch.Tensor) -> QuantizedTensor | OffsetQuantizedTensor:
        """One (out, in) weight by this recipe, rounded to nearest (GPTQ and AWQ need the
        layer's inputs: they run in quantize_lm_weights). Example: the Q4_1 recipe on a
        (576, 1536) weight gives an OffsetQuantizedTensor with 576 x 48 float16 steps and minima."""
        if self.method in CALIBRATED:
            raise ValueError(
                f"{self.method.upper()} needs a layer's inputs: use quantize_lm_weights(model, "
                "recipe, calibration_ids)"
            )
        if self.form == "offset":
            return offset_rtn_quantize(weight, self.bits, self.group_size)
        if self.form == "zero_point":
            return rtn_quantize(weight, self.bits, self.group_size)
        if self.group_size is None:  # per channel: float32 scales, as W8A16Linear stores them
            return quantize_tensor(weight.detach().float(), self.bits, symmetric=True, dim=0)
        return symmetric_rtn_quantize(weight, self.bits, self.group_size)


Quantized = QuantizedTensor | OffsetQuantizedTensor | AWQQuantized


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    """transformers' decoder blocks of a causal LM (model.model.layers), or a ValueError."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            "GPTQ runs block by block and looks for the decoder layers at model.model.layers "
            f"(transformers' llama layout); {type(model).__name__} has none"
        )
    return layers


class _Stop(Exception):
    """Raised by a hook once the first decoder layer's inputs are in."""


def _first_layer_inputs(
    model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """The hidden states (batch, tokens, hidden) and keyword arguments (rotary position
    embeddings, causal mask) that the model passes to its first decoder layer for `ids`."""
    captured: dict = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured["hidden"], captured["kwargs"] = args[0], kwargs
        raise _Stop

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            model(ids, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["hidden"], captured["kwargs"]


def _quantize_group(
    names: list[str], weights: list[torch.Tensor], x: torch.Tensor, recipe, damp: float
) -> list[Quantized]:
    """The linears that read one input x, by the recipe's calibrated method."""
    if recipe.method == "gptq":  # one Hessian for the group
        return gptq_quantize_shared(weights, x, recipe.bits, recipe.group_size, damp)
    if any(name.endswith(_AWQ_UNSCALED) for name in names):  # no layer before can take 1/s
        return [rtn_quantize(weight, recipe.bits, recipe.group_size) for weight in weights]
    return awq_quantize_shared(weights, x, recipe.bits, recipe.group_size, AWQ_GRID)  # one s


def _calibrated_layer(
    layer: nn.Module, run, recipe: WeightRecipe, skip: tuple, damp: float
) -> dict:
    """GPTQ or AWQ on one decoder layer's linears, in calling order: `run()` drives the layer,
    and each group of linears that reads one input (query, key and value; gate and up) is
    quantized on it together (one Hessian for GPTQ, one scale vector for AWQ)."""
    pending, results = dict(iter_linears(layer, skip)), {}
    while pending:
        names, x = capture_next_inputs(pending, run)  # (samples, in) from the layer as it is
        linears = [pending.pop(name) for name in names]
        weights = [linear.weight.detach() for linear in linears]
        quantized = _quantize_group(names, weights, x, recipe, damp)
        for name, linear, weight_q in zip(names, linears, quantized, strict=True):
            results[name] = weight_q
            with torch.no_grad():
                linear.weight.copy_(weight_q.dequantize())
    return results


def _calibrated_by_layer(
    model: nn.Module, recipe: WeightRecipe, ids: torch.Tensor, skip: tuple, damp: float
) -> dict[str, Quantized]:
    """GPTQ or AWQ on each decoder layer in turn, fed by the layers before it, quantized."""
    layers = _decoder_layers(model)
    hidden, kwargs = _first_layer_inputs(model, layers, ids)
    prefix = next(name for name, module in model.named_modules() if module is layers)
    results: dict[str, Quantized] = {}
    for index, layer in enumerate(layers):

        def run(layer: nn.Module = layer, hidden: torch.Tensor = hidden) -> torch.Tensor:
            return layer(hidden, **kwargs)

        done = _calibrated_layer(layer, run, recipe, skip, damp)
        results |= {f"{prefix}.{index}.{name}": quantized for name, quantized in done.items()}
        with torch.inference_mode():
            hidden = run()  # the next layer's inputs, from this layer quantized
    return results


def _check_calibration(calibration_ids: object) -> torch.Tensor:
    if not isinstance(calibration_ids, torch.Tensor) or calibration_ids.is_floating_point():
        raise TypeError("calibration_ids must be an integer tensor of token ids (batch, tokens)")
    if calibration_ids.ndim != 2 or calibration_ids.numel() == 0:
        raise ValueError(
            f"calibration_ids must be (batch, tokens), e.g. 8 windows of 256 ids, got shape "
            f"{tuple(calibration_ids.shape)}"
        )
    return calibration_ids.long()


def quantize_lm_weights(
    model: nn.Module,
    recipe: WeightRecipe,
    calibration_ids: torch.Tensor | None = None,
    skip: tuple[str, ...] = ("lm_head",),
    damp: float = 0.01,
) -> dict[str, Quantized]:
    """Quantize every nn.Linear of `model` but those in `skip` by `recipe`, in place.

    Each weight W becomes W_hat = recipe's dequantized grid values (fake quantization), so the
    model computes exactly what the stored integers stand for. RTN needs no data. GPTQ and AWQ
    (recipe.method "gptq", "awq") need calibration_ids (batch, tokens): they run through the
    model up to its first decoder layer once, then each decoder layer's linears are quantized in
    calling order on the inputs they see there (`gptq_quantize_shared`: one Hessian per input, as
    tutorlib.layers.calibrated does for a whole model; `awq_quantize_shared`: one scale vector
    per input, o_proj rounded to nearest), and the layer, now quantized, produces the next
    layer's inputs. RTN ignores calibration_ids. Embeddings are never touched (they
    are not nn.Linear); a tied output head must be in `skip`, or it would re-quantize the
    embedding.
    Example: SmolLM2-135M has 210 linear weights in 30 decoder layers, and its lm_head is
    tied to the Q8_0 embedding: skip=("lm_head",) leaves the embedding as the file has it.
    Returns {dotted name: the quantized weight (integers and grid)}.
    """
    model = _check_model(model)
    if not isinstance(recipe, WeightRecipe):
        raise TypeError(f"recipe must be a WeightRecipe, got {type(recipe).__name__}")
    skip = check_names(skip, "skip")
    damp = check_real(damp, "damp", 0.0)
    targets = iter_linears(model, skip)
    if not targets:
        raise ValueError("model has no nn.Linear to quantize (or all of them are in skip)")
    if recipe.method in CALIBRATED:
        if calibration_ids is None:
            raise ValueError(
                f"{recipe.method.upper()} needs calibration_ids: token ids of shape (batch, tokens)"
            )
        return _calibrated_by_layer(model, recipe, _check_calibration(calibration_ids), skip, damp)
    results = {}
    for name, linear in targets:
        results[name] = recipe.quantize(linear.weight.detach())
        with torch.no_grad():
            linear.weight.copy_(results[name].dequantize())
    return results


# ---------------------------------------------------------------- what a file of it would hold


@dataclass(frozen=True)
class LMStorage:
    """What a file of the variant holds: its linear weights' bits, and all its bytes."""

    linear_weights: int  # number of weights in the quantized linear layers
    bits_per_weight: float  # their stored bits (parameters included) / linear_weights
    n_bytes: int  # linear layers + embedding in its format + everything else in float32


def _distinct_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer once (a tied weight is one tensor under two names)."""
    seen: dict[int, torch.Tensor] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen.setdefault(tensor.untyped_storage().data_ptr(), tensor)
    return list(seen.values())


def lm_storage(
    model: nn.Module,
    recipe: WeightRecipe | None,
    embedding: BlockFormat = Q8_0,
    skip: tuple[str, ...] = ("lm_head",),
) -> LMStorage:
    """Bits per linear weight and bytes of a model whose linears are stored by `recipe`.

    bytes = sum over linear weights of (n * k / 8 + n / g * parameter_bits / 8)
          + embedding weights * embedding.bits_per_weight / 8 + 4 * (everything else),
    with the tied output head counted once (as the embedding). recipe=None: float32 linears.
    Non-persistent buffers (RoPE's inverse frequencies, recomputed at load) are not counted.
    Example: SmolLM2-135M with WeightRecipe("rtn", "offset", 4, 32) and a Q8_0 embedding:
    106,168,320 linear weights at 5.0 bits, 96,576,768 bytes, the tensor bytes of its GGUF file.
    """
    model = _check_model(model)
    if recipe is not None and not isinstance(recipe, WeightRecipe):
        raise TypeError(f"recipe must be a WeightRecipe or None, got {type(recipe).__name__}")
    if not isinstance(embedding, BlockFormat):
        raise TypeError(f"embedding must be a BlockFormat such as Q8_0, got {embedding!r}")
    linears = {
        id(linear.weight): linear for _, linear in iter_linears(model, check_names(skip, "skip"))
    }
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    persistent = {id(t) for t in model.state_dict(keep_vars=True).values()}
    linear_weights, linear_bits, other_bits = 0, 0.0, 0.0
    for tensor in _distinct_tensors(model):
        if id(tensor) in linears:
            per_weight = 32.0 if recipe is None else recipe.bits_per_weight(tensor.shape[1])
            linear_weights += tensor.numel()
            linear_bits += tensor.numel() * per_weight
        elif id(tensor) in embeddings:
            other_bits += tensor.numel() * embedding.bits_per_weight
        elif id(tensor) in persistent:
            other_bits += tensor.numel() * 8 * tensor.element_size()
    if linear_weights == 0:
        raise ValueError("model has no nn.Linear outside skip: nothing is stored by the recipe")
    n_bytes = round((linear_bits + other_bits) / 8)
    return LMStorage(linear_weights, linear_bits / linear_weights, n_bytes)
