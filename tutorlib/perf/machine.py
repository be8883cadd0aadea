"""Lesson 5: the machine a speed is measured on, read from the machine itself.

A speed says little without the CPU that produced it: its model name, how many logical CPUs
the process may use, and which of the instructions that make int8 and bfloat16 matrix products
fast it reports (VNNI, AMX, AVX-512 BF16). The lessons glue these facts into their prose
instead of typing them.

Left out on purpose: anything but Linux's /proc/cpuinfo (elsewhere the CPU is "unknown CPU"
with no flags), cache sizes, clock speeds and ARM's feature names.
"""

from dataclasses import dataclass
from pathlib import Path

__all__ = ["INT8_FLAGS", "CpuInfo", "parse_cpuinfo", "cpu_info"]


# /proc/cpuinfo flags of the x86 instructions that make int8 (and bf16) matmuls fast:
# VNNI multiplies 8-bit integers and accumulates in 32 bits in one instruction (vpdpbusd);
# AMX multiplies whole int8/bf16 tiles; avx512_bf16 has the bf16 dot product (vdpbf16ps);
# avx512_fp16 and amx_fp16 compute in float16 (PyTorch's CPU float16 kernels need them to be
# more than float32 kernels with conversions around them).
INT8_FLAGS: tuple[str, ...] = (
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "amx_tile",
    "avx512_bf16",
    "avx512_fp16",
    "amx_fp16",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's name, its logical CPU count and which of INT8_FLAGS it reports."""

    model_name: str
    logical_cpus: int
    flags: tuple[str, ...]  # the subset of INT8_FLAGS present, in INT8_FLAGS order

    def has(self, flag: str) -> bool:
        """True if the CPU reports `flag` (one of INT8_FLAGS)."""
        if flag not in INT8_FLAGS:
            raise ValueError(f"unknown flag {flag!r}; choose one of {INT8_FLAGS}")
        return flag in self.flags

    def describe(self) -> str:
        """One line naming the machine, e.g. 'AMD EPYC, 2 logical CPUs, avx512_vnni, ...'."""
        found = ", ".join(self.flags) if self.flags else f"none of {', '.join(INT8_FLAGS)}"
        return f"{self.model_name}, {self.logical_cpus} logical CPUs, int8/bf16/fp16 units: {found}"


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read the model name, the processor count and the INT8_FLAGS from /proc/cpuinfo text.

    Example: a text with two 'processor' blocks, 'model name : AMD EPYC' and 'flags : ...
    avx512_vnni avx512_bf16 ...' gives CpuInfo('AMD EPYC', 2, ('avx512_vnni', 'avx512_bf16')).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be the text of /proc/cpuinfo (str), got {type(text).__name__}")
    fields = [line.split(":", 1) for line in text.splitlines() if ":" in line]
    pairs = [(key.strip(), value.strip()) for key, value in fields]
    names = [value for key, value in pairs if key == "model name"]
    flag_lines = [value.split() for key, value in pairs if key == "flags"]
    present = set(flag_lines[0]) if flag_lines else set()
    return CpuInfo(
        model_name=names[0] if names else "unknown CPU",
        logical_cpus=sum(key == "processor" for key, _ in pairs),
        flags=tuple(flag for flag in INT8_FLAGS if flag in present),
    )


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """CpuInfo of this machine (Linux); 'unknown CPU' with no flags where the file is missing."""
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a file path (str or Path), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give the cpuinfo file, e.g. /proc/cpuinfo")
    # the kernel writes ASCII; a byte that is not UTF-8 (a vendor string, a damaged file) must
    # not stop a lesson: it becomes U+FFFD and the rest is still read
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return parse_cpuinfo(text)
