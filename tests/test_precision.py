"""Tests of tutorlib.precision: casting copies, logit comparisons, try_dtype."""

import math

import pytest
import torch
from torch import nn

from tutorlib.models.digits import SimpleCNN, load_digits_split, load_simple_cnn
from tutorlib.models.precision import (
    MODEL_DTYPES,
    PrecisionReport,
    accuracy,
    cast_model,
    check_dtype,
    compare_logits,
    compare_precisions,
    logits_by_dtype,
    report_table,
    run_model,
    sizes_by_dtype,
    try_dtype,
)

# Unit roundoff u = 2**-p: the largest relative error of one rounding to the dtype.
UNIT_ROUNDOFF = {name: torch.finfo(dtype).eps / 2 for name, dtype in MODEL_DTYPES.items()}


@pytest.mark.parametrize(
    ("given_dtype", "expected"),
    [
        ("bfloat16", torch.bfloat16),
        ("torch.float16", torch.float16),
        (torch.float32, torch.float32),
    ],
    ids=["name", "torch-prefixed-name", "dtype"],
)
def test_check_dtype(given_dtype, expected) -> None:
    assert check_dtype(given_dtype) is expected


@pytest.mark.parametrize("bad", [torch.int8, "fp8", torch.float64], ids=["int8", "fp8", "float64"])
def test_unsupported_dtype_is_a_clear_error(bad) -> None:
    with pytest.raises(ValueError, match="can be cast to float32, bfloat16, float16"):
        check_dtype(bad)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        try_dtype(nn.Linear(2, 2), torch.ones(1, 2), bad)


def test_dtype_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="torch.dtype or its name"):
        check_dtype(16)


def test_cast_model_copies() -> None:
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    cast = cast_model(model, "bfloat16")
    assert cast.weight.dtype == torch.bfloat16
    assert model.weight.dtype == torch.float32 and torch.equal(model.weight, before)


def test_cast_model_keeps_integer_buffers() -> None:
    cast = cast_model(nn.BatchNorm1d(4), torch.float16)
    assert cast.num_batches_tracked.dtype == torch.int64
    assert cast.running_mean.dtype == torch.float16


def test_compare_logits_by_hand() -> None:
    comparison = compare_logits(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.5]]))
    assert comparison.mean_abs_diff == 0.25
    assert comparison.max_abs_diff == 0.5
    assert comparison.top1_agreement == 1.0
    reference, other = (
        torch.tensor([[1.0, 2.0], [0.0, 1.0]]),
        torch.tensor([[3.0, 2.0], [0.0, 1.0]]),
    )
    flipped = compare_logits(reference, other)
    assert flipped.top1_agreement == 0.5


def test_compare_logits_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        compare_logits(torch.zeros(2, 3), torch.zeros(3, 2))


def test_accuracy_by_hand() -> None:
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError, match="labels"):
        accuracy(torch.zeros(2, 2), torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_linear_logits_within_rounding_bound(name: str) -> None:
    # y = W x + b, n = 16 products plus the bias: 16 additions, 3 more roundings (x, W to the
    # dtype, y back to it). Even if every step rounds in the dtype, Higham (2002, eq. 3.5) bounds
    # |fl(y) - y| <= gamma_k (|W||x| + |b|), gamma_k = k u / (1 - k u), k = 16 + 3 < 20.
    # Reference: the same layer in float64.
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 4), torch.randn(8, 16)
    u = UNIT_ROUNDOFF[name]
    logits = run_model(cast_model(layer, name), x)
    exact = run_model(layer.double(), x.double())
    magnitude = x.double().abs() @ layer.weight.double().abs().T + layer.bias.double().abs()
    gamma = 20 * u / (1 - 20 * u)
    assert ((logits.double() - exact).abs() <= gamma * magnitude).all()


def test_compare_precisions_on_the_shipped_cnn() -> None:
    split = load_digits_split()
    comparison = compare_precisions(load_simple_cnn(), split.test_images, split.test_labels)
    reports = comparison.reports
    by_dtype = {report.dtype: report for report in reports}
    assert [report.dtype for report in reports] == ["float32", "bfloat16", "float16"]
    assert by_dtype["float32"].mean_abs_diff == 0.0 and by_dtype["float32"].top1_agreement == 1.0
    assert by_dtype["float32"].size_bytes == 6_090 * 4
    assert by_dtype["bfloat16"].size_bytes == by_dtype["float16"].size_bytes == 6_090 * 2
    # FP16 keeps 3 more significand bits than BF16: its logits are closer to FP32.
    assert by_dtype["float16"].mean_abs_diff < by_dtype["bfloat16"].mean_abs_diff
    for report in reports:
        assert report.accuracy >= 0.95
        assert report.top1_agreement >= 0.99
    # The logits returned are the ones the reports were computed from (each dtype ran once).
    assert list(comparison.logits) == ["float32", "bfloat16", "float16"]
    again = compare_logits(comparison.logits["float32"], comparison.logits["bfloat16"])
    assert again.mean_abs_diff == by_dtype["bfloat16"].mean_abs_diff


def test_compare_precisions_runs_each_dtype_once() -> None:
    calls = []

    class Counting(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.dtype)
            return super().forward(x)

    torch.manual_seed(0)
    compare_precisions(Counting(4, 3), torch.randn(5, 4))
    assert calls == [torch.float32, torch.bfloat16, torch.float16]


def test_compare_precisions_without_float32_uses_a_float32_reference() -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(4, 3), torch.randn(5, 4)
    (report,) = compare_precisions(layer, x, dtypes=["bfloat16"]).reports
    expected = compare_logits(run_model(layer, x), run_model(cast_model(layer, "bfloat16"), x))
    assert report.mean_abs_diff == expected.mean_abs_diff and report.accuracy is None


def test_sizes_by_dtype_by_hand() -> None:
    # nn.Linear(3, 2): 6 weights + 2 biases = 8 numbers; BatchNorm1d(4) adds 4 + 4 parameters,
    # 4 + 4 running statistics (cast) and one int64 counter (8 bytes, never cast).
    assert sizes_by_dtype(nn.Linear(3, 2)) == {"float32": 32, "bfloat16": 16, "float16": 16}
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    sizes = sizes_by_dtype(model, ["float32", torch.bfloat16])
    assert sizes == {"float32": (8 + 4 + 4) * 4 + 8, "bfloat16": (8 + 4 + 4) * 2 + 8}


def test_sizes_by_dtype_counts_tied_weights_once() -> None:
    embedding, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied, as language models tie input and output embeddings
    assert sizes_by_dtype(nn.ModuleList([embedding, head]), ["bfloat16"]) == {"bfloat16": 80}


def test_logits_by_dtype_leaves_the_model_alone() -> None:
    model = SimpleCNN()
    logits = logits_by_dtype(model, torch.rand(2, 1, 8, 8))
    assert list(logits) == ["float32", "bfloat16", "float16"]
    assert all(value.dtype == torch.float32 for value in logits.values())
    assert next(model.parameters()).dtype == torch.float32


def test_try_dtype_runs_fp16_on_this_torch() -> None:
    # torch 2.1 raised '"addmm_impl_cpu_" not implemented for 'Half'' here; 2.13 runs it.
    trial = try_dtype(SimpleCNN(), torch.rand(2, 1, 8, 8), torch.float16)
    assert trial.ran and trial.error is None and trial.dtype == "float16"
    assert trial.torch_version == torch.__version__


class _EighModel(nn.Module):
    """A model whose forward uses torch.linalg.eigh, which has no CPU kernel for bfloat16."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigh(self.weight + x).eigenvalues


def test_try_dtype_reports_the_exact_error() -> None:
    trial = try_dtype(_EighModel(), torch.zeros(3, 3), "bfloat16")
    assert not trial.ran
    assert trial.error == "\"linalg_eigh_cpu\" not implemented for 'BFloat16'"


def test_report_table_by_hand() -> None:
    reports = [
        PrecisionReport("float32", 24_360, 0.0, 0.0, 1.0, 0.98333),
        PrecisionReport("bfloat16", 12_180, 0.018350, 0.092064, 0.99722, None),
    ]
    table = report_table(reports)
    assert list(table.index) == ["float32", "bfloat16"]
    row = table.loc["bfloat16"].to_dict()
    assert math.isnan(row.pop("accuracy"))  # no labels: pandas shows the missing value as NaN
    assert row == {"bytes": 12_180, "mean |diff|": 0.0184, "max |diff|": 0.0921,
                   "top-1 agreement": 0.9972}  # fmt: skip
    assert table.loc["float32", "accuracy"] == 0.9833


@pytest.mark.parametrize(
    ("reference", "other", "match"),
    [
        (torch.tensor([[1.0, float("nan")]]), torch.zeros(1, 2), "reference contains NaN"),
        (torch.zeros(1, 2), torch.tensor([[float("inf"), 0.0]]), "other contains NaN or inf"),
        (torch.zeros(0, 2), torch.zeros(0, 2), "reference is empty"),
        (torch.zeros(3), torch.zeros(3), "reference must be 2-D"),
    ],
    ids=["nan", "inf", "empty", "1-d"],
)
def test_compare_logits_refuses_what_has_no_honest_answer(reference, other, match) -> None:
    with pytest.raises(ValueError, match=match):
        compare_logits(reference, other)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64), r"labels must have shape \(3,\)"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), "logits is empty"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), r"labels must lie in \[0, 1\]"),
        (torch.zeros(2, 2), torch.tensor([0.0, 1.0]), "labels must be an integer tensor"),
    ],
    ids=["column-of-labels", "empty", "label-out-of-range", "float-labels"],
)
def test_accuracy_refuses_bad_labels(logits, labels, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        accuracy(logits, labels)


def test_run_model_names_the_inputs_when_the_model_cannot_take_them() -> None:
    with pytest.raises(ValueError, match="cannot run on these inputs: mat1 and mat2"):
        run_model(nn.Linear(8, 2), torch.zeros(3, 5))


def test_run_model_refuses_logits_that_overflow() -> None:
    layer = nn.Linear(1, 1, bias=False)
    nn.init.constant_(layer.weight, 2.0)
    # 4e4 * 2 = 8e4 exceeds float16's largest finite value, 65504: the FP16 logit is inf.
    with pytest.raises(ValueError, match="inf or NaN in float16"):
        run_model(cast_model(layer, "float16"), torch.tensor([[4e4]]))
    assert run_model(layer, torch.tensor([[4e4]])).item() == 8e4
