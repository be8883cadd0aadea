"""Lesson 5: the int8 inference benchmark: variants of one model, timed and compared.

`build_variants` makes copies of a model in FP32, BF16, optimum-quanto's and torch.ao's int8
and tutorlib's W8A16 and W8A8; `run_benchmark` times them interleaved at each batch size, splits
each latency into linear layers and the rest, and compares each variant's embeddings with the
baseline's; `check_targets` reads the lesson's goals off the rows, each looked up by key.

Left out on purpose: other models and tasks, GPUs, and any tuning per variant (every variant
runs with the same threads, allocator and inputs).
"""

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from tutorlib.layers import W8A8Linear, W8A16Linear, replace_linear
from tutorlib.machine import CpuInfo
from tutorlib.memory import model_size_bytes
from tutorlib.profiling import profile_linear_layers
from tutorlib.references import quantize_with_quanto, quanto_w8a8, torch_ao_dynamic
from tutorlib.search import cosines_to_reference, embed
from tutorlib.timing import MatmulPeaks, median_ms, time_interleaved

if TYPE_CHECKING:  # only for type hints: importing transformers takes seconds
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "VARIANTS",
    "build_variants",
    "BenchmarkRow",
    "run_benchmark",
    "Target",
    "check_targets",
    "format_table",
    "write_json",
]


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
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    make = {
        "FP32": lambda m: m,
        "BF16": lambda m: m.to(torch.bfloat16),
        "quanto W8": quantize_with_quanto,
        "quanto W8A8": lambda m: quanto_w8a8(m, tokenizer, calibration_sentences),
        "torch.ao dynamic": torch_ao_dynamic,
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
    `cosines_to_reference` over all `sentences`. Returns rows in the order batch size, then variant.
    """
    if baseline not in variants:
        raise ValueError(f"the baseline {baseline!r} is not among the variants {list(variants)}")
    if any(b < 1 or b > len(sentences) for b in batch_sizes):
        raise ValueError(f"batch sizes must lie in [1, {len(sentences)}], got {batch_sizes}")
    reference = embed(variants[baseline], tokenizer, sentences)  # (sentences, hidden)
    cosines = {
        name: cosines_to_reference(embed(model, tokenizer, sentences), reference).min().item()
        for name, model in variants.items()
    }
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
