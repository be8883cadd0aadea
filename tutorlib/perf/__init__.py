"""Performance, built on tutorlib.models: timing on a shared CPU, the machine, the allocator,
profiling, Amdahl's law, the int8 benchmark and the libraries it compares with (Lessons 3 to 7).
Import from the module itself, e.g. ``from tutorlib.perf.timing import time_interleaved``.
"""

__all__: list[str] = []
