"""Lesson 5: the int8 inference benchmark: latency, accuracy and size of every variant.

run_benchmark times every variant interleaved at each batch size and measures its embeddings'
cosines to FP32's and its size; the rows print as a table and go to and from JSON.
Left out on purpose: throughput under concurrency and energy.
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from tutorlib._checks import check_choice, check_int, check_names, check_real
from tutorlib.models.minilm import embed
from tutorlib.models.ranking import cosines_to_reference
from tutorlib.models.size import model_size_bytes
from tutorlib.perf.hooks import profile_linear_layers
from tutorlib.perf.machine import CpuInfo
from tutorlib.perf.timing import MatmulPeaks, median_ms, time_interleaved

if TYPE_CHECKING:  # only for type hints: importing these takes seconds
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "BenchmarkRow",
    "run_benchmark",
    "find_row",
    "rows_frame",
    "format_table",
    "compare_settings",
    "write_json",
    "read_rows",
]


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
    if not isinstance(variants, Mapping) or not all(
        isinstance(m, nn.Module) for m in variants.values()
    ):
        raise TypeError("variants must be a dict {name: model}, e.g. from build_variants")
    if not isinstance(baseline, str) or baseline not in variants:
        raise ValueError(f"the baseline {baseline!r} is not among the variants {list(variants)}")
    sentences = check_names(sentences, "sentences")
    int8_peak_ops_per_s = check_real(
        int8_peak_ops_per_s, "int8_peak_ops_per_s", 0.0, strict_minimum=True
    )
    if isinstance(batch_sizes, str) or not isinstance(batch_sizes, Sequence):
        raise TypeError(
            f"batch_sizes must be a sequence of ints, e.g. (1, 32), got {batch_sizes!r}"
        )
    batch_sizes = [check_int(b, "batch_sizes", minimum=1) for b in batch_sizes]
    if not batch_sizes or any(b > len(sentences) for b in batch_sizes):
        raise ValueError(f"batch_sizes must lie in [1, {len(sentences)}], got {batch_sizes}")
    if not any(isinstance(m, nn.Linear) for m in variants[baseline].modules()):
        raise ValueError(f"the baseline {baseline!r} has no nn.Linear: nothing to compare")
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
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    for row in rows:
        if row.variant == variant and row.batch_size == batch_size:
            return row
    sizes = sorted({row.batch_size for row in rows if row.variant == variant})
    raise ValueError(
        f"batch_size {batch_size} was not measured for {variant!r}; choose from {sizes}"
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
