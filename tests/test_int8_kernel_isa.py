"""W8A8 on every x86 instruction set: tests/isa_probe.py in a subprocess per ONEDNN_MAX_CPU_ISA.

oneDNN reads ONEDNN_MAX_CPU_ISA once, when it starts, so each instruction set needs its own
process. For each: the kernel the self-test chose is the one the ISA allows (8-bit activations
with VNNI or AMX, 7-bit without); every W8A8 output equals the exact computation from the
layer's integers and scales (adversarial inputs and MiniLM's real activations, on both sides
of the packed-kernel threshold); and no oneDNN reference implementation (`ref_`) runs anywhere
in MiniLM's forward at batch 1 and 32, in FP32, BF16 or W8A8. About 15 s per ISA.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutorlib.perf.machine import cpu_info

PROBE = Path(__file__).resolve().parent / "isa_probe.py"
INFO = cpu_info()
HAS_VNNI = INFO.has("avx512_vnni") or INFO.has("amx_int8")
# (ONEDNN_MAX_CPU_ISA, activation bits the layer must choose there); "" is the machine's own.
ISAS = [("AVX2", 7), ("AVX512_CORE", 7), ("AVX512_CORE_VNNI", 8 if HAS_VNNI else 7)]
ISAS += [("", 8 if HAS_VNNI or INFO.has("avx_vnni") else 7)]
ISAS += [("AVX512_CORE_AMX", 8)] if INFO.has("amx_int8") else []


@pytest.fixture(scope="module", params=ISAS, ids=lambda p: p[0] or "default")
def probe(request) -> tuple[dict, int]:
    isa, bits = request.param
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa} if isa else dict(os.environ)
    env.pop("ONEDNN_VERBOSE", None)
    done = subprocess.run(
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), bits


def test_the_kernel_is_the_one_this_isa_allows(probe) -> None:
    result, bits = probe
    assert result["kernel"]["activation_bits"] == bits, result["trials"]
    assert result["kernel"]["onednn"]
    assert not result["kernel"]["onednn_impl"].startswith("ref")
    if bits == 7:  # a saturating adder: never torch._int_mm, and the 8-bit trial was caught
        assert not result["kernel"]["int_mm"]
        assert result["trials"]["oneDNN u8, 8-bit"][0] is False


def test_every_output_is_the_exact_integer_computation(probe) -> None:
    result, _ = probe
    assert len(result["errors"]) >= 20
    # in float32 rounding units (isa_probe.exact_error): inf where the integer sums are wrong
    wrong = {case: error for case, error in result["errors"].items() if not error <= 4.0}
    assert not wrong, wrong


def test_no_reference_kernel_runs_in_the_course_model(probe) -> None:
    result, _ = probe
    assert result["implementations"]["tutorlib W8A8, batch 32"]  # the log was read
    slow = {
        run: [name for name in names if name.startswith("ref")]
        for run, names in result["implementations"].items()
    }
    assert not any(slow.values()), slow
