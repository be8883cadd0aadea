"""tutorlib.int8_kernel: the rule that picks a kernel, the verbose log it reads, and the
self-test's verdicts on this machine. Other instruction sets: tests/test_int8_kernel_isa.py."""

import pytest
import torch

from tutorlib.layers.int8_kernel import (
    Int8Kernel,
    KernelTrial,
    _isa_from_log,
    int8_kernel_for,
    onednn_implementations,
    select_int8_kernel,
    survey_isas,
    trial_runs,
)
from tutorlib.perf.machine import cpu_info


def _trials(u8: bool, u7: bool, s8_impl: str, int_mm: bool, impl: str = "brg_matmul:x"):
    return (
        KernelTrial("oneDNN u8, 8-bit", u8, 0.0 if u8 else 6e6, impl),
        KernelTrial("oneDNN u8, 7-bit", u7, 0.0 if u7 else 6e6, impl),
        KernelTrial("oneDNN s8", True, 0.0, s8_impl),
        KernelTrial("torch._int_mm", int_mm, 0.0 if int_mm else 6e6, ""),
    )


def test_vnni_runs_8_bits_on_onednn_and_small_calls_on_int_mm() -> None:
    kernel = int8_kernel_for(_trials(True, True, "ref_int8:any", True))
    assert (kernel.activation_bits, kernel.onednn, kernel.int_mm) == (8, True, True)
    assert (kernel.q_max, kernel.zero_point) == (127, 128)


def test_without_vnni_7_bits_on_onednn_and_never_int_mm() -> None:
    # AVX2 / AVX-512 without VNNI: 8-bit u8 x s8 pairs saturate int16, torch._int_mm too.
    kernel = int8_kernel_for(_trials(False, True, "ref_int8:any", False))
    assert (kernel.activation_bits, kernel.onednn, kernel.int_mm) == (7, True, False)
    assert (kernel.q_max, kernel.zero_point) == (63, 64)  # u8 in [1, 127]
    assert "saturating int16" in kernel.describe()


def test_a_7_bit_layer_never_uses_int_mm_even_if_it_is_exact() -> None:
    kernel = int8_kernel_for(_trials(False, True, "ref_int8:any", True))
    assert (kernel.activation_bits, kernel.int_mm) == (7, False)


def test_a_reference_kernel_is_never_chosen() -> None:
    kernel = int8_kernel_for(_trials(True, True, "ref_int8:any", False, impl="ref_int8:any"))
    assert not kernel.onednn and not kernel.int_mm  # exact but a reference kernel: float64
    assert "float64" in kernel.describe()


def test_no_onednn_falls_back_to_int_mm_then_float64() -> None:
    only_int_mm = (KernelTrial("torch._int_mm", True, 0.0, ""),)
    assert int8_kernel_for(only_int_mm) == Int8Kernel(
        8, False, True, "", int8_kernel_for(only_int_mm).why
    )
    broken = (KernelTrial("torch._int_mm", False, 1.0, ""),)
    assert (int8_kernel_for(broken).onednn, int8_kernel_for(broken).int_mm) == (False, False)


def test_verbose_log_names_the_implementation_and_prints_nothing(capfd) -> None:
    weight = torch.ones(8, 64, dtype=torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(weight, None)
    x = torch.full((4, 64), 130, dtype=torch.uint8)
    scales, zeros = torch.ones(8), torch.zeros(8, dtype=torch.int64)
    y, impls = onednn_implementations(
        lambda: torch.ops.onednn.qlinear_pointwise(
            x, 1.0, 128, packed, scales, zeros, None, 1.0, 0, torch.float32, "none", [], ""
        )
    )
    assert torch.equal(y, torch.full((4, 8), 2.0 * 64))  # (130 - 128) * 1 summed over 64
    assert impls and all(isinstance(name, str) and name for name in impls)
    assert "onednn_verbose" not in capfd.readouterr().out
    with pytest.raises(TypeError, match="run must be callable"):
        onednn_implementations(42)


def test_this_machine_chooses_what_its_flags_predict() -> None:
    # The self-test, not the flags, decides; on an x86 CPU the two must agree.
    info = cpu_info()
    trials = {t.name: t for t in trial_runs()}
    vnni = info.has("avx512_vnni") or info.has("avx_vnni") or info.has("amx_int8")
    assert trials["oneDNN u8, 7-bit"].exact  # 7-bit pairs never saturate
    assert trials["oneDNN u8, 8-bit"].exact == vnni
    assert not trials["oneDNN u8, 8-bit"].reference
    # s8 x s8 is fast and exact with AMX only: elsewhere oneDNN runs its reference kernel
    # (seen with AVX-512) or a jit kernel whose int16 pairs saturate (seen on AVX2)
    s8 = trials["oneDNN s8"]
    assert (s8.exact and not s8.reference) == info.has("amx_int8")
    assert select_int8_kernel().activation_bits == (8 if vnni else 7)


def test_7_bit_activations_cost_about_one_bit_of_accuracy() -> None:
    # The same layer on the same input at 8 and at 7 bits, both with exact float64 sums (on any
    # CPU): the output error against float grows by about 2x (one bit: half the step), and
    # stays small.
    from torch import nn

    from tutorlib.layers.w8a8 import W8A8Linear

    torch.manual_seed(0)
    linear = nn.Linear(384, 384)
    x = torch.randn(64, 384)
    want = linear(x).detach()
    layer = W8A8Linear.from_linear(linear)
    errors = {}
    for bits in (8, 7):
        layer.kernel = Int8Kernel(bits, False, False, "", "float64 sums, for a test")
        errors[bits] = (layer(x) - want).pow(2).mean().sqrt().item()
    ratio = errors[7] / errors[8]
    assert 1.3 < ratio < 2.2, ratio  # activation noise doubles; weight noise is unchanged
    assert errors[7] < 0.02 * want.pow(2).mean().sqrt().item()


def test_the_isa_is_read_from_onednns_header() -> None:
    lines = [
        "onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71)",
        "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2",
        "onednn_verbose,v1,info,cpu,isa:Intel AVX2",
    ]
    assert _isa_from_log(lines) == "Intel AVX2"
    assert _isa_from_log(lines[:2]) == ""  # no header line: unknown, not a guess


def test_a_survey_runs_each_cap_in_its_own_process() -> None:
    # The machine's own ISA and AVX2 (which every x86-64 CPU the course targets has, and which
    # never has VNNI's exact u8 x s8 adder): AVX2 must choose 7 bits, and the default run must
    # choose what this process chose.
    default, avx2 = survey_isas(("", "AVX2"))
    assert (default.requested, avx2.requested) == ("", "AVX2")
    assert default.kernel == select_int8_kernel()
    assert "AVX2" in avx2.onednn_isa or "SSE" in avx2.onednn_isa
    assert avx2.kernel.activation_bits == 7
    assert {trial.name for trial in avx2.trials} == {trial.name for trial in trial_runs()}
