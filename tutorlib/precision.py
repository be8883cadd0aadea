"""Lesson 3: run a model in FP32, BF16 and FP16 and measure what changes.

Casting a model's weights to a 16-bit float halves its size; every weight and activation is then
rounded to 8 (BF16) or 11 (FP16) significant bits instead of 24, so outputs move by a relative
amount of the order of the unit roundoff. These functions cast a copy, run it, and compare its
logits, predictions, accuracy and size with FP32, or report that the installed torch cannot run it.

Leaves out: mixed precision (autocast), integer quantization (Lessons 4 and 5), GPUs.
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import dtype_name
from tutorlib.memory import model_size_bytes

__all__ = [
    "MODEL_DTYPES",
    "check_dtype",
    "cast_model",
    "run_model",
    "logits_by_dtype",
    "LogitComparison",
    "compare_logits",
    "accuracy",
    "PrecisionReport",
    "compare_precisions",
    "report_table",
    "DtypeTrial",
    "try_dtype",
]

# The float formats a whole model can be cast to with Module.to(dtype), by name.
MODEL_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


def check_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The torch dtype for a supported float format, given as a dtype or its name.

    Example: check_dtype("bfloat16") -> torch.bfloat16; check_dtype(torch.int8) -> ValueError.
    """
    if not isinstance(dtype, torch.dtype | str):
        raise TypeError(f"dtype must be a torch.dtype or its name, got {type(dtype).__name__}.")
    name = dtype.removeprefix("torch.") if isinstance(dtype, str) else dtype_name(dtype)
    if name not in MODEL_DTYPES:
        known = ", ".join(MODEL_DTYPES)
        raise ValueError(
            f"Unsupported dtype {dtype!r}: a model can be cast to {known}. "
            "Integer formats need quantization (scales and zero points), see Lesson 4."
        )
    return MODEL_DTYPES[name]


def cast_model(model: nn.Module, dtype: torch.dtype | str) -> nn.Module:
    """A copy of `model` with every floating-point parameter and buffer in `dtype`, eval mode.

    The caller's model is left untouched (Module.to casts in place, so this copies first).
    Integer buffers, such as batch-norm counters, keep their dtype.
    """
    target = check_dtype(dtype)
    if not isinstance(model, nn.Module):
        raise TypeError(f"cast_model expects a torch.nn.Module, got {type(model).__name__}.")
    return copy.deepcopy(model).to(target).eval()


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 if it has none)."""
    floats = (p.dtype for p in model.parameters() if p.is_floating_point())
    return next(floats, torch.float32)


def _cast_inputs(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    """Floating-point inputs cast to `dtype`; token ids and masks (integers) unchanged."""
    if isinstance(inputs, Mapping):
        return {key: _cast_inputs(value, dtype) for key, value in inputs.items()}
    return inputs.to(dtype) if inputs.is_floating_point() else inputs


def run_model(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Logits of `model` on `inputs` (a tensor, or keyword tensors), returned as float32.

    Floating-point inputs are cast to the model's dtype first. Hugging Face outputs are reduced
    to their `.logits`.
    """
    inputs = _cast_inputs(inputs, _model_dtype(model))
    with torch.inference_mode():
        output = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    logits = output.logits if hasattr(output, "logits") else output
    return logits.float()


def logits_by_dtype(
    model: nn.Module, inputs: Inputs, dtypes: Sequence[str] = tuple(MODEL_DTYPES)
) -> dict[str, torch.Tensor]:
    """Float32 logits of a copy of `model` cast to each dtype, keyed by dtype name."""
    return {
        dtype_name(check_dtype(name)): run_model(cast_model(model, name), inputs) for name in dtypes
    }


@dataclass(frozen=True)
class LogitComparison:
    """How far low-precision logits are from the reference logits."""

    mean_abs_diff: float  # mean over all logits of |other - reference|
    max_abs_diff: float  # largest |other - reference|
    top1_agreement: float  # fraction of rows whose argmax is the same


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> LogitComparison:
    """Mean and max absolute difference and top-1 agreement of two (n, classes) logit tensors.

    diff = |other - reference|;  agreement = mean_i [argmax reference_i == argmax other_i]

    Example: reference [[1.0, 2.0]], other [[1.0, 2.5]] -> mean 0.25, max 0.5, agreement 1.0.
    """
    if reference.shape != other.shape:
        raise ValueError(
            f"Logit shapes differ: {tuple(reference.shape)} and {tuple(other.shape)}; "
            "compare outputs of the same model on the same inputs."
        )
    diff = (other.float() - reference.float()).abs()
    same_top1 = reference.argmax(dim=-1) == other.argmax(dim=-1)
    return LogitComparison(
        mean_abs_diff=diff.mean().item(),
        max_abs_diff=diff.max().item(),
        top1_agreement=same_top1.float().mean().item(),
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is at the true label.

    Example: logits [[0.1, 0.9], [0.8, 0.2]], labels [1, 1] -> 0.5.
    """
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits but {labels.shape[0]} labels.")
    return (logits.argmax(dim=-1) == labels).float().mean().item()


@dataclass(frozen=True)
class PrecisionReport:
    """One dtype of a model, compared with the same model in FP32."""

    dtype: str
    size_bytes: int
    mean_abs_diff: float
    max_abs_diff: float
    top1_agreement: float
    accuracy: float | None  # None when no labels were given


def compare_precisions(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    dtypes: Sequence[str] = tuple(MODEL_DTYPES),
) -> list[PrecisionReport]:
    """Size, logit differences to FP32, top-1 agreement and accuracy of `model` in each dtype.

    Each dtype runs on a cast copy; the reference is a float32 copy. The float32 row therefore
    has zero differences and agreement 1.0.
    """
    reference = run_model(cast_model(model, torch.float32), inputs)
    reports = []
    for name in dtypes:
        cast = cast_model(model, name)
        logits = run_model(cast, inputs)
        comparison = compare_logits(reference, logits)
        reports.append(
            PrecisionReport(
                dtype=dtype_name(check_dtype(name)),
                size_bytes=model_size_bytes(cast),
                mean_abs_diff=comparison.mean_abs_diff,
                max_abs_diff=comparison.max_abs_diff,
                top1_agreement=comparison.top1_agreement,
                accuracy=None if labels is None else accuracy(logits, labels),
            )
        )
    return reports


def report_table(reports: Sequence[PrecisionReport]) -> str:
    """The reports as a fixed-width text table, rounded for display (and for exact comparison).

    Columns: dtype, bytes, mean and max |logit difference| to FP32 (3 significant digits),
    top-1 agreement and accuracy (4 decimals, "-" without labels). Example row:
    "bfloat16      12,180     1.84e-02    9.21e-02  1.0000    0.9833".
    Returns the lines joined by newlines.
    """
    header = (
        f"{'dtype':<9}{'bytes':>11}{'mean |diff|':>13}{'max |diff|':>12}"
        f"{'agree':>8}{'accuracy':>10}"
    )
    rows = [header]
    for report in reports:
        accuracy_text = "-" if report.accuracy is None else f"{report.accuracy:.4f}"
        rows.append(
            f"{report.dtype:<9}{report.size_bytes:>11,}{report.mean_abs_diff:>13.2e}"
            f"{report.max_abs_diff:>12.2e}{report.top1_agreement:>8.4f}{accuracy_text:>10}"
        )
    return "\n".join(rows)


@dataclass(frozen=True)
class DtypeTrial:
    """What the installed torch did when asked to run a model in a dtype."""

    dtype: str
    ran: bool
    error: str | None  # the exact first line of torch's error message, if it failed
    torch_version: str


def try_dtype(model: nn.Module, inputs: Inputs, dtype: torch.dtype | str) -> DtypeTrial:
    """Run a cast copy of `model` once and report whether this torch supports it.

    Operations without a kernel for a dtype raise RuntimeError or NotImplementedError, e.g.
    torch 2.1 on CPU: "addmm_impl_cpu_" not implemented for 'Half'. torch 2.13 runs FP16
    convolutions and matrix products on CPU. An unsupported dtype name raises ValueError.
    """
    target = check_dtype(dtype)
    version = torch.__version__
    try:
        run_model(cast_model(model, target), inputs)
    except (RuntimeError, NotImplementedError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return DtypeTrial(dtype_name(target), ran=False, error=first_line, torch_version=version)
    return DtypeTrial(dtype_name(target), ran=True, error=None, torch_version=version)
