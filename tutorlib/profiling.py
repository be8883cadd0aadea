"""Lesson 5: where a forward pass spends its time, and how activations quantize.

Forward hooks time every linear layer inside one call and count its multiply-accumulates, which
gives the share of time in linear layers and, with Amdahl's law, the best speedup that faster
linear layers alone can give. Hooks also capture each linear layer's input, to measure how well
it quantizes to int8 with one scale per tensor or one per token.

Left out on purpose: torch.profiler's operator-level traces (too detailed for the lesson's
question), memory profiles, and layers other than linear ones.
"""

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.quantization import fake_quantize, quantization_error
from tutorlib.references import torch_ao_dynamic
from tutorlib.timing import median_ms, time_interleaved

__all__ = [
    "LinearProfile",
    "is_linear_layer",
    "profile_linear_layers",
    "amdahl_speedup",
    "LayerSteps",
    "profile_w8a8_steps",
    "capture_linear_inputs",
    "ActivationStats",
    "BERT_LINEAR_ROLES",
    "bert_layer_label",
    "activation_stats",
]


def is_linear_layer(module: nn.Module) -> bool:
    """True for a module that computes y = x W^T + b: anything with integer in_features and
    out_features (nn.Linear, quanto's QLinear, torch.ao's dynamic Linear, W8A16/W8A8Linear)."""
    in_features = getattr(module, "in_features", None)
    out_features = getattr(module, "out_features", None)
    return isinstance(in_features, int) and isinstance(out_features, int)


@dataclass(frozen=True)
class LinearProfile:
    """Multiply-accumulates of one forward's linear layers and the time spent inside them."""

    macs: int  # sum over linear layers of rows * in_features * out_features
    linear_seconds: float  # median over calls of the time inside linear layers
    total_seconds: float  # median over calls of the whole call

    @property
    def linear_fraction(self) -> float:
        """Share of the time spent in linear layers, linear_seconds / total_seconds."""
        return self.linear_seconds / self.total_seconds


@contextlib.contextmanager
def _linear_hooks(model: nn.Module, record: list[tuple[int, float]]) -> Iterator[None]:
    """Append (MACs, seconds) of every linear-layer call to `record` while the block runs."""
    starts: dict[int, float] = {}

    def before(module: nn.Module, args: tuple) -> None:
        starts[id(module)] = time.perf_counter()

    def after(module: nn.Module, args: tuple, output: object) -> None:
        seconds = time.perf_counter() - starts.pop(id(module))
        rows = args[0].numel() // module.in_features  # tokens (any leading shape)
        record.append((rows * module.in_features * module.out_features, seconds))

    layers = [module for module in model.modules() if is_linear_layer(module)]
    handles = [layer.register_forward_pre_hook(before) for layer in layers]
    handles += [layer.register_forward_hook(after) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def profile_linear_layers(
    model: nn.Module, run: Callable[[], object], repeats: int = 3
) -> LinearProfile:
    """Count the linear layers' MACs in one call of `run` and time them with forward hooks.

    MACs = sum over linear-layer calls of rows * in_features * out_features, where rows is the
    number of input vectors (batch x tokens). The time inside the linear layers (hook to hook)
    and the whole call are medians over `repeats` calls. The hooks add a few microseconds per
    layer, so `total_seconds` here is slightly above an unhooked latency.
    """
    per_call: list[tuple[int, float, float]] = []
    for _ in range(repeats):
        record: list[tuple[int, float]] = []
        with _linear_hooks(model, record):
            start = time.perf_counter()
            run()
            total = time.perf_counter() - start
        per_call.append((sum(m for m, _ in record), sum(s for _, s in record), total))
    macs = per_call[0][0]
    linear = statistics.median(s for _, s, _ in per_call)
    total = statistics.median(t for _, _, t in per_call)
    return LinearProfile(macs=macs, linear_seconds=linear, total_seconds=total)


def amdahl_speedup(parallel_fraction: float, speedup_of_fraction: float) -> float:
    """Amdahl's law: speeding up a fraction f of the time by s speeds the whole up by
    1 / ((1 - f) + f / s). Example: f = 0.8, s = 4 -> 1 / (0.2 + 0.2) = 2.5."""
    if not 0 <= parallel_fraction <= 1 or speedup_of_fraction <= 0:
        raise ValueError("need 0 <= fraction <= 1 and a positive speedup")
    return 1 / ((1 - parallel_fraction) + parallel_fraction / speedup_of_fraction)


@dataclass(frozen=True)
class LayerSteps:
    """Median milliseconds of one linear layer, whole and step by step (profile_w8a8_steps)."""

    fp32: float  # nn.Linear in float32
    w8a8: float  # W8A8Linear.forward, all steps
    quantize: float  # W8A8Linear.quantize_activations: absmax per token, divide, round, cast
    int_mm: float  # torch._int_mm: the int8 x int8 -> int32 product alone
    rescale: float  # W8A8Linear.rescale: s_x * s_w * acc + b
    torch_ao: float  # torch.ao's dynamic int8 Linear (fbgemm), all steps


def profile_w8a8_steps(linear: nn.Linear, x: torch.Tensor, repeats: int = 50) -> LayerSteps:
    """Time one layer as FP32, as W8A8Linear and as torch.ao's dynamic int8, and W8A8Linear's
    three steps on their own, interleaved in one run, to see where an int8 layer spends its time.

    The steps are the very calls forward makes, on the same input: quantize_activations(rows),
    torch._int_mm(x_q, int8_weight_t), rescale(acc, s_x). Their sum is about w8a8 (the rest is
    dispatch and the reshapes). Example: for MiniLM's first feed-forward layer, (704, 384) @
    (384, 1536), the int8 product alone is about a quarter of FP32's time.
    """
    from tutorlib.layers import W8A8Linear

    if not isinstance(linear, nn.Linear):
        raise TypeError(f"profile_w8a8_steps takes an nn.Linear, got {type(linear).__name__}")
    if x.ndim == 0 or x.shape[-1] != linear.in_features or not x.is_floating_point():
        raise ValueError(
            f"x must be a float tensor of shape (..., {linear.in_features}), "
            f"got {x.dtype} {tuple(x.shape)}"
        )
    layer = W8A8Linear.from_linear(linear)
    torch_ao = torch_ao_dynamic(nn.Sequential(linear))
    rows = x.reshape(-1, linear.in_features)  # (tokens, in_features)
    with torch.inference_mode():
        x_q, x_scale = layer.quantize_activations(rows)
        acc = torch._int_mm(x_q, layer.int8_weight_t)  # (tokens, out_features) int32
        runs = {
            "fp32": lambda: linear(x),
            "w8a8": lambda: layer(x),
            "quantize": lambda: layer.quantize_activations(rows),
            "int_mm": lambda: torch._int_mm(x_q, layer.int8_weight_t),
            "rescale": lambda: layer.rescale(acc, x_scale),
            "torch_ao": lambda: torch_ao(x),
        }
        samples = time_interleaved(runs, repeats=repeats, desc="one layer, step by step")
    return LayerSteps(**{name: median_ms(seconds) for name, seconds in samples.items()})


def capture_linear_inputs(model: nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """The input of every linear layer during one call of `run`, as rows (vectors, features).

    Forward pre-hooks copy each layer's first argument, reshaped to (-1, in_features); layers
    that read the same tensor (a BERT block's query, key and value) are kept under each name.
    The hooks are removed afterwards.
    """
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str, module: nn.Module, args: tuple) -> None:  # None: leave the input as is
        if name not in inputs:
            inputs[name] = args[0].detach().reshape(-1, module.in_features).float().clone()

    handles = [
        module.register_forward_pre_hook(functools.partial(keep, name))
        for name, module in model.named_modules()
        if is_linear_layer(module)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return inputs


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
    block, _, role = name.removeprefix("encoder.layer.").partition(".")
    if name.startswith("encoder.layer.") and role in BERT_LINEAR_ROLES:
        return f"{block} {BERT_LINEAR_ROLES[role]}"
    return name.split(".")[0]


def activation_stats(layer: str, rows: torch.Tensor) -> ActivationStats:
    """Quantize rows (tokens, features) to symmetric int8 per tensor and per token; SQNR of each.

    SQNR = 10 log10(sum x**2 / sum (x - x_hat)**2) from `tutorlib.quantization`. One outlier
    token sets the per-tensor scale s = max|x| / 127 for every token; per token, each row gets
    s_t = max|x[t]| / 127, a finer grid wherever that row is small.
    """
    per_tensor = fake_quantize(rows, bits=8, symmetric=True)
    per_token = fake_quantize(rows, bits=8, symmetric=True, dim=0)  # dim 0 keeps a scale per row
    return ActivationStats(
        layer=layer,
        abs_max=rows.abs().max().item(),
        median_token_abs_max=rows.abs().amax(dim=1).median().item(),
        sqnr_per_tensor_db=quantization_error(rows, per_tensor).sqnr_db,
        sqnr_per_token_db=quantization_error(rows, per_token).sqnr_db,
    )
