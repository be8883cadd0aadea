"""Tests of tutorlib.allocator (Lesson 5): the glibc setting is accepted."""

from pathlib import Path

import pytest

from tutorlib.perf.allocator import keep_freed_memory


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_sets_glibc_thresholds() -> None:
    assert keep_freed_memory() is True  # mallopt returns 1 for each accepted setting


@pytest.mark.parametrize(
    ("mmap_threshold", "trim_threshold"),
    [(2**40, 2**30), (32, 2**31), (-1, 2**30)],
    ids=["mmap-beyond-c-int", "trim-beyond-c-int", "negative"],
)
def test_keep_freed_memory_refuses_values_that_do_not_fit_a_c_int(
    mmap_threshold: int, trim_threshold: int
) -> None:
    with pytest.raises(ValueError, match="threshold"):
        keep_freed_memory(mmap_threshold, trim_threshold)
