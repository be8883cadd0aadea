"""Lessons 3 to 6: timing code on a shared CPU, and the machine's matmul peaks.

Latency is the median of repeated calls after a warm-up, with the variants interleaved (round r
calls every variant once, in an order rotated by r), so that a burst of load from other
programs hits all of them alike; every ratio is taken within one such run. The machine's own
peaks (a large int8, fp32 and bf16 matrix product) say how fast a linear layer could be.

Left out on purpose: GPUs, energy, thread-count sweeps, and statistics beyond the median (the
CPU is shared, so the spread says more about the neighbours than about the code).
"""

import math
import numbers
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm  # the console bar: tqdm.auto would need ipywidgets in Jupyter

from tutorlib._checks import check_int, check_real

__all__ = [
    "time_interleaved",
    "median_ms",
    "ops_per_second",
    "MatmulPeaks",
    "measure_matmul_peaks",
]


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
    if not isinstance(runs, Mapping) or not all(callable(run) for run in runs.values()):
        raise TypeError(f"runs must be a dict {{name: callable}}, got {type(runs).__name__}")
    if not runs:
        raise ValueError("runs is empty: give at least one {name: callable}")
    check_int(repeats, "repeats", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str (the progress bar's label), got {desc!r}")
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
    if isinstance(seconds, str) or not isinstance(seconds, Sequence):
        raise TypeError(f"seconds must be a list of durations, got {type(seconds).__name__}")
    if len(seconds) == 0:
        raise ValueError("seconds is empty: no durations to take the median of")
    if not all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in seconds):
        raise TypeError(f"seconds must hold numbers only, got {list(seconds)!r:.80}")
    if not all(math.isfinite(s) and s >= 0 for s in seconds):
        raise ValueError(f"seconds must be finite and >= 0 (no NaN), got {list(seconds)!r:.80}")
    return 1e3 * statistics.median(seconds)


def ops_per_second(m: int, k: int, n: int, seconds: float) -> float:
    """Throughput of an (m, k) @ (k, n) matmul: 2 * m * k * n operations (a multiply and an add
    per term) divided by the time. Example: 1024**3 terms in 0.01 s -> 2.147e11 ops/s."""
    for name, value in (("m", m), ("k", k), ("n", n)):
        check_int(value, name, minimum=1)
    check_real(seconds, "seconds", 0.0, strict_minimum=True)
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
    check_int(size, "size", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    check_int(seed, "seed", minimum=0)
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
