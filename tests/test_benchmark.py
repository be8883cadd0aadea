"""Tests of tutorlib.benchmark (Lesson 5): variants, rows, targets, table and JSON on tiny inputs.

No assertion depends on how fast anything ran.
"""

import copy
import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from tutorlib.models.minilm import load_minilm
from tutorlib.models.size import model_size_bytes
from tutorlib.perf.benchmark import (
    BenchmarkRow,
    compare_settings,
    find_row,
    format_table,
    read_rows,
    run_benchmark,
    write_json,
)
from tutorlib.perf.machine import CpuInfo
from tutorlib.perf.targets import TARGETS, Target, TargetSpec, amdahl_cap, check_targets
from tutorlib.perf.timing import MatmulPeaks
from tutorlib.perf.variants import build_variants, drop_unused_pooler, use_inplace_gelu


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
    targets = check_targets(_rows(w8a8_32=25.0, w8a8_1=7.5), _rows(w8a8_32=30.0, w8a8_1=7.5))
    assert list(targets) == [spec.key for spec in TARGETS]
    assert all(target.met for target in targets.values())
    measured = {key: target.measured for key, target in targets.items()}
    assert measured == pytest.approx(
        {
            "over_fp32": 4.0,
            "over_ao": 1.6,
            "over_ao_allocator": 40 / 30,
            "over_bf16": 2.0,
            "small_over_fp32": 10 / 7.5,
            "min_cosine": 0.999,
        }
    )


def test_check_targets_reports_each_miss_and_reads_strictness_from_the_spec() -> None:
    # 60 ms at batch 32: 1.67x FP32 (< 2), slower than BF16 (50 ms) and torch.ao (40 ms);
    # 12.5 ms at batch 1 (0.8x FP32, < 1); cosine 0.99 (< 0.995)
    targets = check_targets(_rows(w8a8_32=60.0, w8a8_1=12.5, cosine=0.99))
    assert "over_ao_allocator" not in targets  # that setting was not measured
    assert not any(target.met for target in targets.values())
    assert targets["over_fp32"].measured == pytest.approx(100 / 60)
    assert targets["over_bf16"].spec.stretch and not targets["over_fp32"].spec.stretch
    # a tie: "at least" is met, "faster than" (strict) is not
    assert Target(TargetSpec("k", "as fast as", 1.0), 1.0).met
    assert not Target(TargetSpec("k", "faster than", 1.0, strict=True), 1.0).met


def test_check_targets_names_a_missing_row() -> None:
    with pytest.raises(ValueError, match="batch_size 32"):
        check_targets(_rows(25.0, 10.0)[:2])
    with pytest.raises(ValueError, match="variant"):
        check_targets(_rows(25.0, 10.0), variant="quanto W8")


def test_find_row_looks_up_by_variant_and_batch() -> None:
    rows = _rows(25.0, 10.0)
    assert find_row(rows, "tutorlib W8A8", 1).median_ms == 10.0
    assert find_row(rows, "FP32", 32).median_ms == 100.0
    with pytest.raises(ValueError, match="batch_size 7"):
        find_row(rows, "FP32", 7)


def test_amdahl_cap_uses_the_achieved_fp32_rate() -> None:
    # FP32 at batch 32: 100 ms, half of it (50 ms) in linear layers at 1e11 op/s, so 5e9 ops;
    # at an int8 peak of 8e11 op/s they take 6.25 ms: cap = 100 / (50 + 6.25) = 1.78.
    # Peak against peak (8e11 / 2e11 = 4) would give 1 / (0.5 + 0.5 / 4) = 1.6 instead.
    cap = amdahl_cap(_rows(25.0, 10.0), MatmulPeaks(2048, 8e11, 2e11, 4e11))
    assert cap.int8_linear_ms == pytest.approx(6.25)
    assert cap.other_ms == pytest.approx(50.0)
    assert cap.fp32_fraction_of_fp32_peak == pytest.approx(0.5)
    assert cap.cap == pytest.approx(100 / 56.25)


def test_format_table_is_rounded_and_stable() -> None:
    rows = [_row("tutorlib W8A8", 32, 25.0), _row("FP32", 32, 100.0)]
    table = format_table(rows)
    header, line, _ = table.splitlines()
    assert header.split() == [
        "variant", "batch", "tokens", "ms", "x", "FP32", "MB", "min", "cos", "lin", "ms", "%peak",
    ]  # fmt: skip
    assert line.split() == [
        "tutorlib", "W8A8", "32", "704", "25.00", "4.00", "58.7", "0.9990", "12.50", "25.0",
    ]  # fmt: skip
    assert format_table(rows) == table


def test_compare_settings_puts_both_runs_side_by_side() -> None:
    frame = compare_settings(_rows(25.0, 10.0), _rows(50.0, 10.0))
    ours = frame[(frame["variant"] == "tutorlib W8A8") & (frame["batch_size"] == 32)]
    assert ours["speedup default"].item() == pytest.approx(4.0)
    assert ours["speedup allocator"].item() == pytest.approx(2.0)


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
    assert read_rows(path) == rows


def test_write_json_never_writes_a_bare_nan(tmp_path) -> None:
    rows = [_row("FP32", 32, 100.0), replace(_row("tutorlib W8A8", 32, 25.0), min_cosine=math.nan)]
    machine = CpuInfo("AMD EPYC", 2, ())
    peaks = MatmulPeaks(2048, math.inf, 1.7e11, 3.5e11)
    path = write_json(tmp_path / "bench.json", rows, machine, peaks, {"x": math.nan})

    def refuse(token: str) -> None:
        raise AssertionError(f"bare {token} in the JSON")

    document = json.loads(path.read_text(), parse_constant=refuse)
    assert document["rows"][1]["min_cosine"] is None and document["peaks"]["int8_ops_per_s"] is None
    assert math.isnan(read_rows(path)[1].min_cosine)


@pytest.fixture(scope="module")
def tiny_bert_and_tokenizer():
    """A 2-layer BERT with hidden size 32 (seeded) and MiniLM's tokenizer: seconds, not minutes."""

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


def test_run_benchmark_rejects_bad_arguments(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    with pytest.raises(ValueError, match="baseline"):
        run_benchmark({"BF16": model}, tokenizer, ["a"], 1e12)
    with pytest.raises(ValueError, match="batch_sizes"):
        run_benchmark({"FP32": model}, tokenizer, ["a", "b"], 1e12, batch_sizes=(3,))
    for peak in (0.0, -1e12, float("nan")):  # a rate must be positive and finite
        with pytest.raises(ValueError, match="int8_peak_ops_per_s"):
            run_benchmark({"FP32": model}, tokenizer, ["a", "b"], peak)
    with pytest.raises(ValueError, match="no nn.Linear"):
        run_benchmark({"FP32": nn.Sequential(nn.ReLU())}, tokenizer, ["a"], 1e12, batch_sizes=(1,))


def test_build_variants_refuses_one_name_as_a_string(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    with pytest.raises(TypeError, match="names"):
        build_variants(model, tokenizer, ["a"], names="FP32")  # would iterate "F", "P", ...


def test_drop_unused_pooler_changes_no_embedding(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    batch = tokenizer(
        ["A short one.", "Int8 sums in int32 exactly."], padding=True, return_tensors="pt"
    )
    trimmed = drop_unused_pooler(copy.deepcopy(model))
    assert trimmed.pooler is None and model.pooler is not None
    with torch.inference_mode():
        assert torch.equal(trimmed(**batch).last_hidden_state, model(**batch).last_hidden_state)
    with pytest.raises(ValueError, match="pooler"):
        drop_unused_pooler(trimmed)


def test_use_inplace_gelu_changes_no_output(tiny_bert_and_tokenizer) -> None:
    model, tokenizer = tiny_bert_and_tokenizer
    batch = tokenizer(
        ["A short one.", "Int8 sums in int32 exactly."], padding=True, return_tensors="pt"
    )
    changed = copy.deepcopy(model)
    assert use_inplace_gelu(changed) == 2  # one per block
    with torch.inference_mode():
        assert torch.equal(changed(**batch).last_hidden_state, model(**batch).last_hidden_state)
    with torch.enable_grad():  # with autograd the GELU is out of place again
        changed(**batch).last_hidden_state.sum().backward()
