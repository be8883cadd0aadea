"""Lesson 5: the process's memory allocator, one setting that changes how fast a layer runs.

glibc's malloc returns large freed blocks to the operating system, so the next block of that
size page-faults again; a layer that allocates several large temporaries per call pays this at
every call. `keep_freed_memory` asks glibc to keep them, as jemalloc or tcmalloc would.

Left out on purpose: other allocators (jemalloc, tcmalloc), huge pages, and any setting that
is not a documented mallopt parameter.
"""

import ctypes

from tutorlib._checks import check_int

__all__ = ["keep_freed_memory"]


# glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# mallopt takes a C int: the largest value is 2**31 - 1.
_C_INT_MAX = 2**31 - 1


def keep_freed_memory(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the OS.

    By default glibc serves a large block (a few MB, such as a (704, 1536) float32 activation)
    with a fresh mmap or by growing the heap, and gives the memory back when it is freed; the
    next block of that size then page-faults on every 4 KiB page it touches. Operators that
    create several large temporaries per call (an int8 layer's int32 products, its rescaled
    output) pay this many times per forward. glibc raises its threshold by itself after large
    blocks are freed, so the cost depends on the process's history; setting the mmap threshold
    (to 32 MiB) and the trim threshold (to 1 GiB) keeps those pages mapped from the start, as
    jemalloc or tcmalloc would. Applies to the whole process and every variant alike. Returns
    False where there is no glibc (macOS, musl), changing nothing. Both values must fit a C int
    (mallopt's argument), [0, 2**31 - 1] bytes.
    """
    mmap_threshold = check_int(mmap_threshold, "mmap_threshold", 0, _C_INT_MAX)
    trim_threshold = check_int(trim_threshold, "trim_threshold", 0, _C_INT_MAX)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    return bool(mmap_ok and trim_ok)
