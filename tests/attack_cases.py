"""The tables of the attack test (tests/test_attack.py): valid examples, bad-input families,
oracles, and the short, named lists of what is skipped or accepted.

Everything is keyed by a function's __qualname__ ("fake_quantize", "W8A8Linear.from_linear"),
never by its module, so the tables survive functions moving between modules. The exercises'
reference solutions are not attacked: they export nothing (``__all__ = []``), are reached through
``EXERCISES[id].solution``, and are the learner's model answers, checked by their own tests.
Other tutorlib functions needed to build a valid example are found with `api(name)`, wherever
they live.
"""

import dataclasses
import hashlib
import importlib
import json
import math
import pkgutil
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import tutorlib

# ---------------------------------------------------------------------------------------------
# Discovery helpers


def public_modules() -> list[str]:
    """Every module of tutorlib (subpackages included) that imports; private ones excluded."""
    names = []
    for info in pkgutil.walk_packages(tutorlib.__path__, "tutorlib."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # a module mid-move; reported by test_every_module_imports
            pass
        names.append(info.name)
    return names


def api(name: str):
    """The public tutorlib object called `name`, in whichever module exports it now (the
    exercises' reference solutions, which reuse names with older signatures, come last)."""
    modules = public_modules()
    for module_name in sorted(modules, key=lambda m: m.startswith("tutorlib.exercises")):
        module = importlib.import_module(module_name)
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise LookupError(f"no tutorlib module exports {name!r}: update tests/attack_cases.py")


# ---------------------------------------------------------------------------------------------
# Valid examples. Factories, so that every case gets fresh objects.


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def small_linear(in_features: int = 8, out_features: int = 4) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def digits_split():
    split = api("load_digits_split")()
    n = 64  # a tiny split keeps training to a fraction of a second
    return dataclasses.replace(
        split,
        train_images=split.train_images[:n],
        train_labels=split.train_labels[:n],
        test_images=split.test_images[:n],
        test_labels=split.test_labels[:n],
    )


def benchmark_rows() -> list:
    row = api("BenchmarkRow")
    rows = []
    for batch in (1, 32):
        for variant, ms, cos in (
            ("FP32", 10.0, 1.0),
            ("BF16", 8.0, 0.999),
            ("torch.ao dynamic", 4.0, 0.998),
            ("tutorlib W8A8", 2.0, 0.997),
        ):
            rows.append(
                row(variant, batch, 8 * batch, ms, 10.0 / ms, 1000, cos, 0.8, 0.8 * ms, 1e9, 0.1)
            )
    return rows


def _tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16,
    )  # fmt: skip
    return BertModel(config).eval()


def _benchmark_json(tmp: Path) -> Path:
    return api("write_json")(
        tmp / "bench.json",
        benchmark_rows(),
        api("parse_cpuinfo")("model name\t: Test CPU\nprocessor\t: 0\n"),
        api("MatmulPeaks")(64, 1e10, 1e9, 5e8),
        {"repeats": 10},
    )


def activation_stats_list() -> list:
    stats = api("ActivationStats")
    return [
        stats("encoder.layer.0.attention.self.query", 3.0, 1.0, 30.0, 40.0),
        stats("encoder.layer.0.output.dense", 30.0, 2.0, 20.0, 41.0),
    ]


def error_curves():
    return api("run_experiment")([16, 64], draws=2)


def digest_file(tmp: Path) -> Path:
    path = tmp / "weights.bin"
    path.write_bytes(b"tutorlib")
    return path


# Valid example per parameter name, when the name means the same thing everywhere.
VALID_BY_NAME: dict[str, Callable[[], object]] = {
    "r": lambda: torch.tensor([[-1.0, 0.5, 3.0, 2.0], [0.25, -0.75, 1.5, -2.0]]),  # (2, 4)
    "r_hat": lambda: torch.tensor([[-1.0, 0.5, 3.0, 2.0], [0.25, -0.75, 1.5, -2.1]]),
    "x": lambda: seeded(16),
    "y": lambda: seeded(16, seed=1),
    "terms": lambda: seeded(16),
    "weights": lambda: seeded(64),
    "rows": lambda: seeded(3, 8),
    "bits": lambda: 8,
    "symmetric": lambda: False,
    "dim": lambda: None,
    "group_size": lambda: None,
    "dtype": lambda: torch.float16,
    "dtypes": lambda: (torch.float32, torch.float16),
    "accumulate": lambda: "native",
    "n": lambda: 100,
    "u": lambda: 2.0**-11,
    "lam": lambda: 1.0,
    "lengths": lambda: [10, 100, 1000],
    "distributions": lambda: ("randn",),
    "draws": lambda: 2,
    "seed": lambda: 0,
    "value": lambda: 0.1,
    "values": lambda: (1.0, 1e5, 1e-8),
    "sign": lambda: 0,
    "biased_exponent": lambda: 15,
    "mantissa": lambda: 0,
    "n_parameters": lambda: 1000,
    "model": small_model,
    "linear": small_linear,
    "layer_cls": lambda: api("W8A16Linear"),
    "skip": lambda: ("lm_head",),
    "in_features": lambda: 8,
    "out_features": lambda: 4,
    "bias": lambda: True,
    "logits": lambda: torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5]]),
    "labels": lambda: torch.tensor([0, 1, 2]),
    "reference": lambda: seeded(4, 5),
    "other": lambda: seeded(4, 5) + 0.01,
    "inputs": lambda: seeded(2, 8),
    "threshold": lambda: 2.0,
    "n_thresholds": lambda: 10,
    "epochs": lambda: 1,
    "batch_size": lambda: 32,
    "learning_rate": lambda: 0.01,
    "test_fraction": lambda: 0.2,
    "num_classes": lambda: 10,
    "images": lambda: seeded(2, 1, 8, 8),
    "split": digits_split,
    "repeats": lambda: 2,
    "warmup": lambda: 1,
    "function": lambda: lambda: None,
    "run": lambda: lambda: None,
    "runs": lambda: {"a": lambda: None, "b": lambda: None},
    "desc": lambda: "timing",
    "seconds": lambda: [0.001, 0.002, 0.004],
    "m": lambda: 32,
    "k": lambda: 64,
    "parallel_fraction": lambda: 0.8,
    "speedup_of_fraction": lambda: 4.0,
    "text": lambda: "model name\t: Test CPU\nflags\t\t: avx2 avx512_vnni\nprocessor\t: 0\n",
    "flag": lambda: "avx2",
    "module": lambda: nn.Linear(8, 4),
    "layer": lambda: "encoder.layer.0.attention.self.query",
    "name": lambda: "encoder.layer.0.attention.self.query",
    "rows_list": benchmark_rows,
    "variant": lambda: "tutorlib W8A8",
    "large_batch": lambda: 32,
    "small_batch": lambda: 1,
    "machine": lambda: "test machine",
    "min_cosine": lambda: 0.995,
    "stats": activation_stats_list,
    "curves": error_curves,
    "query_embeddings": lambda: seeded(3, 6),
    "corpus_embeddings": lambda: seeded(5, 6, seed=1),
    "relevant": lambda: [0, 1, 2, 3],
    "how_to_fix": lambda: "reinstall the package",
    "mmap_threshold": lambda: 32 * 2**20,
    "trim_threshold": lambda: 2**30,
    "points": lambda: 50,
    "low_precision_sums": lambda: torch.cumsum(seeded(16), 0).half(),
    "exact_sums": lambda: torch.cumsum(seeded(16).double(), 0),
    "differences": lambda: {"bfloat16": seeded(20).abs(), "float16": seeded(20, seed=1).abs()},
    "reference_lines": lambda: {"u(bfloat16)": 2.0**-8},
    "cosines": lambda: {"float16": 1 - seeded(20).abs() * 1e-4},
    "thresholds": lambda: torch.linspace(0.5, 3.0, 10),
    "sqnr_db": lambda: torch.linspace(20.0, 30.0, 10),
    "signed": lambda: True,
    "scale": lambda: torch.tensor(4 / 255),
    "zero_point": lambda: 64,
    "exponent_bits": lambda: 5,
    "mantissa_bits": lambda: 10,
    "a": lambda: seeded(3, 6),
    "b": lambda: seeded(3, 6, seed=1),
    "logits_a": lambda: seeded(4, 5),
    "logits_b": lambda: seeded(4, 5) + 0.01,
    "weight": lambda: seeded(4, 8),
    "embeddings": lambda: seeded(4, 5),
    "packed": lambda: torch.tensor([27, 228], dtype=torch.uint8),
    "task": lambda: api("load_search_task")(),
}


# Per-function valid examples that differ from the table above. Values are factories of the
# kwargs that change; `tmp` is a fresh temporary folder.
def _isa_reports() -> list:
    """Two hand-made reports, as survey_isas would give on a CPU without VNNI."""
    trial, kernel, report = api("KernelTrial"), api("Int8Kernel"), api("IsaReport")
    trials = (
        trial("oneDNN u8, 8-bit", False, 6.1e6, "gemm:jit"),
        trial("torch._int_mm", True, 0.0, ""),
    )
    seven = kernel(7, True, False, "gemm:jit", "int16 pairs saturate")
    return [report("", "Intel AVX2", trials, seven), report("AVX2", "Intel AVX2", trials, seven)]


OVERRIDES: dict[str, Callable[[Path], dict]] = {
    "growth_exponent": lambda tmp: {
        "lengths": [10, 100, 1000],
        "errors": torch.tensor([[1e-4, 1e-3, 1e-2], [2e-4, 2e-3, 2e-2]]),
    },
    "spacing": lambda tmp: {"x": torch.tensor([1.0, 100.0, 0.001])},
    "overflow_underflow_table": lambda tmp: {"values": (1.0, 1e5, 1e-8)},
    "W8A16Linear.forward": lambda tmp: {"x": seeded(3, 8)},
    "W8A8Linear.forward": lambda tmp: {"x": seeded(3, 8)},
    "W8A8Linear.rescale": lambda tmp: {"y": seeded(3, 4), "x_scale": torch.full((3, 1), 0.01)},
    "survey_isas": lambda tmp: {"isas": ("",)},
    "survey_table": lambda tmp: {
        "reports": _isa_reports()
    },  # one subprocess (~3 s), the machine's own ISA
    "W8A8Linear.integer_matmul": lambda tmp: {
        "x_q": torch.randint(-63, 64, (3, 8), dtype=torch.int8),  # on the 7- and 8-bit grids
    },
    "W8A8Linear.integer_product": lambda tmp: {  # uint8 or int8, as this CPU's kernel reads
        "x_kernel": INSTANCES["W8A8Linear"]().quantize_into_scratch(seeded(3, 8))[0].clone(),
    },
    "find_row": lambda tmp: {"rows": benchmark_rows(), "batch_size": 32},
    "drop_unused_pooler": lambda tmp: {"model": _tiny_bert()},
    "use_inplace_gelu": lambda tmp: {"model": _tiny_bert()},
    "amdahl_cap": lambda tmp: {
        "rows": benchmark_rows(),
        "peaks": api("MatmulPeaks")(64, 1e10, 1e9, 5e8),
    },
    "rows_frame": lambda tmp: {"rows": benchmark_rows()},
    "compare_settings": lambda tmp: {
        "rows": benchmark_rows(),
        "rows_with_setting": benchmark_rows(),
    },
    "read_rows": lambda tmp: {"path": _benchmark_json(tmp)},
    "large_allocations": lambda tmp: {"run": lambda: torch.ones(1000), "min_bytes": 1000},
    "operator_times": lambda tmp: {"run": lambda: torch.ones(10) + 1, "repeats": 1},
    "plot_sqnr_vs_bits": lambda tmp: {
        "bits": [2, 4, 8],
        "sqnr_db": {"per-tensor": [5.0, 17.0, 41.0]},
    },
    "plot_clipping_sweep": lambda tmp: {"bits": 4},
    "plot_weight_histogram_with_grid": lambda tmp: _histogram_kwargs(),
    "plot_int8_speedups": lambda tmp: {"rows": benchmark_rows()},
    "plot_time_breakdown": lambda tmp: {"rows": benchmark_rows()},
    "plot_accuracy_vs_speed": lambda tmp: {"rows": benchmark_rows()},
    "check_targets": lambda tmp: {"rows": benchmark_rows()},
    "format_table": lambda tmp: {"rows": benchmark_rows()},
    "report_table": lambda tmp: {
        "reports": [api("PrecisionReport")("float32", 100, 0.0, 0.0, 1.0, 0.9)]
    },
    "compare_rankings": lambda tmp: {
        "reference": torch.tensor([[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]]),
        "other": torch.tensor([[0, 2, 1], [2, 1, 0], [0, 1, 2], [0, 2, 1]]),
        "relevant": [0, 2, 1, 0],
        "k": 2,
    },
    "compare_precisions": lambda tmp: {"labels": torch.tensor([0, 3])},
    "rankings_table": lambda tmp: {
        "rankings": {
            "float32": torch.tensor([[0, 1, 2], [2, 1, 0]]),
            "bfloat16": torch.tensor([[0, 2, 1], [2, 1, 0]]),
        },
        "relevant": [0, 2],
        "k": 2,
    },
    "find_misses": lambda tmp: {"ranking": torch.arange(36).repeat(12, 1)},
    "sha256_of": lambda tmp: {"path": digest_file(tmp)},
    "verify_sha256": lambda tmp: {
        "path": digest_file(tmp),
        "expected": hashlib.sha256(b"tutorlib").hexdigest(),
    },
    "cpu_info": lambda tmp: {"path": _cpuinfo_file(tmp)},
    "ops_per_second": lambda tmp: {"n": 16, "seconds": 0.5},
    "measure_matmul_peaks": lambda tmp: {"size": 32, "repeats": 1},
    "profile_linear_layers": lambda tmp: _model_and_run(),
    "capture_linear_inputs": lambda tmp: _model_and_run(),
    "profile_w8a8_steps": lambda tmp: {"x": seeded(3, 8), "repeats": 1},
    "linear_free_cap": lambda tmp: {
        "model": small_model(),
        "forward": lambda m: m(seeded(2, 8)),
        "repeats": 1,
    },
    "run_experiment": lambda tmp: {"lengths": [16, 64]},
    "activation_stats": lambda tmp: {"layer": "encoder.layer.0.output.dense"},
    "write_json": lambda tmp: {
        "path": tmp / "bench.json",
        "rows": benchmark_rows(),
        "machine": api("parse_cpuinfo")(VALID_BY_NAME["text"]()),
        "peaks": api("MatmulPeaks")(64, 1e10, 1e9, 5e8),
        "settings": {"repeats": 10},
    },
    "plot_error_vs_length": lambda tmp: {"curves": error_curves()},
    "ErrorCurves.median_at": lambda tmp: {"key": ("float16", "randn", "native"), "n": 16},
    "LinearFreeCap.linear_budget_ms": lambda tmp: {"speedup": 2.5},
    "ErrorCurves.exponent": lambda tmp: {"key": ("float16", "randn", "native"), "n_max": 64},
    "find_stall": lambda tmp: {"partial_sums": torch.tensor([1.0, 2.0, 2.0, 2.0])},
    "signed_errors_of_draws": lambda tmp: {"distribution": "rand"},
    "growth_exponent_table": lambda tmp: {"curves": error_curves(), "n_max": 64},
    "median_error_table": lambda tmp: {
        "distribution": "randn",
        "lengths": [16, 64],
        "modes": ("native", "pairwise"),
    },
    "first_overflow_length": lambda tmp: {"key": ("float16", "rand", "native")},
    "sums_rounded_once": lambda tmp: {"distribution": "rand", "n": 64},
    "int_facts_table": lambda tmp: {"dtypes": (torch.int8, torch.uint8)},
    "CpuInfo.has": lambda tmp: {"flag": "avx512_vnni"},
    "pack_weights": lambda tmp: {"bits": 2},
    "compare_forms": lambda tmp: {
        "r": torch.tensor([[-1.0, 0.0, 3.0, 2.0], [0.25, -0.75, 1.5, -2.0]])
    },
    "unpack_weights": lambda tmp: {"bits": 2},
    "predicted_sqnr_db": lambda tmp: {
        "params": api("get_scale_and_zero_point")(VALID_BY_NAME["r"](), 8)
    },
    "sqnr_by_bits": lambda tmp: {"bits": [2, 4, 8], "group_size": 2, "predicted": False},
    "db_per_bit": lambda tmp: {
        "table": api("sqnr_by_bits")(VALID_BY_NAME["r"](), [4, 6, 8], group_size=2),
        "min_bits": 4,
    },
    "one_outlier": lambda tmp: {"r": seeded(8, 8), "factor": 10.0},
    "best_clipping": lambda tmp: {"r": seeded(8, 8)},
    "read_verified": lambda tmp: {
        "path": digest_file(tmp),
        "expected": hashlib.sha256(b"tutorlib").hexdigest(),
    },
    "QuantParams": lambda tmp: _params_kwargs(),
    "OffsetParams": lambda tmp: _offset_kwargs(),
    "QuantizedTensor": lambda tmp: _quantized_tensor_kwargs(),
    "load_pretrained": lambda tmp: {"name": "mobilevit-small", "source": None},
    "build_architecture": lambda tmp: {"name": "mobilevit-small"},
    "untie_lm_head": lambda tmp: {"model": small_model()},
    "inverse_hessian_cholesky": lambda tmp: {"h": api("hessian")(seeded(16, 8))},
    "output_error": lambda tmp: {"weight_hat": seeded(4, 8) + 0.01, "inputs": seeded(3, 8)},
    "spread_column_error": lambda tmp: {
        "u": api("inverse_hessian_cholesky")(api("hessian")(seeded(16, 8))).float(),
        "column": 2,
        "quantized_column": seeded(4, seed=1),
    },
    "gptq_quantize": lambda tmp: {"inputs": seeded(16, 8)},
    "gptq_quantize_shared": lambda tmp: {
        "weights": [seeded(4, 8), seeded(2, 8, seed=1)],
        "inputs": seeded(16, 8),
    },
    "capture_next_inputs": lambda tmp: _pending_and_run(),
    "check_shared_weights": lambda tmp: {"weights": [seeded(4, 8), seeded(2, 8, seed=1)]},
    "split_rows": lambda tmp: {
        "stacked": api("rtn_quantize")(seeded(6, 8), 4, 4),
        "weights": [seeded(4, 8), seeded(2, 8, seed=1)],
    },
    "activation_scales": lambda tmp: {"inputs": seeded(16, 8), "alpha": 0.5},
    "QuantizedTensor.rows": lambda tmp: {"start": 1, "end": 3},
    "awq_quantize_shared": lambda tmp: {
        "weights": [seeded(4, 8), seeded(2, 8, seed=1)],
        "inputs": seeded(16, 8),
        "group_size": 8,
        "n_grid": 3,
    },
    "calibration_rows": lambda tmp: {
        "inputs": seeded(2, 3, 4),
        "token_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
    },
    "prose_words": lambda tmp: {"notebook_path": _lesson_notebook()},
    "reading_minutes": lambda tmp: {"notebook_path": _lesson_notebook()},
    "check_token_mask": lambda tmp: {"token_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])},
    "token_rows": lambda tmp: {
        "inputs": seeded(2, 3, 4),
        "token_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
    },
    "fake_quantize_linear_weights": lambda tmp: _model_and_run(),
    "bits_per_weight": lambda tmp: {"bits": 4, "group_size": 128},
    "weight_only_bytes": lambda tmp: {"bits": 4},
    "size_table": lambda tmp: {"settings": [(4, None), (8, None)]},
    "W4A16Linear.forward": lambda tmp: {"x": seeded(3, 8)},
    "W4A16Linear.from_quantized": lambda tmp: {"quantized": _w4_weight(), "bias": None},
    "to_w4_layers": lambda tmp: {"quantized": {"2": _w4_weight()}},
    "save_quantized": lambda tmp: {"path": tmp / "w4.safetensors", "notes": None},
    "int8_kernel_for": lambda tmp: {
        "trials": __import__("tutorlib.layers.int8_kernel").layers.int8_kernel.trial_runs()
    },
    "read_settings": lambda tmp: {"path": _w4_file(tmp)},
    "load_quantized": lambda tmp: {"path": _w4_file(tmp), "skeleton": small_model()},
    "search_agreement": lambda tmp: {
        "embeddings": seeded(48, 6) + 0.01,
        "reference": seeded(48, 6),
        "task": api("load_search_task")(),
    },
    "plot_layer_errors": lambda tmp: {
        "rtn_errors": {"a.query": 0.08, "a.key": 0.07},
        "gptq_errors": {"a.query": 0.03, "a.key": 0.02},
    },
    "plot_size_accuracy_frontier": lambda tmp: {
        "bits_per_weight": {"RTN": [3.19, 4.19], "GPTQ": [3.19, 4.19]},
        "min_cosine": {"RTN": [0.80, 0.95], "GPTQ": [0.84, 0.96]},
    },
    "plot_nibble_packing": lambda tmp: {"low": 3, "high": 12},
    # Lesson 7: GGUF blocks, the language-model harness and its variants. A tiny random llama
    # (_tiny_llama) stands in for SmolLM2 wherever a model is needed; only the file readers use
    # the real (pinned) GGUF file, which the reader maps lazily.
    "torch_shape": lambda tmp: {"gguf_dims": [1536, 576]},
    "gguf_tensor_table": lambda tmp: {"path": _smollm2_file()},
    "dequantize_q4_1": lambda tmp: {"raw": bytes(range(20)), "shape": (1, 32)},
    "dequantize_q8_0": lambda tmp: {"raw": bytes(range(34)), "shape": (1, 32)},
    "offset_rtn_quantize": lambda tmp: {"weight": seeded(4, 8), "bits": 4, "group_size": 4},
    "symmetric_rtn_quantize": lambda tmp: {"weight": seeded(4, 8), "bits": 4, "group_size": 4},
    "OffsetQuantizedTensor": lambda tmp: _offset_quantized_kwargs(),
    "Int4WeightOnlyLinear": lambda tmp: {"in_features": 64, "out_features": 16, "group_size": 32},
    "Int4WeightOnlyLinear.from_quantized": lambda tmp: {
        "quantized": api("offset_rtn_quantize")(seeded(16, 64), 4, 32),
        "bias": None,
    },
    "Int4WeightOnlyLinear.from_linear": lambda tmp: {
        "linear": small_linear(64, 16),
        "group_size": 32,
    },
    "Int4WeightOnlyLinear.forward": lambda tmp: {"x": seeded(3, 64)},
    "Int8WeightOnlyLinear.forward": lambda tmp: {"x": seeded(3, 8)},
    "sliding_windows": lambda tmp: {"n_tokens": 10, "window": 4, "stride": 2},
    "perplexity": lambda tmp: {"model": _tiny_llama(), "token_ids": _token_ids(), "window": 8},
    "compare_to_reference": lambda tmp: _two_llamas(),
    "kl_divergence": lambda tmp: _two_llamas(),
    "top1_agreement": lambda tmp: _two_llamas(),
    "reference_log_probs": lambda tmp: {
        "reference": _tiny_llama(),
        "token_ids": _token_ids(),
        "window": 8,
    },
    "compare_to_log_probs": lambda tmp: {
        "model": _tiny_llama(seed=1),
        "reference": api("reference_log_probs")(_tiny_llama(), _token_ids(), 8),
    },
    "paired_bootstrap": lambda tmp: {
        "sums_a": [300.0, 320.0, 310.0],
        "sums_b": [303.0, 321.0, 318.0],
        "token_counts": [100, 100, 100],
        "resamples": 50,
    },
    "compare_perplexity": lambda tmp: {
        "baseline": api("perplexity")(_tiny_llama(), _token_ids(), 4),
        "candidate": api("perplexity")(_tiny_llama(seed=1), _token_ids(), 4),
        "resamples": 50,
    },
    "hf_llama_name": lambda tmp: {"gguf_name": "blk.3.attn_q.weight"},
    "undo_rope_permutation": lambda tmp: {"weight": seeded(8, 4), "n_heads": 2},
    "llama_config_from_gguf": lambda tmp: {"reader": _gguf_reader()},
    "llama_state_dict_from_gguf": lambda tmp: {
        "reader": _gguf_reader(),
        "config": api("llama_config_from_gguf")(_gguf_reader()),
    },
    "build_from_gguf": lambda tmp: {"path": _smollm2_file()},
    "WeightRecipe": lambda tmp: {"method": "rtn", "form": "offset", "bits": 4, "group_size": 32},
    "WeightRecipe.bits_per_weight": lambda tmp: {"in_features": 576},
    "WeightRecipe.quantize": lambda tmp: {"weight": seeded(4, 64)},
    "quantize_lm_weights": lambda tmp: {"model": _tiny_llama(), "recipe": _q4_1_recipe()},
    "lm_storage": lambda tmp: {"model": _tiny_llama(), "recipe": _q4_1_recipe()},
    "start_decoding": lambda tmp: {"model": _tiny_llama(), "prompt_ids": _token_ids()[:5]},
    "decode_step": lambda tmp: {
        "decoding": api("start_decoding")(_tiny_llama(), _token_ids()[:5]),
    },
    "greedy_generate": lambda tmp: {
        "model": _tiny_llama(),
        "prompt_ids": _token_ids()[:5],
        "max_new_tokens": 2,
    },
    "time_decode": lambda tmp: {
        "models": {"tiny": _tiny_llama()},
        "prompt_ids": _token_ids()[:4],
        "new_tokens": 1,
        "repeats": 1,
    },
    "plot_kl_vs_bits": lambda tmp: {
        "bits_per_weight": {"RTN": [3.75, 4.75], "GPTQ": [3.75, 4.75]},
        "kl": {"RTN": [0.98, 0.29], "GPTQ": [0.57, 0.14]},
    },
    "plot_decode_speeds": lambda tmp: {
        "tokens_per_second": {"FP32": 11.5, "BF16": 23.0},
        "gigabytes_per_second": {"FP32": 6.2, "BF16": 6.2},
    },
}


def _lesson_notebook() -> Path:
    """A real lesson notebook of the course, for tutorlib.perf.lesson_time."""
    return Path(__file__).resolve().parents[1] / "notebooks" / "01_tensor_types.ipynb"


def _w4_weight():
    return api("rtn_quantize")(seeded(4, 8), 4, None)  # small_model()[2]'s (4, 8) weight


def _w4_file(tmp: Path) -> Path:
    model = api("to_w4_layers")(small_model(), {"2": _w4_weight()})
    return api("save_quantized")(model, tmp / "w4.safetensors")


def _histogram_kwargs() -> dict:
    weights = seeded(64)
    params = api("get_scale_and_zero_point")(weights, 4)
    return {"weights": weights, "params": params}


def _params_kwargs() -> dict:
    params = api("get_scale_and_zero_point")(VALID_BY_NAME["r"]())
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def _offset_kwargs() -> dict:
    params = api("get_scale_and_offset")(VALID_BY_NAME["r"]())
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}


def _quantized_tensor_kwargs() -> dict:
    qt = api("quantize_tensor")(VALID_BY_NAME["r"]())
    return {"q": qt.q, "params": qt.params}


def _model_and_run() -> dict:
    model, x = small_model(), seeded(2, 8)
    return {"model": model, "run": lambda: model(x)}


def _pending_and_run() -> dict:
    model, x = small_model(), seeded(2, 8)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    return {"pending": linears, "run": lambda: model(x)}


def _cpuinfo_file(tmp: Path) -> Path:
    path = tmp / "cpuinfo"
    path.write_text(VALID_BY_NAME["text"]())
    return path


def _smollm2_file() -> Path:
    return api("smollm2_path")()  # the pinned file, its size and SHA-256 checked


def _gguf_reader():
    import gguf

    return gguf.GGUFReader(_smollm2_file())  # maps the file; reads a tensor only when asked


def _offset_quantized_kwargs() -> dict:
    quantized = api("offset_rtn_quantize")(seeded(4, 8), 4, 4)
    return {"q": quantized.q, "params": quantized.params}


def _tiny_llama(seed: int = 0) -> nn.Module:
    """A random 1-layer llama with a vocabulary of 50, tied embeddings: SmolLM2's shape, tiny."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def _token_ids() -> torch.Tensor:
    return torch.arange(12) * 7 % 50  # 12 ids of the tiny vocabulary


def _two_llamas() -> dict:
    return {
        "model": _tiny_llama(seed=1),
        "reference": _tiny_llama(),
        "token_ids": _token_ids(),
        "window": 8,
    }


def _q4_1_recipe():
    return api("WeightRecipe")("rtn", "offset", 4, 32)  # the tiny llama's 32 and 64 inputs


# Valid examples for a parameter whose name is ambiguous, chosen by its class's name in the
# annotation (a QuantParams parameter gets a QuantParams, whatever it is called).
VALID_BY_ANNOTATION: dict[str, Callable[[], object]] = {
    "QuantParams": lambda: api("get_scale_and_zero_point")(VALID_BY_NAME["r"]()),
    "OffsetParams": lambda: api("get_scale_and_offset")(VALID_BY_NAME["r"]()),
    "BenchmarkRow": benchmark_rows,
    "ActivationStats": activation_stats_list,
    "Path": lambda: Path("/nonexistent"),
}

# The integers to attack a parameter of type QuantParams's q or a quantization's q with.
Q_FOR = {
    "linear_dequantize": lambda: api("quantize_tensor")(VALID_BY_NAME["r"]()).q,
    "offset_dequantize": lambda: api("offset_quantize")(
        VALID_BY_NAME["r"](), api("get_scale_and_offset")(VALID_BY_NAME["r"]())
    ),
    "pack_weights": lambda: torch.tensor([0, 1, 2, 3, 3, 2, 1, 0], dtype=torch.uint8),
    "unpack_weights": lambda: torch.tensor([27, 228], dtype=torch.uint8),
}

# Instances for attacking methods: class name -> factory.
INSTANCES: dict[str, Callable[[], object]] = {
    "W8A16Linear": lambda: api("W8A16Linear").from_linear(small_linear()),
    "W8A8Linear": lambda: api("W8A8Linear").from_linear(small_linear()),
    "SimpleCNN": lambda: api("SimpleCNN")(),
    "ErrorCurves": error_curves,
    "LinearFreeCap": lambda: api("LinearFreeCap")(75.0, 15.0),
    "CpuInfo": lambda: api("parse_cpuinfo")(VALID_BY_NAME["text"]()),
    "QuantizedTensor": lambda: api("rtn_quantize")(seeded(4, 8), 4, 4),  # 2-D, per group
    "W4A16Linear": lambda: api("W4A16Linear").from_linear(small_linear(), group_size=None),
    "Int8WeightOnlyLinear": lambda: api("Int8WeightOnlyLinear").from_linear(small_linear()),
    "Int4WeightOnlyLinear": lambda: api("Int4WeightOnlyLinear").from_linear(small_linear(64, 16)),
    "WeightRecipe": _q4_1_recipe,
}

# Smallest valid value of an integer parameter (default 1); smaller values must be refused.
INT_MINIMUM = {
    "seed": 0,
    "warmup": 0,
    "sign": 0,
    "biased_exponent": 0,
    "mantissa": 0,
    "dim": -8,  # a negative dim counts from the end
    "n_parameters": 0,
    "column": 0,  # spread_column_error: the first column is column 0
    "low": 0,  # plot_nibble_packing: a 4-bit value may be 0
    "high": 0,
    "start": 0,  # QuantizedTensor.rows: the first row is row 0
}

# Valid range of a float parameter (inclusive, default (-inf, inf) finite).
FLOAT_RANGE = {
    "parallel_fraction": (0.0, 1.0),
    "speedup_of_fraction": (1e-300, math.inf),
    "seconds": (1e-300, math.inf),
    "learning_rate": (1e-300, math.inf),
    "test_fraction": (1e-300, 1 - 1e-12),
    "u": (1e-300, 1 - 1e-12),
    "lam": (1e-300, math.inf),
    "threshold": (1e-300, math.inf),
    "min_cosine": (-1.0, 1.0),
    "alpha": (0.0, 1.0),  # AWQ's exponent
}

# ---------------------------------------------------------------------------------------------
# What is not attacked, each with its reason. The test asserts these lists stay short.

SKIPPED = {
    "load_minilm": "loads the 90 MB MiniLM checkpoint (seconds per call)",
    "embed": "needs MiniLM's model and tokenizer (load_minilm)",
    "build_variants": "needs MiniLM's tokenizer and builds seven quantized models",
    "run_benchmark": "runs the full int8 benchmark",
    "keep_freed_memory": "changes glibc's allocator settings of the whole test process",
    "quanto_w8a8": "needs MiniLM's tokenizer and calibrates a quantized MiniLM",
    "W8A8Linear.rescale_in_place": "forward's unchecked hot-path step: NaN in, NaN out by "
    "design (no pass over y); its checked twin W8A8Linear.rescale is attacked",
    "dequantize_gguf": "its argument is a gguf.ReaderTensor, a NamedTuple that the tuple "
    "families cannot rebuild; test_gguf_formats.py checks its refusals; dequantize_q4_1 and "
    "dequantize_q8_0, which it calls, are attacked",
}

# Whole modules not attacked, with the reason.
SKIPPED_MODULES = {
    "exercises.core": "the exercise-checking machinery: its contract is to raise Wrong feedback",
    "exercises.learner_copies": "a command-line tool that writes learner notebooks, no lesson API",
}

# Functions attacked only on the arguments named here: the others would build a heavy model
# for every case that is (wrongly) accepted. Their valid call is not run (it builds a model,
# or needs the hub or flan-t5's checkpoint).
CHEAP_ARGUMENTS = {
    "build_architecture": ("name", "init"),
    "load_pretrained": ("name", "source"),
    "untie_lm_head": ("model",),
}

# Accepted outcomes that the families would otherwise judge wrong, each with its reason:
# (qualname, parameter, family) -> reason. Keep it short.
ACCEPTED = {
    ("float_bits", "value", "nan"): "showing the bits of NaN is the point of the lesson",
    ("float_bits", "value", "inf"): "showing the bits of inf is the point of the lesson",
    ("float_bits_table", "value", "nan"): "as float_bits",
    ("float_bits_table", "value", "inf"): "as float_bits",
    ("round_to_dtype", "value", "nan"): "rounding NaN to a dtype gives NaN, correctly",
    ("round_to_dtype", "value", "inf"): "rounding inf to a dtype gives inf, correctly",
}

# Results that may legitimately hold inf or NaN (their oracle checks them instead).
NONFINITE_RESULTS = {
    "round_to_dtype",
    "float_bits",
    "float_bits_table",
    "overflow_underflow_table",
    "decode_fields",
    "spacing",
    "float_facts_table",
    "run_experiment",  # errors are inf where the result overflowed the dtype (documented)
    "dot",  # value and relative_error are inf where the dtype overflowed (documented, _dot checks)
    "compare_forms",  # zero_comes_back_as is NaN when r holds no zero (documented)
    "quantization_error",  # SQNR is +-inf for an exact copy or a zero signal
    # The SQNRs of Lesson 4's sweeps are quantization_error's: +inf where r comes back exactly
    # (a constant at c = max|r|, all zeros), -inf predicted for a zero signal.
    "clipping_sweep",
    "best_clipping",
    "one_outlier",
    "sqnr_by_bits",
    "predicted_sqnr_db",
}

# ---------------------------------------------------------------------------------------------
# Oracles: qualname -> function(kwargs, result) -> None if correct, else what is wrong.
# Each computes an independent float64 reference from the same arguments.


def as64(value) -> torch.Tensor:
    return torch.as_tensor(value).detach().to(torch.float64)


def close(got: float, want: float, rel: float = 1e-6, abs_: float = 0.0) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=rel, abs_tol=abs_)


def _fake_quantize_bound(kw: dict, result, symmetric: bool) -> str | None:
    r = as64(kw["r"])
    bits = kw.get("bits", 8)
    if result.shape != r.shape:
        return f"shape {tuple(result.shape)}, expected {tuple(r.shape)}"
    if not result.is_floating_point():
        return f"dtype {result.dtype}, expected a float dtype"
    if r.numel() == 0:
        return None
    # Every per-channel or per-group range lies inside the per-tensor range, so the per-tensor
    # step bounds the error of all three granularities: |r - r_hat| <= step / 2.
    if symmetric:
        step = 2 * r.abs().max().item() / (2**bits - 2)
    else:
        step = (max(r.max().item(), 0.0) - min(r.min().item(), 0.0)) / (2**bits - 1)
    # float32 rounding of r / s and s * (q - z): a few units of float32's roundoff of |r|.
    slack = 4 * torch.finfo(torch.float32).eps * r.abs().max().item() + 1e-37
    error = (as64(result) - r).abs().max().item()
    if not error <= step / 2 * 1.001 + slack:
        return f"max |r - r_hat| = {error:.4g} > step / 2 = {step / 2:.4g}"
    return None


def _linear_reference(kw: dict, result, linear: nn.Module, x) -> str | None:
    x64 = as64(x)
    w64 = as64(linear.weight)
    want = x64 @ w64.T + (as64(linear.bias) if linear.bias is not None else 0)
    got = as64(result) if torch.is_tensor(result) else None
    if got is None or got.shape != want.shape:
        return f"shape {getattr(result, 'shape', None)}, expected {tuple(want.shape)}"
    if not result.is_floating_point():
        return f"dtype {result.dtype}: a linear layer returns floats"
    # int8 grids of weights and activations each err by at most half a step, 1/254 of the
    # row's max: |y - y_ref| <= sum_i |x_i| |w_i| * 2/254 (+ second order), so 2% is generous.
    bound = 0.02 * (x64.abs() @ w64.abs().T) + 1e-6
    excess = ((got - want).abs() - bound).max().item() if want.numel() else 0.0
    if not excess <= 0:
        return f"max |y - y_float64| exceeds the int8 error bound by {excess:.4g}"
    return None


def _from_linear(kw, result) -> str | None:
    x = seeded(3, kw["linear"].in_features)
    return _linear_reference(kw, result(x), kw["linear"], x)


def _dot(kw, result) -> str | None:
    want = (as64(kw["x"]) * as64(kw["y"])).sum().item()
    if not close(result.reference, want, 1e-12, 1e-300):
        return f"reference {result.reference!r}, float64 dot is {want!r}"
    dtype = kw["dtype"]
    rounded = as64(torch.as_tensor(kw["x"]).to(dtype)) * as64(torch.as_tensor(kw["y"]).to(dtype))
    # Every product and partial sum is at most sum |x_hat_k y_hat_k| (1 + gamma_n) in size: an
    # overflow (the documented value inf) is possible only if that reaches the dtype's maximum.
    can_overflow = rounded.abs().sum().item() * 1.01 >= torch.finfo(dtype).max
    if math.isnan(result.value) or (math.isinf(result.value) and not can_overflow):
        return f"value {result.value} where {dtype} cannot overflow"
    if math.isinf(result.value) != math.isinf(result.relative_error):
        return f"value {result.value} with relative_error {result.relative_error}"
    if math.isinf(result.relative_error) and want != 0 and not math.isinf(result.value):
        return f"relative_error is {result.relative_error}"
    return None


def _accuracy(kw, result) -> str | None:
    logits, labels = as64(kw["logits"]), torch.as_tensor(kw["labels"])
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        return f"accepted logits {tuple(logits.shape)} with labels {tuple(labels.shape)}"
    want = (logits.argmax(-1) == labels).double().mean().item()
    return None if close(result, want) else f"{result!r}, expected {want!r}"


def _bytes_for_parameters(kw, result) -> str | None:
    dtype = kw["dtype"]
    sub_byte = {f"{p}{b}": b for p in ("uint", "int") for b in range(1, 8)}
    bits = sub_byte.get(str(dtype).removeprefix("torch."), dtype.itemsize * 8)
    want = math.ceil(kw["n_parameters"] * bits / 8)
    return None if result == want else f"{result!r}, expected {want} ({bits} bits each)"


def _median_ms(kw, result) -> str | None:
    want = statistics.median(kw["seconds"]) * 1000
    return None if close(result, want) else f"{result!r}, expected {want!r}"


def _amdahl(kw, result) -> str | None:
    p, s = kw["parallel_fraction"], kw["speedup_of_fraction"]
    want = 1 / ((1 - p) + p / s)
    return None if close(result, want) else f"{result!r}, expected {want!r}"


def _ops_per_second(kw, result) -> str | None:
    want = 2 * kw["m"] * kw["k"] * kw["n"] / kw["seconds"]
    return None if close(result, want) else f"{result!r}, expected {want!r}"


def _gamma(kw, result) -> str | None:
    nu = kw["n"] * kw["u"]
    if nu >= 1:
        return f"{result!r}: gamma_n is undefined for n * u = {nu} >= 1"
    want = nu / (1 - nu)
    return None if close(result, want) else f"{result!r}, expected {want!r}"


def _round_to_dtype(kw, result) -> str | None:
    want = torch.tensor(kw["value"], dtype=torch.float64).to(kw["dtype"]).item()
    return None if close(result, want, 0.0) else f"{result!r}, expected {want!r}"


def _unit_roundoff(kw, result) -> str | None:
    want = torch.finfo(kw["dtype"]).eps / 2
    return None if result == want else f"{result!r}, expected {want!r}"


def _integer_range(kw, result) -> str | None:
    b = kw["bits"]
    want = (-(2 ** (b - 1)) + 1, 2 ** (b - 1) - 1) if kw["symmetric"] else (0, 2**b - 1)
    return None if tuple(result) == want else f"{result!r}, expected {want!r}"


def _condition_number(kw, result) -> str | None:
    x, y = as64(kw["x"]), as64(kw["y"])
    if (x * y).abs().sum() == 0:  # every term 0: the sum is exact, kappa = 1 (documented)
        return None if result == 1.0 else f"{result!r}, expected 1.0 for all-zero terms"
    want = ((x * y).abs().sum() / (x * y).sum().abs()).item()
    return None if close(result, want, 1e-9) else f"{result!r}, expected {want!r}"


def _pairwise_sum(kw, result) -> str | None:
    terms = as64(kw["terms"])
    want = terms.sum().item()
    bound = terms.numel() * torch.finfo(torch.as_tensor(kw["terms"]).dtype).eps
    err = abs(as64(result).item() - want)
    return None if err <= bound * terms.abs().sum().item() + 1e-300 else f"{result!r} vs {want!r}"


def _quantization_error(kw, result) -> str | None:
    r, r_hat = as64(kw["r"]), as64(kw["r_hat"])
    want = ((r - r_hat) ** 2).mean().item()
    return None if close(result.mse, want, 1e-5) else f"mse {result.mse!r}, expected {want!r}"


def _compare_forms(kw, result) -> str | None:
    bad = {name: form.sqnr_db for name, form in result.items() if math.isnan(form.sqnr_db)}
    return f"sqnr_db is NaN for {bad}" if bad else None


def _pack_round_trip(kw, result) -> str | None:
    back = api("unpack_weights")(result, kw["bits"])
    q = torch.as_tensor(kw["q"])
    if not torch.equal(back.flatten()[: q.numel()].long(), q.flatten().long()):
        return f"unpack(pack(q)) = {back.tolist()} differs from q = {q.tolist()}"
    return None


def _compare_logits(kw, result) -> str | None:
    d = (as64(kw["reference"]) - as64(kw["other"])).abs()
    if not close(result.max_abs_diff, d.max().item(), 1e-5):
        return f"max_abs_diff {result.max_abs_diff!r}, expected {d.max().item()!r}"
    return None


def _write_json(kw, result) -> str | None:
    def refuse(token):
        raise ValueError(token)

    try:
        json.loads(Path(result).read_text(), parse_constant=refuse)
    except ValueError as error:
        return f"the file is not strict JSON: bare token {error}"
    return None


def _sha256_of(kw, result) -> str | None:
    want = hashlib.sha256(Path(kw["path"]).read_bytes()).hexdigest()
    return None if result == want else f"{result!r}, expected {want!r}"


def _get_scale_and_zero_point(kw, result) -> str | None:
    q = api("linear_quantize")(kw["r"], result)
    return _fake_quantize_bound(kw, api("linear_dequantize")(q, result), kw.get("symmetric", False))


def _sqnr_lower_bound(r: torch.Tensor, step: float) -> float:
    """10 log10(sum r**2 / (n (step / 2)**2)): every error is at most half a step. The step is
    at least the documented scale floor 2**-23 (float32's eps), as tutorlib's scales are."""
    step = max(step, torch.finfo(torch.float32).eps)
    signal, worst_noise = (r**2).sum().item(), r.numel() * (step / 2) ** 2
    return 10 * math.log10(signal / worst_noise) if signal and worst_noise else -math.inf


def _clipping_sweep(kw, result) -> str | None:
    r, bits = as64(kw["r"]), kw.get("bits", 8)
    thresholds, sqnr_db = result
    abs_max = r.abs().max().item()
    if not close(thresholds[-1].item(), abs_max, 1e-12):
        return f"last threshold {thresholds[-1].item()!r}, expected max|r| = {abs_max!r}"
    # unclipped, symmetric: s = max|r| / q_max, every error within s / 2
    bound = _sqnr_lower_bound(r, abs_max / (2 ** (bits - 1) - 1)) - 1e-6
    return None if sqnr_db[-1].item() >= bound else f"SQNR {sqnr_db[-1].item()} < bound {bound}"


def _best_clipping(kw, result) -> str | None:
    r = as64(kw["r"])
    n_clipped = int((r.abs() > result.threshold).sum())
    if result.n_clipped != n_clipped:
        return f"n_clipped {result.n_clipped}, but {n_clipped} values exceed the threshold"
    if not (0 < result.fraction_of_max <= 1 and result.sqnr_db >= result.sqnr_db_unclipped):
        return f"not the best threshold of the sweep: {result}"
    return None


def _one_outlier(kw, result) -> str | None:
    # the outlier is the largest value, so clipping keeps c / max = fraction_of_max of it
    # (unless c / 127 falls below the documented scale floor 2**-23: tiny values round to 0)
    if result.clipping.threshold / 127 < torch.finfo(torch.float32).eps:
        return None
    if not close(result.outlier_kept, result.clipping.fraction_of_max, 1e-5):
        return f"outlier_kept {result.outlier_kept}, expected {result.clipping.fraction_of_max}"
    return None


def _sqnr_by_bits(kw, result) -> str | None:
    r, bits = as64(kw["r"]), list(kw["bits"])
    if list(result.index) != bits or result.shape[1] != 3:
        return f"table of shape {result.shape} indexed {list(result.index)}, expected 3 x {bits}"
    for k in bits:
        # every granularity's range lies inside the per-tensor range: step <= per-tensor step
        step = (max(r.max().item(), 0.0) - min(r.min().item(), 0.0)) / (2**k - 1)
        if kw.get("predicted", False):
            continue  # a prediction, not a measurement: no bound
        if not (result.loc[k] >= _sqnr_lower_bound(r, step) - 1e-6).all():
            return f"SQNR at {k} bits below the half-step bound: {list(result.loc[k])}"
    return None


def _predicted_sqnr_db(kw, result) -> str | None:
    r, scale = as64(kw["r"]), as64(kw["params"].scale)
    want_noise = (torch.broadcast_to(scale, r.shape) ** 2).mean().item() / 12
    signal = (r**2).mean().item()
    want = 10 * math.log10(signal / want_noise) if signal else -math.inf
    return None if close(result, want, 1e-9) else f"{result!r}, expected {want!r}"


def _db_per_bit(kw, result) -> str | None:
    table = kw["table"]
    rows = table[table.index >= kw["min_bits"]]
    x = torch.tensor(list(rows.index), dtype=torch.float64)
    for name in table:
        y = torch.tensor(list(rows[name]), dtype=torch.float64)
        # least-squares slope: cov(x, y) / var(x)
        want = (((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()).item()
        if not close(result[name], want, 1e-9):
            return f"slope of {name!r}: {result[name]!r}, expected {want!r}"
    return None


def _is_figure(kw, result) -> str | None:
    return None if type(result).__name__ == "Figure" else f"returned {type(result).__name__}"


ORACLES: dict[str, Callable[[dict, object], str | None]] = {
    "fake_quantize": lambda kw, res: _fake_quantize_bound(kw, res, kw.get("symmetric", False)),
    "offset_fake_quantize": lambda kw, res: _fake_quantize_bound(kw, res, False),
    "get_scale_and_zero_point": _get_scale_and_zero_point,
    "clipping_sweep": _clipping_sweep,
    "best_clipping": _best_clipping,
    "one_outlier": _one_outlier,
    "sqnr_by_bits": _sqnr_by_bits,
    "predicted_sqnr_db": _predicted_sqnr_db,
    "db_per_bit": _db_per_bit,
    "W8A16Linear.from_linear": _from_linear,
    "W8A8Linear.from_linear": _from_linear,
    "W8A16Linear.forward": lambda kw, res: _linear_reference(kw, res, small_linear(), kw["x"]),
    "W8A8Linear.forward": lambda kw, res: _linear_reference(kw, res, small_linear(), kw["x"]),
    "dot": _dot,
    "accuracy": _accuracy,
    "bytes_for_parameters": _bytes_for_parameters,
    "median_ms": _median_ms,
    "amdahl_speedup": _amdahl,
    "ops_per_second": _ops_per_second,
    "gamma": _gamma,
    "round_to_dtype": _round_to_dtype,
    "unit_roundoff": _unit_roundoff,
    "integer_range": _integer_range,
    "condition_number": _condition_number,
    "pairwise_sum": _pairwise_sum,
    "quantization_error": _quantization_error,
    "pack_weights": _pack_round_trip,
    "compare_forms": _compare_forms,
    "compare_logits": _compare_logits,
    "write_json": _write_json,
    "sha256_of": _sha256_of,
}
PLOT_PREFIX = "plot_"  # every plot_* function must return a matplotlib Figure
