"""Tests of tutorlib.machine (Lesson 5): reading the CPU from /proc/cpuinfo text."""

import pytest

from tutorlib.perf.machine import INT8_FLAGS, CpuInfo, cpu_info, parse_cpuinfo

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni sse4_2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni sse4_2
"""


def test_parse_cpuinfo_names_the_machine_and_its_int8_units() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == CpuInfo("AMD EPYC", 2, ("avx512_vnni", "avx512_bf16"))
    assert info.has("avx512_vnni") and not info.has("amx_int8")
    assert (
        info.describe()
        == "AMD EPYC, 2 logical CPUs, int8/bf16/fp16 units: avx512_vnni, avx512_bf16"
    )


def test_parse_cpuinfo_without_the_fields() -> None:
    info = parse_cpuinfo("")
    assert info == CpuInfo("unknown CPU", 0, ())
    assert "none of avx512_vnni" in info.describe()


def test_unknown_flag_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown flag"):
        parse_cpuinfo(CPUINFO).has("avx9000")
    assert len(set(INT8_FLAGS)) == len(INT8_FLAGS)


def test_a_cpuinfo_file_that_is_not_utf8_is_still_read(tmp_path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_bytes(b"processor\t: 0\nmodel name\t: CPU \xff\xfe X\nflags\t\t: fpu avx512_vnni\n")
    info = cpu_info(path)
    assert info.model_name == "CPU \ufffd\ufffd X"
    assert info.flags == ("avx512_vnni",) and info.logical_cpus == 1
