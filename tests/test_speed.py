"""Tests of tutorlib.speed (Lesson 5): the timing and benchmark logic, on tiny inputs.

No assertion depends on how fast anything ran: the logic around the clock is tested (order of
calls, MAC counts, ratios, formatting), not the clock.
"""

import copy
import dataclasses
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import BertConfig, BertModel

from tutorlib.layers import W8A8Linear
from tutorlib.memory import model_size_bytes
from tutorlib.speed import (
    INT8_FLAGS,
    BenchmarkRow,
    CpuInfo,
    LayerSteps,
    MatmulPeaks,
    activation_stats,
    amdahl_speedup,
    bert_layer_label,
    build_variants,
    capture_linear_inputs,
    check_targets,
    format_table,
    is_linear_layer,
    keep_freed_memory,
    measure_matmul_peaks,
    median_ms,
    min_cosines,
    ops_per_second,
    parse_cpuinfo,
    profile_linear_layers,
    profile_w8a8_steps,
    run_benchmark,
    time_interleaved,
    write_json,
)

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni sse4_2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni sse4_2
"""


# ---------------------------------------------------------------- the machine


def test_parse_cpuinfo_names_the_machine_and_its_int8_units() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == CpuInfo("AMD EPYC", 2, ("avx512_vnni", "avx512_bf16"))
    assert info.has("avx512_vnni") and not info.has("amx_int8")
    assert info.describe() == "AMD EPYC, 2 logical CPUs, int8/bf16 units: avx512_vnni, avx512_bf16"


def test_parse_cpuinfo_without_the_fields() -> None:
    info = parse_cpuinfo("")
    assert info == CpuInfo("unknown CPU", 0, ())
    assert "none of avx512_vnni" in info.describe()


def test_unknown_flag_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown flag"):
        parse_cpuinfo(CPUINFO).has("avx9000")
    assert len(set(INT8_FLAGS)) == len(INT8_FLAGS)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_sets_glibc_thresholds() -> None:
    assert keep_freed_memory() is True  # mallopt returns 1 for each accepted setting


# ---------------------------------------------------------------- timing logic


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
    with pytest.raises(ValueError):
        ops_per_second(2, 2, 2, 0.0)


def test_measure_matmul_peaks_returns_positive_rates_for_its_size() -> None:
    peaks = measure_matmul_peaks(size=64, repeats=2)
    assert peaks.size == 64
    assert min(peaks.int8_ops_per_s, peaks.fp32_ops_per_s, peaks.bf16_ops_per_s) > 0


@pytest.mark.parametrize(
    ("fraction", "speedup", "expected"),
    [(0.8, 4.0, 2.5), (0.0, 10.0, 1.0), (1.0, 4.0, 4.0), (0.5, 1.0, 1.0)],
    ids=["textbook", "nothing-sped-up", "everything-sped-up", "no-gain"],
)
def test_amdahl_speedup(fraction: float, speedup: float, expected: float) -> None:
    assert amdahl_speedup(fraction, speedup) == pytest.approx(expected)


def test_profile_w8a8_steps_times_every_step_of_one_layer() -> None:
    torch.manual_seed(0)
    linear, x = nn.Linear(16, 32), torch.randn(3, 5, 16)  # any leading shape, as forward
    steps = profile_w8a8_steps(linear, x, repeats=3)
    assert isinstance(steps, LayerSteps)
    times = dataclasses.asdict(steps)
    assert set(times) == {"fp32", "w8a8", "quantize", "int_mm", "rescale", "torch_ao"}
    assert all(math.isfinite(t) and t > 0 for t in times.values())


@pytest.mark.parametrize(
    ("linear", "x", "error"),
    [
        (nn.Conv1d(4, 4, 1), torch.randn(2, 4), TypeError),
        (nn.Linear(4, 4), torch.randn(2, 5), ValueError),
        (nn.Linear(4, 4), torch.ones(2, 4, dtype=torch.int64), ValueError),
    ],
    ids=["not-a-linear", "wrong-width", "integer-input"],
)
def test_profile_w8a8_steps_rejects_bad_input(linear: nn.Module, x: torch.Tensor, error) -> None:
    with pytest.raises(error):
        profile_w8a8_steps(linear, x, repeats=1)


@settings(max_examples=50, deadline=None)
@given(fraction=st.floats(0, 1), speedup=st.floats(1, 100))
def test_amdahl_never_beats_the_serial_part(fraction: float, speedup: float) -> None:
    whole = amdahl_speedup(fraction, speedup)
    assert 1 <= whole * (1 + 1e-12) and whole <= speedup * (1 + 1e-12)
    if fraction < 1:
        assert whole <= 1 / (1 - fraction) * (1 + 1e-12)


def test_amdahl_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        amdahl_speedup(1.5, 2.0)
    with pytest.raises(ValueError):
        amdahl_speedup(0.5, 0.0)


# ---------------------------------------------------------------- where the time goes


def test_is_linear_layer_recognises_every_kind_of_linear() -> None:
    linear = nn.Linear(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation warnings
        dynamic = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(4, 3)), {nn.Linear}, dtype=torch.qint8
        )[0]
    assert is_linear_layer(linear)
    assert is_linear_layer(W8A8Linear.from_linear(linear))
    assert is_linear_layer(dynamic)
    assert not is_linear_layer(nn.LayerNorm(4))
    assert not is_linear_layer(nn.Sequential(linear))


def test_profile_linear_layers_counts_macs_and_removes_its_hooks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 5, 4)  # 15 vectors
    profile = profile_linear_layers(model, lambda: model(x), repeats=3)
    assert profile.macs == 15 * 4 * 8 + 15 * 8 * 2  # 480 + 240
    # each call's linear time is part of its total, so the medians keep that order
    assert 0 < profile.linear_seconds <= profile.total_seconds
    assert 0 < profile.linear_fraction <= 1
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------- activations: why per token


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("encoder.layer.0.attention.self.query", "0 attention in"),
        ("encoder.layer.5.attention.output.dense", "5 attention out"),
        ("encoder.layer.3.intermediate.dense", "3 FFN up"),
        ("encoder.layer.11.output.dense", "11 FFN down"),
        ("pooler.dense", "pooler"),
    ],
    ids=["query", "attention-out", "ffn-up", "ffn-down", "pooler"],
)
def test_bert_layer_label(name: str, label: str) -> None:
    assert bert_layer_label(name) == label


def test_capture_linear_inputs_keeps_each_layers_rows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 5, 4)
    outputs = []
    inputs = capture_linear_inputs(model, lambda: outputs.append(model(x)))
    assert torch.equal(outputs[0], model(x))  # the hooks only look: same output, same shape
    assert list(inputs) == ["0", "2"]
    assert torch.equal(inputs["0"], x.reshape(15, 4))
    assert torch.equal(inputs["2"], torch.relu(model[0](x)).detach().reshape(15, 8))
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_activation_stats_by_hand() -> None:
    # One outlier row sets the per-tensor scale s = 100 / 127 for both rows:
    # row 0 [1.0, 0.25] -> q [1, 0] -> [0.7874, 0.0]. Per token, row 0 gets s = 1 / 127:
    # 0.25 * 127 = 31.75 -> 32 -> 0.251969. Row 1 [100, 0] is exact either way.
    rows = torch.tensor([[1.0, 0.25], [100.0, 0.0]])
    stats = activation_stats("toy", rows)
    signal = 1.0 + 0.25**2 + 100.0**2
    tensor_noise = (1.0 - 100 / 127) ** 2 + 0.25**2
    token_noise = (0.25 - 32 / 127) ** 2
    assert stats.layer == "toy"
    assert stats.abs_max == 100.0
    assert stats.median_token_abs_max == 1.0  # torch's median of [1, 100] is the lower one
    assert stats.sqnr_per_tensor_db == pytest.approx(
        10 * math.log10(signal / tensor_noise), abs=1e-3
    )
    assert stats.sqnr_per_token_db == pytest.approx(10 * math.log10(signal / token_noise), abs=0.05)


# ---------------------------------------------------------------- rows, targets, table, JSON


def _row(variant: str, batch_size: int, ms: float, cosine: float = 0.999) -> BenchmarkRow:
    return BenchmarkRow(
        variant=variant,
        batch_size=batch_size,
        tokens=22 * batch_size,
        median_ms=ms,
        speedup=(100.0 if batch_size == 32 else 10.0) / ms,
        size_bytes=58_700_000,
        min_cosine=cosine,
        linear_fraction=0.5,
        linear_ms=ms / 2,
        linear_ops_per_s=1e11,
        fraction_of_int8_peak=0.25,
    )


def _rows(w8a8_32: float, w8a8_1: float, cosine: float = 0.999) -> list[BenchmarkRow]:
    return [
        _row("FP32", 1, 10.0, 1.0),
        _row("tutorlib W8A8", 1, w8a8_1, cosine),
        _row("FP32", 32, 100.0, 1.0),
        _row("BF16", 32, 50.0),
        _row("torch.ao dynamic", 32, 40.0, 0.93),
        _row("tutorlib W8A8", 32, w8a8_32, cosine),
    ]


def test_check_targets_all_met() -> None:
    targets = check_targets(_rows(w8a8_32=25.0, w8a8_1=10.0))
    assert [t.met for t in targets] == [True] * 5
    assert [t.measured for t in targets] == pytest.approx([4.0, 2.0, 1.6, 0.999, 1.0])


def test_check_targets_reports_each_miss() -> None:
    # 50 ms at batch 32: 2x FP32 (< 4), as fast as BF16 (not faster), slower than torch.ao
    targets = check_targets(_rows(w8a8_32=50.0, w8a8_1=12.5, cosine=0.99))
    assert [t.met for t in targets] == [False, False, False, False, False]
    assert targets[1].measured == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no row"):
        check_targets(_rows(25.0, 10.0)[:2])


def test_format_table_is_fixed_width_and_rounded() -> None:
    table = format_table([_row("tutorlib W8A8", 32, 25.0)])
    header, line = table.splitlines()
    assert header.split() == [
        "variant", "batch", "tokens", "ms", "x", "FP32", "MB", "min", "cos", "lin", "ms", "%peak",
    ]  # fmt: skip
    assert line == (
        "tutorlib W8A8        32     704    25.00    4.00   58.7   0.9990    12.50   25.0"
    )
    assert len(header) == len(line) == 80


def test_write_json_round_trip(tmp_path) -> None:
    rows = _rows(25.0, 10.0)
    machine = CpuInfo("AMD EPYC", 2, ("avx512_vnni",))
    peaks = MatmulPeaks(2048, 7e11, 1.7e11, 3.5e11)
    path = write_json(tmp_path / "out" / "bench.json", rows, machine, peaks, {"repeats": 3})
    document = json.loads(path.read_text())
    assert document["machine"] == {
        "model_name": "AMD EPYC",
        "logical_cpus": 2,
        "flags": ["avx512_vnni"],
    }
    assert document["peaks"]["int8_ops_per_s"] == 7e11
    assert document["settings"] == {"repeats": 3}
    assert [BenchmarkRow(**row) for row in document["rows"]] == rows


# ---------------------------------------------------------------- the benchmark, end to end


@pytest.fixture(scope="module")
def tiny_bert_and_tokenizer():
    """A 2-layer BERT with hidden size 32 (seeded) and MiniLM's tokenizer: seconds, not minutes."""
    from tutorlib.models import load_minilm

    _, tokenizer = load_minilm()
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return BertModel(config).eval(), tokenizer


def test_build_variants_rejects_unknown_names(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    with pytest.raises(ValueError, match="unknown variants"):
        build_variants(model, tokenizer, ["a sentence"], names=["FP32", "FP64"])


def test_run_benchmark_on_a_tiny_model(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    sentences = ["The cat sat on the mat.", "A short one.", "Int8 sums in int32 exactly."]
    variants = build_variants(model, tokenizer, sentences)
    assert list(variants) == [
        "FP32", "BF16", "quanto W8", "quanto W8A8", "torch.ao dynamic", "tutorlib W8A16",
        "tutorlib W8A8",
    ]  # fmt: skip
    assert variants["FP32"] is model
    rows = run_benchmark(variants, tokenizer, sentences, 1e12, batch_sizes=(1, 3), repeats=2)
    assert [(r.batch_size, r.variant) for r in rows[:2]] == [(1, "FP32"), (1, "BF16")]
    assert len(rows) == 2 * len(variants)
    by_key = {(r.variant, r.batch_size): r for r in rows}
    assert by_key["FP32", 1].speedup == 1.0 and by_key["FP32", 3].speedup == 1.0
    assert by_key["FP32", 1].min_cosine == pytest.approx(1.0, abs=1e-6)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    assert by_key["FP32", 3].tokens == batch["input_ids"].numel()
    assert by_key["tutorlib W8A8", 3].size_bytes == model_size_bytes(variants["tutorlib W8A8"])
    # 2 layers x (4 x 32 x 32 + 2 x 32 x 64) + the pooler 32 x 32, per token (pooler: per row)
    fp32 = by_key["FP32", 3]
    macs = fp32.linear_ops_per_s * fp32.linear_ms / 1e3 / 2
    assert macs == pytest.approx(fp32.tokens * 2 * (4 * 32 * 32 + 2 * 32 * 64) + 3 * 32 * 32)
    for row in rows:
        assert 0 < row.linear_fraction <= 1
        assert row.linear_ms == pytest.approx(row.linear_fraction * row.median_ms)
        assert 0 < row.min_cosine <= 1 + 1e-6
        assert row.fraction_of_int8_peak == pytest.approx(row.linear_ops_per_s / 1e12)


def test_min_cosines_of_the_model_to_itself_and_to_a_copy_in_bf16(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    variants = {"FP32": model, "BF16": copy.deepcopy(model).to(torch.bfloat16)}
    cosines = min_cosines(variants, tokenizer, ["One sentence.", "And another one here."])
    assert cosines["FP32"] == pytest.approx(1.0, abs=1e-6)
    # bf16 keeps 8 significant bits: the embeddings turn by a little, not by nothing
    assert 0.99 < cosines["BF16"] < 1.0


def test_run_benchmark_rejects_bad_arguments(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    with pytest.raises(ValueError, match="baseline"):
        run_benchmark({"BF16": model}, tokenizer, ["a"], 1e12)
    with pytest.raises(ValueError, match="batch sizes"):
        run_benchmark({"FP32": model}, tokenizer, ["a", "b"], 1e12, batch_sizes=(3,))
