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
from tutorlib.layers.int8_kernel import select_int8_kernel

__all__ = ["time_interleaved", "median_ms", "ops_per_second", "MatmulPeaks", "measure_matmul_peaks"]


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
    repeats = check_int(repeats, "repeats", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=0)
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
    seconds = check_real(seconds, "seconds", 0.0, strict_minimum=True)
    return 2 * m * k * n / seconds


@dataclass(frozen=True)
class MatmulPeaks:
    """Best measured operations per second of a large square matmul: int8 (int32 sums, with the
    integer kernel W8A8Linear uses here, named in `int8_kernel`), fp32 and bf16."""

    size: int
    int8_ops_per_s: float
    fp32_ops_per_s: float
    bf16_ops_per_s: float
    int8_kernel: str = "torch._int_mm"


def _int8_product(a: torch.Tensor, b: torch.Tensor) -> tuple[Callable[[], object], str]:
    """The int8 product W8A8Linear runs on this CPU (tutorlib.int8_kernel's self-test), as a
    call on (size, size) operands with |a| <= q_max, and its name: oneDNN's prepacked kernel
    with u8 activations where it is exact, else torch._int_mm (the int8 peak a layer can reach).
    """
    kernel = select_int8_kernel()
    a = a.clamp(-kernel.q_max, kernel.q_max)
    if not kernel.onednn:
        return (lambda: torch._int_mm(a, b)), "torch._int_mm"
    packed = torch.ops.onednn.qlinear_prepack(b.t().contiguous(), None)  # weight (out, in)
    u8 = (a.short() + kernel.zero_point).to(torch.uint8)
    ones, zeros = torch.ones(b.shape[1]), torch.zeros(b.shape[1], dtype=torch.int64)
    args = (1.0, 0, torch.float32, "none", [], "")  # output scale, zero point, dtype, no post-op

    def run() -> object:
        return torch.ops.onednn.qlinear_pointwise(
            u8, 1.0, kernel.zero_point, packed, ones, zeros, None, *args
        )

    return run, f"oneDNN u8, {kernel.activation_bits}-bit ({kernel.onednn_impl})"


def _best_seconds(runs: Mapping[str, Callable[[], object]], repeats: int, budget_s: float) -> dict:
    """Fastest call of each run: one warm-up, then interleaved rounds until `repeats` calls or
    until the run's own timed calls exceed `budget_s` seconds (at least one timed call each)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            if samples[name] and sum(samples[name]) >= budget_s:
                continue  # a slow unit (bf16 without bf16 instructions) stops early
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: min(times) for name, times in samples.items()}


def measure_matmul_peaks(
    size: int = 2048, repeats: int = 10, seed: int = 0, budget_s: float = 3.0
) -> MatmulPeaks:
    """This machine's best rates on (size, size) @ (size, size): int8, fp32 and bf16.

    int8 runs the integer kernel W8A8Linear uses on this CPU (oneDNN's prepacked u8 x s8
    matmul, at 7 or 8 activation bits, or torch._int_mm; see tutorlib.int8_kernel): the rate
    an int8 layer here can reach, not that of a kernel it never calls. fp32 and bf16 run
    torch.mm. The inputs are random (seeded). Other programs can only slow a call down, so each
    rate comes from the fastest of up to `repeats` interleaved calls; a product whose calls take
    more than `budget_s` seconds together stops early (on a CPU without bf16 instructions one
    bf16 call of size 2048 takes over ten seconds). Rates count 2 * size**3 operations.
    """
    size = check_int(size, "size", minimum=1)
    repeats = check_int(repeats, "repeats", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    budget_s = check_real(budget_s, "budget_s", 0.0, strict_minimum=True)
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, size, size, generator=generator)
    a_int8, b_int8 = torch.randint(
        -127, 128, (2, size, size), generator=generator, dtype=torch.int8
    )
    a_bf16, b_bf16 = a.bfloat16(), b.bfloat16()
    int8_run, int8_name = _int8_product(a_int8, b_int8)
    runs = {
        "int8": int8_run,
        "fp32": lambda: torch.mm(a, b),
        "bf16": lambda: torch.mm(a_bf16, b_bf16),
    }
    best = _best_seconds(runs, repeats, budget_s)
    peak = {name: ops_per_second(size, size, size, seconds) for name, seconds in best.items()}
    return MatmulPeaks(size, peak["int8"], peak["fp32"], peak["bf16"], int8_name)
