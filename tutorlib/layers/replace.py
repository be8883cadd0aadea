"""Lessons 4 to 6: swap a model's nn.Linear layers for quantized ones.

replace_linear walks a model and swaps every nn.Linear (except the ones named in skip) for a
quantized layer built by its from_linear. Left out on purpose: convolutions and embeddings.
"""

from collections.abc import Iterable

from torch import nn

from tutorlib._checks import check_names

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
    (W8A16Linear, W8A8Linear). The model is modified in place and also returned, so
    `q = replace_linear(copy.deepcopy(m), W8A16Linear)` keeps m.

    Example: a BERT encoder of 6 layers has 36 Linear layers; all 36 become W8A16Linear.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear):
        raise TypeError("model is itself an nn.Linear: call layer_cls.from_linear(model) instead")
    if not isinstance(layer_cls, type) or not hasattr(layer_cls, "from_linear"):
        raise TypeError(
            f"layer_cls must be a class with a from_linear classmethod, got {layer_cls!r}"
        )
    skip = set(check_names(tuple(skip) if isinstance(skip, list | set) else skip, "skip"))
    # every (parent, attribute) that holds a Linear, shared modules under each of their names
    slots = [
        (parent, child_name, child, f"{parent_name}.{child_name}".lstrip("."))
        for parent_name, parent in model.named_modules(remove_duplicate=False)
        for child_name, child in parent._modules.items()  # named_children() drops repeats
        if isinstance(child, nn.Linear)
    ]
    kept = {
        id(child)
        for parent, child_name, child, name in slots
        if isinstance(parent, nn.MultiheadAttention) or child_name in skip or name in skip
    }
    new_layers: dict[int, nn.Module] = {}  # one new layer per Linear, however many names it has
    for parent, child_name, child, _ in slots:
        if id(child) not in kept:
            if id(child) not in new_layers:
                new_layers[id(child)] = layer_cls.from_linear(child)
            setattr(parent, child_name, new_layers[id(child)])
    return model
