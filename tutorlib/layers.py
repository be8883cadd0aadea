"""Quantized linear layers and the function that swaps them into a model (Lessons 4 and 5).

A quantized layer stores integer weights and per-output-channel scales as buffers and calls the
primitives of `tutorlib.quantization` in a few lines of `forward`; `replace_linear` walks a model
and swaps every `nn.Linear` (except the ones named in `skip`) for such a layer.
Left out on purpose: tensor-subclass dispatch (optimum-quanto's machinery), packed sub-8-bit
weights, quantized convolutions and embeddings, and training through quantized weights.
"""

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.quantization import get_scale_and_zero_point, linear_dequantize, linear_quantize

__all__ = ["W8A16Linear", "replace_linear", "seconds_per_call"]


class W8A16Linear(nn.Module):
    """Linear layer with int8 weights and float activations (weight-only quantization).

    Weights are quantized symmetrically per output channel, s_o = max_i |W[o, i]| / 127 and
    W_q = clamp(round(W / s), -127, 127), as optimum-quanto's qint8 weights. `forward`
    dequantizes, W ~ s * W_q, in the activation's dtype and runs an ordinary float matmul:
        y = x @ (s * W_q)^T + b
    Memory shrinks (1 byte per weight plus one scale per row); the matmul is the float one.

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features, 1) in the
    original weight's dtype; bias (out_features,) or None, kept in float.

    Example: a 4 x 3 weight whose row 0 is [0.5, -1.27, 0.1] gets s_0 = 1.27 / 127 = 0.01 and
    int8 row [50, -127, 10].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )  # (out_features, in_features)
        self.register_buffer("scales", torch.ones(out_features, 1, dtype=dtype))  # (out, 1)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A16Linear":
        """Quantize an nn.Linear's weight (symmetric, per output channel) into a new layer."""
        weight = linear.weight.detach()  # (out_features, in_features)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, weight.dtype)
        scale, zero_point = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
        layer.int8_weight.copy_(linear_quantize(weight, scale, zero_point, 8, symmetric=True))
        layer.scales.copy_(scale)  # (out_features, 1)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = linear_dequantize(self.int8_weight, self.scales.to(x.dtype), 0)  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=int8"


def replace_linear(
    model: nn.Module, layer_cls: type[nn.Module], skip: Iterable[str] = ("lm_head",)
) -> nn.Module:
    """Replace every nn.Linear in `model` by `layer_cls.from_linear(linear)`, in place.

    A Linear is kept when its attribute name (e.g. "lm_head") or its full dotted name
    (e.g. "encoder.layer.0.output.dense") is in `skip`. Any class with a `from_linear`
    classmethod works (W8A16Linear here, W8A8Linear in Lesson 5). The model is modified in
    place and also returned, so `q = replace_linear(copy.deepcopy(m), W8A16Linear)` keeps m.

    Example: a BERT encoder of 6 layers has 36 Linear layers; all 36 become W8A16Linear.
    """
    if not hasattr(layer_cls, "from_linear"):
        raise TypeError(f"{layer_cls.__name__} needs a from_linear(linear) classmethod")
    if isinstance(model, nn.Linear):
        raise TypeError("model is itself an nn.Linear: call layer_cls.from_linear(model) instead")
    skip = set(skip) if not isinstance(skip, str) else {skip}
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in skip and name.split(".")[-1] not in skip
    ]  # collected first: swapping modules while iterating named_modules() is unsafe
    for name, linear in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, layer_cls.from_linear(linear))
    return model


def seconds_per_call(fn: Callable[[], object], repeats: int = 5) -> float:
    """Fastest wall-clock time of `repeats` calls of fn(), after one untimed warm-up call.

    The minimum, not the mean: on a shared CPU other processes only ever add time, so the
    fastest run is the best estimate of the code's own cost. Runs under torch.inference_mode.
    Example: seconds_per_call(lambda: model(**batch)) -> 0.41 (seconds, machine-dependent).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    times = []
    with torch.inference_mode():
        fn()  # warm-up: first-call allocations and kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times)


# --- W8A8Linear (Lesson 5) ---
