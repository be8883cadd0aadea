"""Lesson 5: the int8 inference benchmark: variants of one model, timed and compared.

`build_variants` makes copies of a model in FP32, BF16, optimum-quanto's and torch.ao's int8
and tutorlib's W8A16 and W8A8; `run_benchmark` times them interleaved at each batch size, splits
each latency into linear layers and the rest, and compares each variant's embeddings with the
baseline's; `check_targets` reads the lesson's goals (TARGETS) off the rows, each row and each
goal looked up by key; `amdahl_cap` bounds what int8 linear layers alone can give.

Left out on purpose: other models and tasks, GPUs, and any tuning per variant (every variant
runs with the same threads, allocator and inputs).
"""

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib._checks import check_choice, check_int
from tutorlib.layers import W8A8Linear, W8A16Linear, replace_linear
from tutorlib.machine import CpuInfo
from tutorlib.memory import model_size_bytes
from tutorlib.profiling import amdahl_speedup, profile_linear_layers
from tutorlib.references import quantize_with_quanto, quanto_w8a8, torch_ao_dynamic
from tutorlib.search import cosines_to_reference, embed
from tutorlib.timing import MatmulPeaks, median_ms, time_interleaved

if TYPE_CHECKING:  # only for type hints: importing these takes seconds
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "VARIANTS",
    "drop_unused_pooler",
    "use_inplace_gelu",
    "build_variants",
    "BenchmarkRow",
    "run_benchmark",
    "find_row",
    "TargetSpec",
    "TARGETS",
    "Target",
    "check_targets",
    "AmdahlCap",
    "amdahl_cap",
    "rows_frame",
    "format_table",
    "compare_settings",
    "write_json",
    "read_rows",
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


def drop_unused_pooler(model: nn.Module) -> nn.Module:
    """Remove a BERT model's pooler, in place, when only its token states are used.

    BertModel's pooler computes tanh(dense(h[:, 0])) on every forward; a sentence embedding
    that mean-pools the last hidden states (tutorlib.search.embed) never reads it, so dropping
    it changes no embedding and saves a linear layer and a tanh per forward. Returns the model.
    Example: drop_unused_pooler(load_minilm()[0]).pooler is None.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(getattr(model, "pooler", None), nn.Module):
        raise ValueError("model has no pooler module to drop (expected a transformers BertModel)")
    model.pooler = None
    return model


class _InplaceGELU(nn.Module):
    """GELU that overwrites its input when no gradient is needed (the same numbers, no new
    tensor); with autograd on it is the ordinary out-of-place F.gelu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(x) if not torch.is_grad_enabled() else F.gelu(x)


def use_inplace_gelu(model: nn.Module) -> int:
    """Make every BERT feed-forward GELU work in place, in place; returns how many changed.

    BertIntermediate computes act(dense(x)) and nothing else reads dense(x), so GELU may
    overwrite it: the same numbers, one (tokens, 4 x hidden) tensor less per block and per
    forward (the allocation, and its page faults, disappear). Only without autograd: with
    gradients enabled the layer falls back to out-of-place F.gelu.
    Example: use_inplace_gelu(load_minilm()[0]) == 6 (one per block).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    blocks = [
        m for m in model.modules() if isinstance(getattr(m, "intermediate_act_fn", None), nn.Module)
    ]
    for block in blocks:
        block.intermediate_act_fn = _InplaceGELU()
    return len(blocks)


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
    """A no-argument call of model(**batch) without autograd, for the timers.

    torch.no_grad rather than torch.inference_mode, for every variant: tensors made under
    inference mode carry no version counter, and W8A8Linear needs one to prove that query, key
    and value read an unchanged input before it quantizes that input once for the three.
    """

    def run() -> object:
        with torch.no_grad():
            return model(**batch)

    return run


def _benchmark_row(
    *,
    variant: str,
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
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
    linear_ms = profile.linear_fraction * medians[variant]
    linear_ops_per_s = 2 * profile.macs / (linear_ms / 1e3)
    return BenchmarkRow(
        variant=variant,
        batch_size=batch["input_ids"].shape[0],
        tokens=batch["input_ids"].numel(),
        median_ms=medians[variant],
        speedup=medians[baseline] / medians[variant],
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
                variant=name,
                model=model,
                batch=batch,
                medians=medians,
                baseline=baseline,
                min_cosine=cosines[name],
                int8_peak_ops_per_s=int8_peak_ops_per_s,
            )
            for name, model in variants.items()
        ]
    return rows


def _check_rows(rows: object, name: str = "rows") -> list[BenchmarkRow]:
    """A non-empty list (or tuple) of BenchmarkRow, as run_benchmark returns."""
    if not isinstance(rows, list | tuple) or not all(isinstance(r, BenchmarkRow) for r in rows):
        raise TypeError(
            f"{name} must be a list of BenchmarkRow (from run_benchmark), got {rows!r:.80}"
        )
    if not rows:
        raise ValueError(f"{name} is empty: run run_benchmark first")
    return list(rows)


def find_row(rows: Sequence[BenchmarkRow], variant: str, batch_size: int) -> BenchmarkRow:
    """The row of one variant at one batch size, looked up by that key.

    Example: find_row(rows, "FP32", 32).median_ms is FP32's latency at batch 32.
    """
    rows = _check_rows(rows)
    check_choice(variant, "variant", sorted({row.variant for row in rows}))
    check_int(batch_size, "batch_size", minimum=1)
    for row in rows:
        if row.variant == variant and row.batch_size == batch_size:
            return row
    sizes = sorted({row.batch_size for row in rows if row.variant == variant})
    raise ValueError(
        f"batch_size {batch_size} was not measured for {variant!r}; choose from {sizes}"
    )


@dataclass(frozen=True)
class TargetSpec:
    """A goal of the lesson: a ratio (or cosine) that must reach `required`.

    strict: the goal is "faster than" (measured > required) rather than "at least"
    (measured >= required). stretch: a goal beyond the acceptance line, reported but not
    required. setting: "default" (a default process) or "allocator" (the allocator setting
    of tutorlib.allocator applied first).
    """

    key: str
    goal: str
    required: float
    strict: bool = False
    stretch: bool = False
    setting: str = "default"


# The acceptance targets of benchmarks/README.md, for tutorlib W8A8 at batch 32 (large) and
# batch 1 (small); a ratio "X over Y" is Y's latency / X's latency, from one interleaved run,
# so above 1 means X is faster.
TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec("over_fp32", "batch 32: speedup over FP32", 2.0),
    TargetSpec("over_ao", "batch 32: speedup over torch.ao dynamic", 1.0),
    TargetSpec(
        "over_ao_allocator",
        "batch 32: speedup over torch.ao dynamic, allocator setting",
        1.0,
        setting="allocator",
    ),
    TargetSpec("small_over_fp32", "batch 1: speedup over FP32", 1.0),
    TargetSpec("min_cosine", "min cosine of the embeddings to FP32", 0.995),
    TargetSpec("over_bf16", "batch 32: speedup over BF16 (stretch)", 1.0, stretch=True),
)


@dataclass(frozen=True)
class Target:
    """A goal of the lesson, the number measured for it, and whether it was met."""

    spec: TargetSpec
    measured: float

    @property
    def met(self) -> bool:
        """measured > required for a strict goal, measured >= required otherwise."""
        if self.spec.strict:
            return self.measured > self.spec.required
        return self.measured >= self.spec.required


def check_targets(
    rows: Sequence[BenchmarkRow],
    rows_with_setting: Sequence[BenchmarkRow] | None = None,
    variant: str = "tutorlib W8A8",
    large_batch: int = 32,
    small_batch: int = 1,
) -> dict[str, Target]:
    """The TARGETS for `variant`, keyed by TargetSpec.key, each a ratio from one run.

    `rows` come from a default process; `rows_with_setting` (optional) from a process that
    applied the allocator setting first. Targets whose setting was not measured are left out.
    Example: W8A8 at 25 ms and FP32 at 100 ms at batch 32 give targets["over_fp32"].measured
    = 4.0, met (>= 2.0).
    """
    measured = {"default": _check_rows(rows)}
    if rows_with_setting is not None:
        measured["allocator"] = _check_rows(rows_with_setting, "rows_with_setting")
    check_int(large_batch, "large_batch", minimum=1)
    check_int(small_batch, "small_batch", minimum=1)

    def over(other: str, setting: str = "default", batch: int = large_batch) -> float:
        chosen = measured[setting]
        return find_row(chosen, other, batch).median_ms / find_row(chosen, variant, batch).median_ms

    ours = find_row(measured["default"], variant, large_batch)
    values = {
        "over_fp32": lambda: over("FP32"),
        "over_ao": lambda: over("torch.ao dynamic"),
        "over_ao_allocator": lambda: over("torch.ao dynamic", "allocator"),
        "over_bf16": lambda: over("BF16"),
        "small_over_fp32": lambda: over("FP32", batch=small_batch),
        "min_cosine": lambda: ours.min_cosine,
    }
    return {
        spec.key: Target(spec, values[spec.key]()) for spec in TARGETS if spec.setting in measured
    }


@dataclass(frozen=True)
class AmdahlCap:
    """The best whole-forward speedup that int8 linear layers alone can give, from achieved
    rates: FP32's measured linear time against the same MACs at the int8 peak."""

    fp32_ms: float  # FP32's median latency
    fp32_linear_ms: float  # its linear layers' part
    other_ms: float  # everything else (unchanged by int8 linear layers)
    fp32_fraction_of_fp32_peak: float  # FP32's linear layers' rate / the fp32 matmul peak
    int8_linear_ms: float  # the same MACs at the int8 peak
    linear_speedup: float  # fp32_linear_ms / int8_linear_ms
    cap: float  # Amdahl: fp32_ms / (other_ms + int8_linear_ms)


def amdahl_cap(rows: Sequence[BenchmarkRow], peaks: MatmulPeaks, batch_size: int = 32) -> AmdahlCap:
    """Amdahl's bound for int8 linear layers, from FP32's row at `batch_size` and the peaks.

    The linear layers' MACs follow from FP32's row (rate * time / 2); at the int8 peak they take
    int8_linear_ms = 2 * MACs / int8 peak. The cap is 1 / ((1 - f) + f / r) with f = FP32's
    linear share and r = fp32_linear_ms / int8_linear_ms: achieved FP32 rate against the int8
    peak, not peak against peak (FP32's layers run below the fp32 peak, which raises r).
    Example: 93 ms with 80 ms linear, the MACs taking 17 ms at the int8 peak: 93 / 30 = 3.1.
    """
    if not isinstance(peaks, MatmulPeaks):
        raise TypeError(f"peaks must be MatmulPeaks (measure_matmul_peaks), got {peaks!r:.60}")
    fp32 = find_row(rows, "FP32", batch_size)
    linear_ops = fp32.linear_ops_per_s * fp32.linear_ms / 1e3  # 2 * MACs
    int8_linear_ms = 1e3 * linear_ops / peaks.int8_ops_per_s
    other_ms = fp32.median_ms - fp32.linear_ms
    return AmdahlCap(
        fp32_ms=fp32.median_ms,
        fp32_linear_ms=fp32.linear_ms,
        other_ms=other_ms,
        fp32_fraction_of_fp32_peak=fp32.linear_ops_per_s / peaks.fp32_ops_per_s,
        int8_linear_ms=int8_linear_ms,
        linear_speedup=fp32.linear_ms / int8_linear_ms,
        cap=amdahl_speedup(fp32.linear_fraction, fp32.linear_ms / int8_linear_ms),
    )


# (header, BenchmarkRow field or derived value, decimals; None for text and integers)
_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("variant", "variant", None),
    ("batch", "batch_size", None),
    ("tokens", "tokens", None),
    ("ms", "median_ms", 2),
    ("x FP32", "speedup", 2),
    ("MB", "size_mb", 1),
    ("min cos", "min_cosine", 4),
    ("lin ms", "linear_ms", 2),
    ("%peak", "peak_percent", 1),
)


def rows_frame(rows: Sequence[BenchmarkRow]) -> "pd.DataFrame":
    """The rows as a pandas DataFrame, one column per BenchmarkRow field, plus size_mb
    (size_bytes / 10**6) and peak_percent (100 * fraction_of_int8_peak)."""
    import pandas as pd  # imported here: pandas takes a second to import

    frame = pd.DataFrame([asdict(row) for row in _check_rows(rows)])
    frame["size_mb"] = frame["size_bytes"] / 1e6
    frame["peak_percent"] = 100 * frame["fraction_of_int8_peak"]
    return frame


def format_table(rows: Sequence[BenchmarkRow]) -> str:
    """A fixed-width text table of the rows, one line each, under a header line.

    ms: median latency; x FP32: speedup; MB: size in 10**6 bytes; min cos: minimum cosine to
    the baseline; lin ms: the linear layers' part of the latency; %peak: their throughput as a
    percentage of the int8 matmul peak. Fixed decimals, so the same rows give the same text.
    """
    frame = rows_frame(rows)[[key for _, key, _ in _COLUMNS]]
    frame.columns = [title for title, _, _ in _COLUMNS]
    formatters = {
        title: (lambda v, d=decimals: f"{v:.{d}f}") for title, _, decimals in _COLUMNS if decimals
    }
    return frame.to_string(index=False, formatters=formatters, justify="right")


def compare_settings(
    rows: Sequence[BenchmarkRow], rows_with_setting: Sequence[BenchmarkRow]
) -> "pd.DataFrame":
    """One line per (variant, batch): latency and speedup over FP32 in a default process and
    with the allocator setting, side by side (each ratio from its own interleaved run)."""
    keys = ["variant", "batch_size"]
    default = rows_frame(rows)[keys + ["median_ms", "speedup"]]
    setting = rows_frame(_check_rows(rows_with_setting, "rows_with_setting"))
    setting = setting[keys + ["median_ms", "speedup"]]
    return default.merge(setting, on=keys, suffixes=(" default", " allocator"))


def _plain(value: object) -> object:
    """JSON-safe: NaN and inf become None (null), never a bare NaN token."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_json(
    path: str | Path,
    rows: Sequence[BenchmarkRow],
    machine: CpuInfo,
    peaks: MatmulPeaks,
    settings: Mapping[str, object],
) -> Path:
    """Write the benchmark as JSON: {"machine", "peaks", "settings", "rows"}; returns the path.

    Parent folders are created. Every value is a plain number, string, list or null (a NaN or
    inf becomes null), so the file is strict JSON and reads back with read_rows.
    """
    if not isinstance(path, str | Path) or Path(path).is_dir():
        raise TypeError(f"path must be a file path (str or Path), got {path!r}")
    rows = _check_rows(rows)
    if not isinstance(machine, CpuInfo):
        raise TypeError(f"machine must be a CpuInfo (tutorlib.machine.cpu_info()), got {machine!r}")
    if not isinstance(peaks, MatmulPeaks):
        raise TypeError(f"peaks must be MatmulPeaks (measure_matmul_peaks), got {peaks!r}")
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a dict of plain values, got {settings!r}")
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
    path.write_text(json.dumps(_plain(document), indent=2, allow_nan=False, default=str) + "\n")
    return path


def read_rows(path: str | Path) -> list[BenchmarkRow]:
    """The BenchmarkRow list of a file written by write_json (a null number reads as NaN)."""
    if not isinstance(path, str | Path) or not Path(path).is_file():
        raise ValueError(f"path must be a JSON file written by write_json, got {path!r}")
    try:
        document = json.loads(Path(path).read_text())
        rows = document["rows"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"path {path} is not a benchmark file of write_json: {error}") from None
    return [
        BenchmarkRow(**{k: math.nan if v is None else v for k, v in row.items()}) for row in rows
    ]
