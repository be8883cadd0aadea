"""Tests of tutorlib.benchmark (Lesson 5): variants, rows, targets, table and JSON on tiny inputs.

No assertion depends on how fast anything ran.
"""

import json

import pytest
import torch
from transformers import BertConfig, BertModel

from tutorlib.benchmark import (
    BenchmarkRow,
    build_variants,
    check_targets,
    format_table,
    run_benchmark,
    write_json,
)
from tutorlib.machine import CpuInfo
from tutorlib.memory import model_size_bytes
from tutorlib.search import load_minilm
from tutorlib.timing import MatmulPeaks


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
    with pytest.raises(ValueError, match="batch sizes"):
        run_benchmark({"FP32": model}, tokenizer, ["a", "b"], 1e12, batch_sizes=(3,))
