"""Lessons 4 to 6: swap a model's nn.Linear layers for quantized ones.

replace_linear walks a model (tutorlib._checks.linear_slots) and swaps every nn.Linear, except
the ones named in skip, for a quantized layer built by its from_linear; layers that work in a
shared context (W8A8Linear) get one context for the whole model. Left out on purpose:
convolutions and embeddings.
"""

import inspect
from collections.abc import Iterable

from torch import nn

from tutorlib._checks import iter_linears, linear_slots

__all__ = ["replace_linear"]


def replace_linear(
    model: nn.Module, layer_cls: type[nn.Module], skip: Iterable[str] = ("lm_head",)
) -> nn.Module:
    """Replace every nn.Linear in `model` by `layer_cls.from_linear(linear)`, in place.

    A Linear is kept when its attribute name (e.g. "lm_head") or its full dotted name
    (e.g. "encoder.layer.0.output.dense") is in `skip`, and when it is a child of an
    nn.MultiheadAttention, which reads `out_proj.weight` directly instead of calling it. A Linear
    reachable under several names (shared, or tied) becomes ONE new layer under all of them,
    unless one of its names is skipped. Any class with a `from_linear` classmethod works
    (W8A16Linear, W8A8Linear, W4A16Linear). If from_linear takes a `context` argument
    (W8A8Linear's W8A8Context), the new layers share one: the first layer makes it and every
    other gets `context=first.context`, so that query, key and value quantize their shared
    input once. The model is modified in place and also returned, so
    `q = replace_linear(copy.deepcopy(m), W8A16Linear)` keeps m.

    Example: a BERT encoder of 6 layers has 36 Linear layers; all 36 become W8A16Linear (or
    W8A8Linear, all 36 with the same `layer.context`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear):
        raise TypeError("model is itself an nn.Linear: call layer_cls.from_linear(model) instead")
    if not isinstance(layer_cls, type) or not callable(getattr(layer_cls, "from_linear", None)):
        raise TypeError(
            f"layer_cls must be a class with a from_linear classmethod, got {layer_cls!r}"
        )
    shares_context = "context" in inspect.signature(layer_cls.from_linear).parameters
    new_layers: dict[int, nn.Module] = {}  # one new layer per Linear, however many names it has
    context = None  # made by the first new layer, when layer_cls works in a context
    for _, linear in iter_linears(model, skip):  # each Linear once, skipped ones left out
        if shares_context:
            new_layers[id(linear)] = layer_cls.from_linear(linear, context=context)
            context = new_layers[id(linear)].context
        else:
            new_layers[id(linear)] = layer_cls.from_linear(linear)
    for parent, attribute, _, linear in linear_slots(model):  # under every name it has
        if id(linear) in new_layers:
            setattr(parent, attribute, new_layers[id(linear)])
    return model
