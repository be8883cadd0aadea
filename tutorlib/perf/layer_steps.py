"""Lesson 5: one W8A8 layer timed whole and step by step, against FP32 and torch.ao."""

from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_float_tensor, check_int, check_tensor
from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.perf.baselines import torch_ao_dynamic
from tutorlib.perf.timing import median_ms, time_interleaved

__all__ = ["LayerSteps", "profile_w8a8_steps"]


@dataclass(frozen=True)
class LayerSteps:
    """Median milliseconds of one linear layer, whole and step by step (profile_w8a8_steps)."""

    fp32: float  # nn.Linear in float32
    w8a8: float  # W8A8Linear.forward, all steps
    quantize: float  # step 1 (quantize_into_scratch): absmax per token, divide, round, cast
    integer_matmul: float  # step 2 (integer_product): the int8 product times s_w
    rescale: float  # step 3 (rescale_in_place): s_x * y' + b, in place
    torch_ao: float  # torch.ao's dynamic int8 Linear (fbgemm), all steps


def profile_w8a8_steps(linear: nn.Linear, x: torch.Tensor, repeats: int = 50) -> LayerSteps:
    """Time one layer as FP32, as W8A8Linear and as torch.ao's dynamic int8, and W8A8Linear's
    three steps on their own, interleaved in one run, to see where an int8 layer spends its time.

    The steps are W8A8Linear's public hot-path methods, the code forward runs, on the same
    input: quantize_into_scratch, integer_product and rescale_in_place (each checks only the
    kinds and shapes of its arguments, well under a microsecond). Their sum is about w8a8 (the
    rest is dispatch and the reshapes); w8a8 forgets the shared input before each call
    (`layer.context.forget_input()`), so that it quantizes as a layer on its own does.
    Example: MiniLM's first feed-forward layer (384 -> 1536) on its input at batch 32, x of
    shape (704, 384), gives the medians of the six runs in milliseconds.
    """

    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    check_float_tensor(check_tensor(x, "x"), "x")
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, the FP32 layer's dtype, got {x.dtype}; use x.float()")
    if x.ndim == 0 or x.shape[-1] != linear.in_features:
        raise ValueError(f"x must have shape (..., {linear.in_features}), got {tuple(x.shape)}")
    repeats = check_int(repeats, "repeats", minimum=1)
    layer = W8A8Linear.from_linear(linear)
    torch_ao = torch_ao_dynamic(nn.Sequential(linear))
    rows = x.detach().reshape(-1, linear.in_features)  # (tokens, in_features)

    def whole_layer() -> torch.Tensor:
        layer.context.forget_input()  # one layer on its own: no previous layer quantized x
        return layer(x)

    with torch.inference_mode():
        layer(x)  # refuses, naming x, what forward refuses (e.g. an output beyond float32)
        x_kernel, x_scale = layer.quantize_into_scratch(rows)  # u8 or int8, as forward's
        x_kernel = x_kernel.clone()  # its own copy: the scratch changes while timing
        y = layer.integer_product(x_kernel)
        runs = {
            "fp32": lambda: linear(x),
            "w8a8": whole_layer,
            "quantize": lambda: layer.quantize_into_scratch(rows),
            "integer_matmul": lambda: layer.integer_product(x_kernel),
            "rescale": lambda: layer.rescale_in_place(y, x_scale),  # y changes, its time not
            "torch_ao": lambda: torch_ao(x),
        }
        samples = time_interleaved(runs, repeats=repeats, desc="one layer, step by step")
    return LayerSteps(**{name: median_ms(seconds) for name, seconds in samples.items()})
