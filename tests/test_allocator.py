"""Tests of tutorlib.allocator (Lesson 5): the glibc setting is accepted."""

from pathlib import Path

import pytest

from tutorlib.allocator import keep_freed_memory


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_sets_glibc_thresholds() -> None:
    assert keep_freed_memory() is True  # mallopt returns 1 for each accepted setting
