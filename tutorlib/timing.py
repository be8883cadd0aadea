"""Lessons 3 to 6: timing code on a shared CPU, and the machine's matmul peaks.

Latency is the median of repeated calls after a warm-up, with the variants interleaved (round r
calls every variant once, in an order rotated by r), so that a burst of load from other
programs hits all of them alike; every ratio is taken within one such run. The machine's own
peaks (a large int8, fp32 and bf16 matrix product) say how fast a linear layer could be.

Left out on purpose: GPUs, energy, thread-count sweeps, and statistics beyond the median (the
CPU is shared, so the spread says more about the neighbours than about the code).
"""

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm  # the console bar: tqdm.auto would need ipywidgets in Jupyter

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
