"""Lesson 5: what a forward pass does, seen through hooks and the profiler.

Time inside every linear layer (forward pre- and post-hooks), the inputs each linear layer
receives, the large allocations of a call, and a table of operator times.
Left out on purpose: GPU profiling and memory timelines.
"""

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tutorlib._checks import check_int
from tutorlib.quant.gptq import calibration_rows, check_token_mask

if TYPE_CHECKING:  # only for type hints: pandas takes a second to import
    import pandas as pd

__all__ = [
    "is_linear_layer",
    "LinearProfile",
    "profile_linear_layers",
    "large_allocations",
    "operator_times",
    "capture_linear_inputs",
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
    repeats = check_int(repeats, "repeats", minimum=1)
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
    min_bytes = check_int(min_bytes, "min_bytes", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)
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
    repeats = check_int(repeats, "repeats", minimum=1)
    top = check_int(top, "top", minimum=1)
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


def capture_linear_inputs(
    model: nn.Module, run: Callable[[], object], token_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The input of every linear layer during one call of `run`, as rows (vectors, features).

    Forward pre-hooks copy each layer's first argument, reshaped to (-1, in_features); layers
    that read the same tensor (a BERT block's query, key and value) are kept under each name.
    With `token_mask` (batch, seq), a tokenizer's attention_mask for run's batch, only the real
    tokens' rows are kept (`tutorlib.quant.gptq.calibration_rows`: per-position inputs lose their
    padding, per-sequence inputs such as a pooler's are kept whole). The hooks are removed
    afterwards.
    """
    _check_model_and_run(model, run)
    if token_mask is not None:  # checked now, not from inside a hook halfway through run()
        check_token_mask(token_mask)
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str, module: nn.Module, args: tuple) -> None:  # None: leave the input as is
        if name in inputs:
            return
        x = args[0].detach().float()
        if token_mask is None:
            inputs[name] = x.reshape(-1, module.in_features).clone()
        else:  # real tokens' rows; an input of one row per sequence (a pooler's) is kept whole
            inputs[name] = calibration_rows(x, token_mask).clone()

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
