"""Lesson 5: measuring how fast a (quantized) model runs on this CPU, and why.

Latency is the median of repeated runs after a warm-up, with the variants interleaved (each
round runs every variant once, in a rotating order) so that a burst of load from other programs
hits all of them alike; every ratio is taken within one such run. The limit is the machine's
own matmul peak: a large `torch._int_mm` (int8) and `torch.mm` (fp32, bf16) give operations per
second, and each variant's linear layers are timed with forward hooks and reported as a
fraction of the int8 peak.

Left out on purpose: GPUs, energy, memory bandwidth measurements, thread-count sweeps, and
statistics beyond the median (the CPU is shared, so the spread says more about the neighbours
than about the model).
"""

import contextlib
import copy
import ctypes
import functools
import json
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm  # the console bar: tqdm.auto would need ipywidgets in Jupyter

from tutorlib.memory import model_size_bytes

if TYPE_CHECKING:  # only for type hints: importing transformers takes seconds
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "INT8_FLAGS",
    "CpuInfo",
    "parse_cpuinfo",
    "cpu_info",
    "keep_freed_memory",
    "time_interleaved",
    "median_ms",
    "ops_per_second",
    "MatmulPeaks",
    "measure_matmul_peaks",
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
    "VARIANTS",
    "build_variants",
    "BenchmarkRow",
    "min_cosines",
    "run_benchmark",
    "Target",
    "check_targets",
    "format_table",
    "write_json",
]

# /proc/cpuinfo flags of the x86 instructions that make int8 (and bf16) matmuls fast:
# VNNI multiplies 8-bit integers and accumulates in 32 bits in one instruction (vpdpbusd);
# AMX multiplies whole int8/bf16 tiles; avx512_bf16 has the bf16 dot product (vdpbf16ps).
INT8_FLAGS: tuple[str, ...] = (
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "amx_tile",
    "avx512_bf16",
)


# ---------------------------------------------------------------- the machine


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's name, its logical CPU count and which of INT8_FLAGS it reports."""

    model_name: str
    logical_cpus: int
    flags: tuple[str, ...]  # the subset of INT8_FLAGS present, in INT8_FLAGS order

    def has(self, flag: str) -> bool:
        """True if the CPU reports `flag` (one of INT8_FLAGS)."""
        if flag not in INT8_FLAGS:
            raise ValueError(f"unknown flag {flag!r}; choose one of {INT8_FLAGS}")
        return flag in self.flags

    def describe(self) -> str:
        """One line naming the machine, e.g. 'AMD EPYC, 2 logical CPUs, avx512_vnni, ...'."""
        found = ", ".join(self.flags) if self.flags else f"none of {', '.join(INT8_FLAGS)}"
        return f"{self.model_name}, {self.logical_cpus} logical CPUs, int8/bf16 units: {found}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read the model name, the processor count and the INT8_FLAGS from /proc/cpuinfo text.

    Example: a text with two 'processor' blocks, 'model name : AMD EPYC' and 'flags : ...
    avx512_vnni avx512_bf16 ...' gives CpuInfo('AMD EPYC', 2, ('avx512_vnni', 'avx512_bf16')).
    """
    fields = [line.split(":", 1) for line in text.splitlines() if ":" in line]
    pairs = [(key.strip(), value.strip()) for key, value in fields]
    names = [value for key, value in pairs if key == "model name"]
    flag_lines = [value.split() for key, value in pairs if key == "flags"]
    present = set(flag_lines[0]) if flag_lines else set()
    return CpuInfo(
        model_name=names[0] if names else "unknown CPU",
        logical_cpus=sum(key == "processor" for key, _ in pairs),
        flags=tuple(flag for flag in INT8_FLAGS if flag in present),
    )


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """CpuInfo of this machine (Linux); 'unknown CPU' with no flags where the file is missing."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    return parse_cpuinfo(text)


# glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS.

    By default glibc serves a large block (a few MB, such as a (704, 1536) float32 activation)
    with a fresh mmap or by growing the heap, and gives the memory back when it is freed; the
    next block of that size then page-faults on every 4 KiB page it touches. Operators that
    create several large temporaries per call (an int8 layer's int32 products, its rescaled
    output) pay this many times per forward. glibc raises its threshold by itself after large
    blocks are freed, so the cost depends on the process's history; setting the mmap threshold
    (to 32 MiB) and the trim threshold (to 1 GiB) keeps those pages mapped from the start, as
    jemalloc or tcmalloc would. Applies to the whole process and every variant alike. Returns
    False where there is no glibc (macOS, musl), changing nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    return bool(mmap_ok and trim_ok)


# ---------------------------------------------------------------- timing


def time_interleaved(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    desc: str = "timing",
) -> dict[str, list[float]]:
    """Seconds per call of each run, interleaved: round r calls every run once.

    Every run is first called `warmup` times untimed (allocations, lazy initialisation,
    caches). Then, for r in 0..repeats-1, the runs are called in the order rotated by r
    (round 0: a, b, c; round 1: b, c, a; ...), so neither a slow start nor a neighbour's
    burst of load favours one variant. Returns {name: [seconds, ...]} with `repeats` entries.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not runs:
        raise ValueError("runs is empty: give at least one {name: callable}")
    names = list(runs)
    for name in names:
        for _ in range(warmup):
            runs[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(repeats), desc=desc, leave=False):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def median_ms(seconds: Sequence[float]) -> float:
    """Median of a list of durations, in milliseconds. Example: [0.003, 0.001, 0.002] -> 2.0."""
    if len(seconds) == 0:
        raise ValueError("no durations to take the median of")
    return 1e3 * statistics.median(seconds)


def ops_per_second(m: int, k: int, n: int, seconds: float) -> float:
    """Throughput of an (m, k) @ (k, n) matmul: 2 * m * k * n operations (a multiply and an add
    per term) divided by the time. Example: 1024**3 terms in 0.01 s -> 2.147e11 ops/s."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 2 * m * k * n / seconds


@dataclass(frozen=True)
class MatmulPeaks:
    """Operations per second of a large square matmul in int8 (int32 sums), fp32 and bf16."""

    size: int
    int8_ops_per_s: float
    fp32_ops_per_s: float
    bf16_ops_per_s: float


def measure_matmul_peaks(size: int = 2048, repeats: int = 10, seed: int = 0) -> MatmulPeaks:
    """This machine's peaks: `torch._int_mm` and `torch.mm` on (size, size) @ (size, size).

    The inputs are random (seeded) and contiguous, the layout W8A8Linear gives _int_mm. A peak
    is the best the machine can do, and other programs can only slow a call down, so each
    peak comes from the fastest of `repeats` interleaved calls (after one warm-up each).
    """
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, size, size, generator=generator)
    a_int8, b_int8 = torch.randint(
        -127, 128, (2, size, size), generator=generator, dtype=torch.int8
    )
    a_bf16, b_bf16 = a.bfloat16(), b.bfloat16()
    samples = time_interleaved(
        {
            "int8": lambda: torch._int_mm(a_int8, b_int8),
            "fp32": lambda: torch.mm(a, b),
            "bf16": lambda: torch.mm(a_bf16, b_bf16),
        },
        repeats=repeats,
        warmup=1,
        desc="matmul peaks",
    )
    peak = {name: ops_per_second(size, size, size, min(s)) for name, s in samples.items()}
    return MatmulPeaks(size, peak["int8"], peak["fp32"], peak["bf16"])


# ---------------------------------------------------------------- where the time goes


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
    torch_ao = _torch_ao_dynamic(nn.Sequential(linear))
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


# ---------------------------------------------------------------- activations: why per token


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
    from tutorlib.quantization import fake_quantize, quantization_error

    per_tensor = fake_quantize(rows, bits=8, symmetric=True)
    per_token = fake_quantize(rows, bits=8, symmetric=True, dim=0)  # dim 0 keeps a scale per row
    return ActivationStats(
        layer=layer,
        abs_max=rows.abs().max().item(),
        median_token_abs_max=rows.abs().amax(dim=1).median().item(),
        sqnr_per_tensor_db=quantization_error(rows, per_tensor).sqnr_db,
        sqnr_per_token_db=quantization_error(rows, per_token).sqnr_db,
    )


# ---------------------------------------------------------------- the benchmark

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


def _quanto_w8a8(
    model: nn.Module, tokenizer: "PreTrainedTokenizerBase", sentences: Sequence[str]
) -> nn.Module:
    """optimum-quanto's int8 weights and static int8 activations, calibrated on `sentences`.

    quantize(weights=qint8, activations=qint8) marks every Linear; inside Calibration() each
    forward records the activations' range (one scale per tensor), in batches of 32; freeze
    then stores the int8 weights. In place; the model is also returned.
    """
    from optimum.quanto import Calibration, freeze, qint8, quantize

    quantize(model, weights=qint8, activations=qint8)
    with torch.inference_mode(), Calibration():
        for start in range(0, len(sentences), 32):
            batch = tokenizer(
                list(sentences[start : start + 32]), padding=True, return_tensors="pt"
            )
            model(**batch)
    freeze(model)
    return model


def _torch_ao_dynamic(model: nn.Module) -> nn.Module:
    """torch.ao's dynamic int8 quantization of every nn.Linear (a new model is returned)."""
    with warnings.catch_warnings():
        # torch 2.13 warns that torch.ao.quantization is deprecated in favour of torchao and that
        # quantized tensor dtypes will go; it still runs, and it is the reference compared with.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


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
    from tutorlib.layers import W8A8Linear, W8A16Linear, quantize_with_quanto, replace_linear

    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    make = {
        "FP32": lambda m: m,
        "BF16": lambda m: m.to(torch.bfloat16),
        "quanto W8": quantize_with_quanto,
        "quanto W8A8": lambda m: _quanto_w8a8(m, tokenizer, calibration_sentences),
        "torch.ao dynamic": _torch_ao_dynamic,
        "tutorlib W8A16": lambda m: replace_linear(m, W8A16Linear),
        "tutorlib W8A8": lambda m: replace_linear(m, W8A8Linear),
    }
    copies = {name: model if name == "FP32" else copy.deepcopy(model) for name in names}
    return {name: make[name](copied).eval() for name, copied in copies.items()}


@dataclass(frozen=True)
class BenchmarkRow:
    """One variant at one batch size. Times are medians; ratios come from the same run."""

    variant: str
    batch_size: int
    tokens: int  # vectors per forward: batch_size x padded sequence length
    median_ms: float  # median latency of one forward of the batch
    speedup: float  # baseline median / this median (> 1 is faster than the baseline)
    size_bytes: int  # model_size_bytes of the variant
    min_cosine: float  # smallest cosine, over every sentence, of its embedding to the baseline's
    linear_fraction: float  # share of a forward spent inside linear layers (forward hooks)
    linear_ms: float  # linear_fraction * median_ms: the linear layers' part of the latency
    linear_ops_per_s: float  # 2 * linear MACs / linear time
    fraction_of_int8_peak: float  # linear_ops_per_s / the int8 matmul peak


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Callable[[], object]:
    """A no-argument call of model(**batch) without autograd, for the timers."""

    def run() -> object:
        with torch.inference_mode():
            return model(**batch)

    return run


def min_cosines(
    variants: Mapping[str, nn.Module],
    tokenizer: "PreTrainedTokenizerBase",
    sentences: Sequence[str],
    baseline: str = "FP32",
) -> dict[str, float]:
    """For each variant, min over sentences of cos(embedding, baseline's embedding).

    Embeddings come from `tutorlib.models.embed`, which L2-normalises them, so the cosine of
    two embeddings is their dot product. Example: the baseline itself gets 1.0 (up to rounding).
    """
    from tutorlib.models import embed

    reference = embed(variants[baseline], tokenizer, sentences)  # (n, hidden), unit rows
    return {
        name: (embed(model, tokenizer, sentences) * reference).sum(dim=1).min().item()
        for name, model in variants.items()
    }


def _benchmark_row(
    name: str,
    batch_size: int,
    batch: Mapping[str, torch.Tensor],
    model: nn.Module,
    medians: Mapping[str, float],
    baseline: str,
    min_cosine: float,
    int8_peak_ops_per_s: float,
) -> BenchmarkRow:
    """One BenchmarkRow: the median from the interleaved run, the linear share from hooked calls.

    The share comes from `profile_linear_layers` (linear time and total time of the same
    calls); applied to the interleaved median, it splits that latency into the linear layers'
    part and the rest. Throughput = 2 * MACs / that linear part.
    """
    profile = profile_linear_layers(model, _forward(model, batch))
    linear_ms = profile.linear_fraction * medians[name]
    linear_ops_per_s = 2 * profile.macs / (linear_ms / 1e3)
    return BenchmarkRow(
        variant=name,
        batch_size=batch_size,
        tokens=batch["input_ids"].numel(),
        median_ms=medians[name],
        speedup=medians[baseline] / medians[name],
        size_bytes=model_size_bytes(model),
        min_cosine=min_cosine,
        linear_fraction=profile.linear_fraction,
        linear_ms=linear_ms,
        linear_ops_per_s=linear_ops_per_s,
        fraction_of_int8_peak=linear_ops_per_s / int8_peak_ops_per_s,
    )


def run_benchmark(
    variants: Mapping[str, nn.Module],
    tokenizer: "PreTrainedTokenizerBase",
    sentences: Sequence[str],
    int8_peak_ops_per_s: float,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 10,
    warmup: int = 2,
    baseline: str = "FP32",
) -> list[BenchmarkRow]:
    """Time every variant at every batch size and compare its embeddings with the baseline's.

    A batch of size b is the first b sentences, tokenized once and padded to the longest; the
    timed call is the model's forward on it (tokenizing and pooling are the same for every
    variant, so they are left out). Latencies come from `time_interleaved`; the share of time
    inside linear layers from `profile_linear_layers` (separate, hooked calls); min_cosine from
    `min_cosines` over all `sentences`. Returns rows in the order batch size, then variant.
    """
    if baseline not in variants:
        raise ValueError(f"the baseline {baseline!r} is not among the variants {list(variants)}")
    if any(b < 1 or b > len(sentences) for b in batch_sizes):
        raise ValueError(f"batch sizes must lie in [1, {len(sentences)}], got {batch_sizes}")
    cosines = min_cosines(variants, tokenizer, sentences, baseline)
    rows = []
    for batch_size in batch_sizes:
        batch = tokenizer(list(sentences[:batch_size]), padding=True, return_tensors="pt")
        runs = {name: _forward(model, batch) for name, model in variants.items()}
        samples = time_interleaved(runs, repeats, warmup, desc=f"batch {batch_size}")
        medians = {name: median_ms(s) for name, s in samples.items()}
        rows += [
            _benchmark_row(
                name,
                batch_size,
                batch,
                model,
                medians,
                baseline,
                cosines[name],
                int8_peak_ops_per_s,
            )
            for name, model in variants.items()
        ]
    return rows


# ---------------------------------------------------------------- the targets and the report


@dataclass(frozen=True)
class Target:
    """A goal of the lesson, the number measured for it, and whether it was met."""

    goal: str
    measured: float
    required: float
    met: bool


def _row(rows: Sequence[BenchmarkRow], variant: str, batch_size: int) -> BenchmarkRow:
    for row in rows:
        if row.variant == variant and row.batch_size == batch_size:
            return row
    raise ValueError(f"no row for {variant!r} at batch size {batch_size}")


def check_targets(
    rows: Sequence[BenchmarkRow],
    variant: str = "tutorlib W8A8",
    large_batch: int = 32,
    small_batch: int = 1,
) -> list[Target]:
    """The lesson's targets for `variant`, as ratios measured in the same run.

    At the large batch: >= 4x faster than FP32; faster than BF16 (ratio > 1); at least as fast
    as torch.ao dynamic (ratio >= 1). Every embedding's cosine to FP32 >= 0.995. At the small
    batch: no slower than FP32 (ratio >= 1). A ratio "X over Y" is Y's latency / X's latency.
    """
    ours = _row(rows, variant, large_batch)
    ours_small = _row(rows, variant, small_batch)

    def over(other: str) -> float:
        return _row(rows, other, large_batch).median_ms / ours.median_ms

    checks = [
        (f"batch {large_batch}: speedup over FP32", ours.speedup, 4.0),
        (f"batch {large_batch}: speedup over BF16", over("BF16"), 1.0),
        (f"batch {large_batch}: speedup over torch.ao dynamic", over("torch.ao dynamic"), 1.0),
        ("min cosine of the embeddings to FP32", ours.min_cosine, 0.995),
        (f"batch {small_batch}: speedup over FP32", ours_small.speedup, 1.0),
    ]
    # "faster than BF16" is strict, every other goal is "at least"
    return [
        Target(
            goal,
            measured,
            required,
            measured > required if "BF16" in goal else measured >= required,
        )
        for goal, measured, required in checks
    ]


# (header, BenchmarkRow field or derived value, width, decimals; None for text and integers)
_COLUMNS: tuple[tuple[str, str, int, int | None], ...] = (
    ("variant", "variant", 16, None),
    ("batch", "batch_size", 5, None),
    ("tokens", "tokens", 6, None),
    ("ms", "median_ms", 7, 2),
    ("x FP32", "speedup", 6, 2),
    ("MB", "size_mb", 5, 1),
    ("min cos", "min_cosine", 7, 4),
    ("lin ms", "linear_ms", 7, 2),
    ("%peak", "peak_percent", 5, 1),
)


def format_table(rows: Sequence[BenchmarkRow]) -> str:
    """A fixed-width text table of the rows, one line each, under a header line (80 columns).

    ms: median latency; x FP32: speedup; MB: size in 10**6 bytes; min cos: minimum cosine to
    the baseline; lin ms: the linear layers' part of the latency; %peak: their throughput as a
    percentage of the int8 matmul peak. The variant name is left-aligned, numbers
    right-aligned with fixed decimals, so the same rows give the same text.
    """
    header = "  ".join(
        title.ljust(width) if decimals is None and key == "variant" else title.rjust(width)
        for title, key, width, decimals in _COLUMNS
    )
    lines = [header]
    for row in rows:
        values = asdict(row) | {
            "size_mb": row.size_bytes / 1e6,
            "peak_percent": 100 * row.fraction_of_int8_peak,
        }
        cells = []
        for _, key, width, decimals in _COLUMNS:
            value = values[key]
            if isinstance(value, str):
                cells.append(value.ljust(width))
            elif decimals is None:
                cells.append(f"{value:>{width}d}")
            else:
                cells.append(f"{value:>{width}.{decimals}f}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def write_json(
    path: str | Path,
    rows: Sequence[BenchmarkRow],
    machine: CpuInfo,
    peaks: MatmulPeaks,
    settings: Mapping[str, object],
) -> Path:
    """Write the benchmark as JSON: {"machine", "peaks", "settings", "rows"}; returns the path.

    Parent folders are created. Every value is a plain number, string or list, so the file
    reads back with json.load into the same numbers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": asdict(machine),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peaks": asdict(peaks),
        "settings": dict(settings),
        "rows": [asdict(row) for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
