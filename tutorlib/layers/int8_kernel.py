"""Lesson 5: which integer kernel this CPU really runs, found by a self-test, not assumed.

An int8 matmul is exact only if the CPU adds the products without losing bits. x86 CPUs with
VNNI (`vpdpbusd`) or AMX multiply unsigned 8-bit activations by signed 8-bit weights and add
into int32: exact. Without VNNI (AVX2 and AVX-512 without VNNI: AMD Zen 1-3, Intel before Ice
Lake) oneDNN uses `vpmaddubsw`, which adds each pair of u8 x s8 products into a *saturating*
int16: 2 x 255 x 127 = 64,770 > 32,767, so full-range activations give wrong sums. Activations
of 7 bits (u8 in [1, 127], zero point 64) keep every pair below 2 x 127 x 127 = 32,258: exact
there too, at the cost of one bit of activation resolution (fbgemm's `reduce_range`). And
signed x signed int8 has a fast kernel in oneDNN only on AMX: elsewhere it runs `ref_int8`,
the reference implementation, a thousand times slower.

So this module tries each way of running the product once per process, on inputs built to
saturate (every activation at its largest, weights at +-127), checks the int32 sums against
float64, and reads the implementation oneDNN chose from its verbose log; `select_int8_kernel`
returns the first way that is exact and not a reference kernel, with the reason. It holds
under `ONEDNN_MAX_CPU_ISA` too, which changes what oneDNN runs but not the CPU's flags.
Left out on purpose: ARM's own int8 kernels (there torch._int_mm or the float64 fallback run,
each checked the same way), GPUs, and choosing between kernels by speed.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

__all__ = [
    "Int8Kernel",
    "KernelTrial",
    "onednn_implementations",
    "trial_runs",
    "select_int8_kernel",
    "int8_kernel_for",
    "IsaReport",
    "survey_isas",
    "survey_table",
]

# The self-test's shape: big enough that oneDNN picks the kernel it uses for the course's
# layers (brgemm blocks of 64 rows), small enough to cost milliseconds even on a reference one.
_TRIAL_TOKENS, _TRIAL_IN, _TRIAL_OUT = 64, 384, 128
_W_MAX = torch.iinfo(torch.int8).max  # 127: weights are symmetric int8 in [-127, 127]


@dataclass(frozen=True)
class Int8Kernel:
    """How a W8A8 layer runs its integer product here: activation bits and the kernels used.

    activation_bits: 8 (q in [-127, 127]) or 7 (q in [-63, 63]) where u8 x s8 pairs saturate.
    onednn: large calls go to oneDNN's prepacked matmul as u8 = q + zero_point
        (zero_point = 2**(bits - 1): 128, or 64 for 7 bits: u8 in [1, 127]).
    int_mm: small calls go to torch._int_mm with signed int8 q (only where it is exact).
    Neither: the integer sums are computed exactly in float64 (correct, slow).
    onednn_impl: the implementation oneDNN ran in the self-test, e.g. 'brg_matmul:avx512_core_vnni'.
    why: one sentence for the learner.

    Example: on an AVX-512 VNNI CPU, Int8Kernel(8, True, True, 'brg_matmul:avx512_core_vnni',
    ...) has q_max 127 and zero_point 128.
    """

    activation_bits: int
    onednn: bool
    int_mm: bool
    onednn_impl: str
    why: str

    @property
    def q_max(self) -> int:
        """Largest |q| of a symmetric activation: 2**(bits - 1) - 1 (127, or 63 for 7 bits)."""
        return 2 ** (self.activation_bits - 1) - 1

    @property
    def zero_point(self) -> int:
        """The u8 offset oneDNN reads: u8 = q + 2**(bits - 1) (128, or 64 for 7 bits)."""
        return 2 ** (self.activation_bits - 1)

    def describe(self) -> str:
        """One line: bit width, kernels and the reason."""
        large = f"oneDNN ({self.onednn_impl})" if self.onednn else None
        small = "torch._int_mm" if self.int_mm else large
        names = [name for name in dict.fromkeys([large, small]) if name] or ["float64 (exact)"]
        return f"{self.activation_bits}-bit activations on {' and '.join(names)}: {self.why}"


@dataclass(frozen=True)
class KernelTrial:
    """One way of running the product, tried once: exact on saturating inputs? which impl?"""

    name: str  # "oneDNN u8, 8-bit", "oneDNN u8, 7-bit", "oneDNN s8", "torch._int_mm"
    exact: bool
    max_error: float  # max |int32 sum - float64 sum| on the saturating inputs
    implementation: str  # from ONEDNN_VERBOSE ('' where oneDNN does not name it)

    @property
    def reference(self) -> bool:
        """True if oneDNN ran a reference (slow, unoptimized) implementation."""
        return self.implementation.startswith("ref")


def _verbose_lines(run: Callable[[], object]) -> tuple[object, list[str]]:
    """run() with ONEDNN_VERBOSE on and fd 1 captured; its result and every log line."""
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                result = run()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return result, log.read().decode(errors="replace").splitlines()


def onednn_implementations(run: Callable[[], object]) -> tuple[object, list[str]]:
    """Call run() with oneDNN's verbose log on; return its result and the implementations it ran.

    The log goes to file descriptor 1, which is redirected to a temporary file for the call (so
    nothing reaches a notebook's output). Each 'onednn_verbose,...,exec,cpu,<primitive>,<impl>,'
    line names one execution. Example: a u8 x s8 qlinear_pointwise on an AVX-512 VNNI CPU gives
    ['brg_matmul:avx512_core_vnni'].
    """
    if not callable(run):
        raise TypeError(f"run must be callable with no arguments, got {type(run).__name__}")
    result, lines = _verbose_lines(run)
    fields = [line.split(",") for line in lines if line.startswith("onednn_verbose")]
    return result, [f[6] for f in fields if len(f) > 6 and "exec" in f[2:4]]


def _isa_from_log(lines: list[str]) -> str:
    """The instruction set oneDNN runs at, from its verbose header ('...,cpu,isa:Intel AVX2')."""
    for line in lines:
        _, found, isa = line.partition(",cpu,isa:")
        if found:
            return isa.strip()
    return ""


def _saturating_operands(q_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations all +q_max (one row all -q_max) and weights +-127 by row: every u8 x s8
    pair is as large as the bit width allows, so a saturating int16 adder shows at once."""
    x_q = torch.full((_TRIAL_TOKENS, _TRIAL_IN), q_max, dtype=torch.int8)  # (tokens, in)
    x_q[1] = -q_max
    weight = torch.full((_TRIAL_OUT, _TRIAL_IN), _W_MAX, dtype=torch.int8)  # (out, in)
    weight[1::2] = -_W_MAX
    return x_q, weight


def _trial(name: str, q_max: int, product: Callable) -> KernelTrial:
    """Run product(x_q, weight) -> int sums on the saturating operands; compare with float64."""
    x_q, weight = _saturating_operands(q_max)
    expected = x_q.double() @ weight.double().T  # exact: |sums| < 2**53
    try:
        sums, impls = onednn_implementations(lambda: product(x_q, weight))
    except RuntimeError:  # this build or CPU has no such kernel
        return KernelTrial(name, False, float("inf"), "unavailable")
    error = (sums.double() - expected).abs().max().item()
    return KernelTrial(name, error == 0, error, impls[-1] if impls else "")


def _onednn_product(zero_point: int | None) -> Callable:
    """oneDNN's packed int8 matmul with activations as u8 = q + zero_point (s8 when None)."""

    def product(x_q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        packed = torch.ops.onednn.qlinear_prepack(weight, None)
        ones, zeros = torch.ones(weight.shape[0]), torch.zeros(weight.shape[0], dtype=torch.int64)
        x = x_q if zero_point is None else (x_q.short() + zero_point).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            x, 1.0, zero_point or 0, packed, ones, zeros, None, 1.0, 0, torch.float32,
            "none", [], "",
        )  # fmt: skip

    return product


def _onednn_available() -> bool:
    """True if this torch build has oneDNN's int8 linear (x86 CPU builds since torch 2.2)."""
    ops = torch.ops.onednn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "qlinear_prepack")
        and hasattr(ops, "qlinear_pointwise")
    )


def trial_runs() -> tuple[KernelTrial, ...]:
    """Every candidate tried once on saturating inputs (a few milliseconds; none is cached).

    Example, on an AVX-512 CPU without VNNI (or ONEDNN_MAX_CPU_ISA=AVX512_CORE): oneDNN u8
    8-bit not exact (int16 saturation), 7-bit exact, s8 exact but 'ref_int8' implementation,
    torch._int_mm not exact.
    """
    int_mm = _trial("torch._int_mm", _W_MAX, lambda x, w: torch._int_mm(x, w.t().contiguous()))
    if not _onednn_available():
        return (int_mm,)
    return (
        _trial("oneDNN u8, 8-bit", 127, _onednn_product(128)),
        _trial("oneDNN u8, 7-bit", 63, _onednn_product(64)),
        _trial("oneDNN s8", 127, _onednn_product(None)),
        int_mm,
    )


def int8_kernel_for(trials: tuple[KernelTrial, ...]) -> Int8Kernel:
    """The kernel a W8A8 layer should use, given the trials (pure: the rule, testable alone).

    1. oneDNN u8 at 8 bits, if exact and not a reference kernel (VNNI or AMX);
    2. else oneDNN u8 at 7 bits, if exact and not a reference kernel (int16 pairs cannot
       saturate: 2 x 127 x 127 < 32,767);
    3. else torch._int_mm alone if exact, else float64.
    Small calls use torch._int_mm only where it is exact at 8 bits and the layer runs 8 bits.
    oneDNN's s8 x s8 is never chosen: u8 is as fast where s8 is (AMX) and exact where s8 is not.
    """
    if not isinstance(trials, tuple | list) or not all(isinstance(t, KernelTrial) for t in trials):
        raise TypeError(
            f"trials must be a tuple of KernelTrial (from trial_runs()), got {trials!r}"
        )
    by_name = {trial.name: trial for trial in trials}
    good = {name for name, t in by_name.items() if t.exact and not t.reference}
    int_mm = "torch._int_mm" in good
    for bits, name in ((8, "oneDNN u8, 8-bit"), (7, "oneDNN u8, 7-bit")):
        if name in good:
            impl = by_name[name].implementation
            why = (
                "u8 x s8 products add exactly into int32 here (VNNI or AMX)"
                if bits == 8
                else "without VNNI, u8 x s8 pairs add in a saturating int16; 7-bit activations "
                "keep every pair below 32,767"
            )
            return Int8Kernel(bits, True, int_mm and bits == 8, impl, why)
    if int_mm:
        return Int8Kernel(8, False, True, "", "oneDNN's int8 linear is missing or inexact here")
    return Int8Kernel(8, False, False, "", "no exact int8 kernel here: integer sums in float64")


@functools.cache
def select_int8_kernel() -> Int8Kernel:
    """The kernel this process uses: `int8_kernel_for(trial_runs())`, tried once per process.

    The CPU and ONEDNN_MAX_CPU_ISA cannot change while a process runs, so the answer is cached
    (the only cache in the package that is not keyed on a tensor's version). Example: on an
    AMD EPYC with AVX-512 VNNI, 8-bit activations on oneDNN ('brg_matmul:avx512_core_vnni').
    """
    return int8_kernel_for(trial_runs())


@dataclass(frozen=True)
class IsaReport:
    """What one instruction-set cap gives: oneDNN's ISA, each trial's verdict, the choice.

    requested: the ONEDNN_MAX_CPU_ISA value ('' for none: the machine's own instructions).
    onednn_isa: the instruction set oneDNN reports it runs at, e.g. 'Intel AVX2'; a cap above
    the CPU's own instructions changes nothing, so two requests can report the same ISA.
    """

    requested: str
    onednn_isa: str
    trials: tuple[KernelTrial, ...]
    kernel: Int8Kernel


def _report_here() -> dict:
    """This process's self-test as JSON-ready data (what `survey_isas` reads from a subprocess)."""
    # oneDNN prints its header (with the ISA) once, at the first verbose call: make it this one
    _, lines = _verbose_lines(lambda: _onednn_product(64)(*_saturating_operands(63)))
    trials = trial_runs()
    return {
        "onednn_isa": _isa_from_log(lines),
        "trials": [vars(trial) for trial in trials],
        "kernel": vars(int8_kernel_for(trials)),
    }


def survey_isas(
    isas: tuple[str, ...] = ("", "AVX512_CORE_VNNI", "AVX512_CORE", "AVX2"),
) -> list[IsaReport]:
    """The self-test run once per instruction-set cap, each in a fresh Python process.

    oneDNN reads ONEDNN_MAX_CPU_ISA once, when it starts, so a cap needs a process of its own
    (about 3 s each, most of it importing torch). A cap can only take instructions away: on a
    CPU without VNNI, 'AVX512_CORE_VNNI' runs what the CPU has, and `onednn_isa` says so.
    Example, on an AMD EPYC with AVX2 only: every request reports 'Intel AVX2', 8-bit u8 is
    inexact (int16 saturation), 7-bit u8 exact, and the layer runs 7-bit activations.
    """
    if not isinstance(isas, tuple | list) or not all(isinstance(isa, str) for isa in isas):
        raise TypeError(f"isas must be a tuple of ONEDNN_MAX_CPU_ISA names, got {isas!r}")
    reports = []
    for isa in isas:
        env = {key: value for key, value in os.environ.items() if key != "ONEDNN_VERBOSE"}
        env.update({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})
        done = subprocess.run(
            [sys.executable, "-m", "tutorlib.layers.int8_kernel"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise ValueError(f"the self-test failed under ONEDNN_MAX_CPU_ISA={isa!r}: "
                             f"{done.stderr.strip()[-500:]}")  # fmt: skip
        data = json.loads(done.stdout.strip().splitlines()[-1])
        trials = tuple(KernelTrial(**trial) for trial in data["trials"])
        reports.append(IsaReport(isa, data["onednn_isa"], trials, Int8Kernel(**data["kernel"])))
    return reports


def survey_table(reports: list[IsaReport]) -> pd.DataFrame:
    """One row per cap: oneDNN's ISA, each trial's verdict ('exact' or its max error, and the
    implementation), and the activation bits the layer chose there.

    Example row: 'AVX2' | 'Intel AVX2' | 'off by 6,144,576 (gemm:jit)' | 'exact (gemm:jit)' |
    ... | 7.
    """
    if not isinstance(reports, list | tuple) or not all(isinstance(r, IsaReport) for r in reports):
        raise TypeError(f"reports must be a list of IsaReport (survey_isas()), got {reports!r:.80}")

    def verdict(trial: KernelTrial) -> str:
        found = "exact" if trial.exact else f"off by {trial.max_error:,.0f}"
        return f"{found} ({trial.implementation})" if trial.implementation else found

    rows = [
        {"ONEDNN_MAX_CPU_ISA": r.requested or "(none)", "oneDNN runs": r.onednn_isa}
        | {trial.name: verdict(trial) for trial in r.trials}
        | {"layer's activation bits": r.kernel.activation_bits}
        for r in reports
    ]
    return pd.DataFrame(rows)


if __name__ == "__main__":  # one report as JSON, for survey_isas's subprocesses
    print(json.dumps(_report_here()))
