"""Tests of tutorlib.timing: the logic around the clock (order of calls, ratios), not the clock."""

import math

import pytest

from tutorlib.perf.timing import measure_matmul_peaks, median_ms, ops_per_second, time_interleaved


def test_time_interleaved_warms_up_then_rotates_the_order() -> None:
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = time_interleaved(runs, repeats=4, warmup=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, each run on its own
    assert calls[6:] == list("abc" + "bca" + "cab" + "abc")  # round r starts at run r % 3
    assert {name: len(s) for name, s in samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for s in samples.values() for t in s)


@pytest.mark.parametrize(
    ("repeats", "warmup", "runs"),
    [(0, 1, {"a": print}), (1, -1, {"a": print}), (1, 1, {})],
    ids=["no-repeats", "negative-warmup", "no-runs"],
)
def test_time_interleaved_rejects_bad_arguments(repeats: int, warmup: int, runs: dict) -> None:
    with pytest.raises(ValueError):
        time_interleaved(runs, repeats, warmup)


def test_median_ms_and_ops_per_second_by_hand() -> None:
    assert median_ms([0.003, 0.001, 0.002]) == pytest.approx(2.0)
    assert median_ms([0.001, 0.004]) == pytest.approx(2.5)
    assert ops_per_second(1024, 1024, 1024, 0.01) == pytest.approx(2 * 1024**3 / 0.01)
    with pytest.raises(ValueError):
        median_ms([])
    with pytest.raises(ValueError, match="NaN"):
        median_ms([math.nan])
    with pytest.raises(TypeError, match="seconds"):
        median_ms([0.001, None])
    with pytest.raises(ValueError):
        ops_per_second(2, 2, 2, 0.0)


def test_measure_matmul_peaks_returns_positive_rates_for_its_size() -> None:
    peaks = measure_matmul_peaks(size=64, repeats=2)
    assert peaks.size == 64
    assert min(peaks.int8_ops_per_s, peaks.fp32_ops_per_s, peaks.bf16_ops_per_s) > 0
