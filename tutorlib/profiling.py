"""Lesson 5: where a forward pass spends its time, and how activations quantize.

Forward hooks time every linear layer inside one call and count its multiply-accumulates, which
gives the share of time in linear layers and, with Amdahl's law, the best speedup that faster
linear layers alone can give. Hooks also capture each linear layer's input, to measure how well
it quantizes to int8 with one scale per tensor or one per token.

Left out on purpose: torch.profiler's operator-level traces (too detailed for the lesson's
question), memory profiles, and layers other than linear ones.
"""

import contextlib
import copy
import functools
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tutorlib._checks import check_float_tensor, check_int, check_real, check_tensor
from tutorlib.quantization import fake_quantize, quantization_error
from tutorlib.references import torch_ao_dynamic
from tutorlib.timing import median_ms, time_interleaved

if TYPE_CHECKING:  # only for type hints: pandas takes a second to import
    import pandas as pd

__all__ = [
    "LinearProfile",
    "is_linear_layer",
    "large_allocations",
    "operator_times",
    "profile_linear_layers",
    "amdahl_speedup",
    "LayerSteps",
    "profile_w8a8_steps",
    "LinearFreeCap",
    "linear_free_cap",
    "capture_linear_inputs",
    "ActivationStats",
    "BERT_LINEAR_ROLES",
    "bert_layer_label",
    "activation_stats",
    "activation_table",
]


def _check_model_and_run(model: object, run: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(run):
        raise TypeError(f"run must be a callable taking no arguments, got {type(run).__name__}")


def is_linear_layer(module: nn.Module) -> bool:
    """True for a module that computes y = x W^T + b: anything with integer in_features and
    out_features (nn.Linear, quanto's QLinear, torch.ao's dynamic Linear, W8A16/W8A8Linear)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
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
    _check_model_and_run(model, run)
    check_int(repeats, "repeats", minimum=1)
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
    check_real(parallel_fraction, "parallel_fraction", 0.0, 1.0)
    check_real(speedup_of_fraction, "speedup_of_fraction", 0.0, strict_minimum=True)
    return 1 / ((1 - parallel_fraction) + parallel_fraction / speedup_of_fraction)


@dataclass(frozen=True)
class LayerSteps:
    """Median milliseconds of one linear layer, whole and step by step (profile_w8a8_steps)."""

    fp32: float  # nn.Linear in float32
    w8a8: float  # W8A8Linear.forward, all steps
    quantize: float  # step 1: absmax per token, divide, round, cast to int8
    integer_matmul: float  # step 2: the int8 product times s_w (packed oneDNN from 10M MACs)
    rescale: float  # step 3: s_x * y' + b, in place
    torch_ao: float  # torch.ao's dynamic int8 Linear (fbgemm), all steps


def profile_w8a8_steps(linear: nn.Linear, x: torch.Tensor, repeats: int = 50) -> LayerSteps:
    """Time one layer as FP32, as W8A8Linear and as torch.ao's dynamic int8, and W8A8Linear's
    three steps on their own, interleaved in one run, to see where an int8 layer spends its time.

    The steps are the very calls forward makes, on the same input (its unchecked hot path);
    their sum is about w8a8 (the rest is dispatch and the reshapes). Example: MiniLM's first
    feed-forward layer (384 -> 1536) on its input at batch 32, x of shape (704, 384), gives
    the medians of the six runs in milliseconds.
    """
    from tutorlib.layers import _LAST, W8A8Linear

    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    check_float_tensor(check_tensor(x, "x"), "x")
    if x.dtype != torch.float32:
        raise TypeError(f"x must be float32, the FP32 layer's dtype, got {x.dtype}; use x.float()")
    if x.ndim == 0 or x.shape[-1] != linear.in_features:
        raise ValueError(f"x must have shape (..., {linear.in_features}), got {tuple(x.shape)}")
    check_int(repeats, "repeats", minimum=1)
    layer = W8A8Linear.from_linear(linear)
    torch_ao = torch_ao_dynamic(nn.Sequential(linear))
    rows = x.detach().reshape(-1, linear.in_features)  # (tokens, in_features)
    limit = torch.finfo(torch.float32).max

    def whole_layer() -> torch.Tensor:
        _LAST.forget()  # one layer on its own: no previous layer quantized its input
        return layer(x)

    with torch.inference_mode():
        x_q, x_scale = layer.quantize_activations(rows)  # own copies: stable while timing
        y = layer.integer_matmul(x_q)
        encoding = layer._encoding(rows.shape[0])  # what forward hands the kernel: u8 or int8
        x_kernel = layer._quantize(rows, "x", limit, encoding)[0].clone()
        runs = {
            "fp32": lambda: linear(x),
            "w8a8": whole_layer,
            "quantize": lambda: layer._quantize(rows, "x", limit, encoding),
            "integer_matmul": lambda: layer._integer_matmul(x_kernel),
            "rescale": lambda: layer._rescale(y, x_scale),  # in place: y grows, time does not
            "torch_ao": lambda: torch_ao(x),
        }
        samples = time_interleaved(runs, repeats=repeats, desc="one layer, step by step")
    return LayerSteps(**{name: median_ms(seconds) for name, seconds in samples.items()})


class _FreeLinear(nn.Module):
    """Stands in for a linear layer and does no work: returns zeros of the output's shape.

    The zeros are made once per (shape, dtype), outside inference mode, and the same tensor is
    returned at every call, untouched: zeroing it again would be work a real layer does not do
    either. A model that changes it in place (MiniLM's in-place GELU maps 0 to 0) changes what
    later calls see, but not which operations run, and so not the time measured.
    """

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self._zeros: dict[tuple[torch.Size, torch.dtype], torch.Tensor] = {}

    @classmethod
    def from_linear(cls, linear: nn.Module) -> "_FreeLinear":
        return cls(linear.out_features)

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        key = (torch.Size((*x.shape[:-1], self.out_features)), x.dtype)
        zeros = self._zeros.get(key)
        if zeros is None:
            with torch.inference_mode(False):
                zeros = self._zeros[key] = torch.zeros(key[0], dtype=key[1])
        return zeros


@dataclass(frozen=True)
class LinearFreeCap:
    """A forward as it is and with linear layers that cost nothing (linear_free_cap)."""

    full_ms: float  # median forward of the model
    rest_ms: float  # median forward of a copy whose linear layers return zeros at no cost

    @property
    def cap(self) -> float:
        """full / rest: what infinitely fast linear layers would give (Amdahl, r -> inf)."""
        return self.full_ms / self.rest_ms

    def linear_budget_ms(self, speedup: float) -> float:
        """The time the linear layers may take for the forward to be `speedup` times faster:
        full / speedup - rest (negative when the rest alone is too slow). Example: full 75 ms,
        rest 15 ms, speedup 2.5 -> 75 / 2.5 - 15 = 15 ms."""
        check_real(speedup, "speedup", 0.0, strict_minimum=True)
        return self.full_ms / speedup - self.rest_ms


def linear_free_cap(
    model: nn.Module, forward: Callable[[nn.Module], object], repeats: int = 10
) -> LinearFreeCap:
    """Measure the ceiling of any faster linear layers: the forward without their work.

    A copy of `model` gets every nn.Linear replaced by a stand-in that returns zeros of the
    output's shape, made once (`replace_linear`, nothing skipped); `forward(m)` runs a model, and
    the original and the copy are timed interleaved, without autograd, `repeats` times each.
    rest_ms is then everything but the linear layers' work (attention, GELU, LayerNorm,
    additions, embeddings, the Python around them), and full_ms / rest_ms is Amdahl's bound with
    the linear part sped up infinitely: no int8 kernel, however fast, can beat it. Attention's
    cost does not depend on the values it multiplies (zeros here), nor does any other operation
    of a transformer's forward. Example: FP32 MiniLM at batch 32 took ~71 ms on this course's
    machine and ~13.5 ms without the linear layers' work: a cap of ~5.3x.
    """
    from tutorlib.layers import replace_linear

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(forward):
        raise TypeError(
            f"forward must be a callable taking the model, e.g. lambda m: m(**batch), "
            f"got {type(forward).__name__}"
        )
    check_int(repeats, "repeats", minimum=1)
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise ValueError("model has no nn.Linear, so there is nothing to take out; pass a model "
                         "with linear layers (the original, not a quantized copy)")  # fmt: skip
    free = replace_linear(copy.deepcopy(model), _FreeLinear, skip=())

    def timed(m: nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():  # as the benchmark times every variant
                return forward(m)

        return run

    samples = time_interleaved(
        {"full": timed(model), "rest": timed(free)}, repeats=repeats, desc="without linear work"
    )
    return LinearFreeCap(full_ms=median_ms(samples["full"]), rest_ms=median_ms(samples["rest"]))


def large_allocations(run: Callable[[], object], min_bytes: int, warmup: int = 2) -> list[int]:
    """Bytes of every allocation of at least `min_bytes` made by the operators of one call.

    torch.profiler with profile_memory=True records, per operator, the memory it allocated
    and did not free itself; after `warmup` untimed calls (which create caches and scratch
    buffers), one profiled call of `run` lists the large blocks it asks the allocator for.
    Example: nn.Linear on 704 tokens, 384 -> 1536, allocates its output, [4325376]
    (704 * 1536 * 4 bytes); a layer that makes two more temporaries of that size lists three.
    """
    from torch.profiler import ProfilerActivity, profile

    if not callable(run):
        raise TypeError(f"run must be a callable taking no arguments, got {type(run).__name__}")
    check_int(min_bytes, "min_bytes", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    with torch.inference_mode():
        for _ in range(warmup):
            run()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run()
    return [e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage >= min_bytes]


def operator_times(run: Callable[[], object], repeats: int = 5, top: int = 10) -> "pd.DataFrame":
    """Where one call of `run` spends its time, by top-level operator (torch.profiler).

    Each operator that no other operator called (aten::linear, aten::layer_norm, aten::gelu,
    aten::scaled_dot_product_attention, ...) gets its total time, averaged over `repeats`
    profiled calls, in ms; the `top` largest are listed, then "python and other", the wall
    time not inside any operator (Python, module calls, hooks).
    Returns a DataFrame with columns operator, calls (per run), ms (per run).
    """
    import pandas as pd
    from torch.profiler import ProfilerActivity, profile

    if not callable(run):
        raise TypeError(f"run must be a callable taking no arguments, got {type(run).__name__}")
    check_int(repeats, "repeats", minimum=1)
    check_int(top, "top", minimum=1)
    with torch.inference_mode():
        run()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            wall_ms = 1e3 * (time.perf_counter() - start) / repeats
    totals: dict[str, list[float]] = {}
    for event in prof.events():
        if event.cpu_parent is None:  # top-level: its time includes the operators it calls
            entry = totals.setdefault(event.name, [0, 0.0])
            entry[0] += 1
            entry[1] += event.cpu_time_total / 1e3  # microseconds -> ms
    frame = pd.DataFrame(
        [(name, calls / repeats, ms / repeats) for name, (calls, ms) in totals.items()],
        columns=["operator", "calls", "ms"],
    ).sort_values("ms", ascending=False, ignore_index=True)
    other = wall_ms - frame["ms"].sum()
    listed = frame.head(top)
    rest = pd.DataFrame([("python and other", float("nan"), other)], columns=frame.columns)
    return pd.concat([listed, rest], ignore_index=True)


def capture_linear_inputs(model: nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """The input of every linear layer during one call of `run`, as rows (vectors, features).

    Forward pre-hooks copy each layer's first argument, reshaped to (-1, in_features); layers
    that read the same tensor (a BERT block's query, key and value) are kept under each name.
    The hooks are removed afterwards.
    """
    _check_model_and_run(model, run)
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
