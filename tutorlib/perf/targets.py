"""The benchmark's acceptance targets (benchmarks/README.md) and Amdahl's cap from its rows."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tutorlib._checks import check_int
from tutorlib.perf.amdahl import amdahl_speedup
from tutorlib.perf.benchmark import BenchmarkRow, _check_rows, find_row
from tutorlib.perf.timing import MatmulPeaks

if TYPE_CHECKING:  # only for type hints: importing these takes seconds
    pass

__all__ = ["TargetSpec", "TARGETS", "Target", "check_targets", "AmdahlCap", "amdahl_cap"]


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
    large_batch = check_int(large_batch, "large_batch", minimum=1)
    small_batch = check_int(small_batch, "small_batch", minimum=1)

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
