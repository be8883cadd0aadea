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

import pandas as pd
import torch
from torch import nn

from tutorlib._checks import check_float_tensor, check_integer_tensor, check_tensor, dtype_name
from tutorlib.models.size import model_size_bytes

__all__ = [
    "MODEL_DTYPES",
    "check_dtype",
    "cast_model",
    "run_model",
    "logits_by_dtype",
    "sizes_by_dtype",
    "LogitComparison",
    "compare_logits",
    "accuracy",
    "PrecisionReport",
    "PrecisionComparison",
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


def _check_dtypes(dtypes: object) -> list[torch.dtype]:
    """A sequence of supported dtypes (or names), not one name (which iterates as letters)."""
    if isinstance(dtypes, str | torch.dtype) or not isinstance(dtypes, Sequence):
        raise TypeError(
            f"dtypes must be a sequence of dtypes or their names, e.g. ('float32', 'bfloat16'), "
            f"got {dtypes!r}"
        )
    checked = []
    for dtype in dtypes:
        try:
            checked.append(check_dtype(dtype))
        except (TypeError, ValueError) as error:
            raise type(error)(f"dtypes holds {dtype!r}: {error}") from None
    return checked


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    return model


def _check_inputs(inputs: object) -> Inputs:
    """A non-empty tensor, or a mapping of names to non-empty tensors; floats must be finite."""
    if isinstance(inputs, Mapping):
        for key, value in inputs.items():
            _check_input_tensor(value, f"inputs[{key!r}]")
        return inputs
    return _check_input_tensor(inputs, "inputs")


def _check_input_tensor(value: object, name: str) -> torch.Tensor:
    tensor = check_tensor(value, name)
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold real numbers (float, or integer token ids), got {tensor.dtype}"
        )
    if tensor.is_floating_point():
        return check_float_tensor(tensor, name)
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}): give at least one input")
    return tensor


def cast_model(model: nn.Module, dtype: torch.dtype | str) -> nn.Module:
    """A copy of `model` with every floating-point parameter and buffer in `dtype`, eval mode.

    The caller's model is left untouched (Module.to casts in place, so this copies first).
    Integer buffers, such as batch-norm counters, keep their dtype.
    Example: cast_model(nn.Linear(3, 2), "bfloat16").weight.dtype -> torch.bfloat16.
    """
    _check_model(model)
    target = check_dtype(dtype)
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


def _forward(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """The model's logits in its own dtype (no checks: torch's own errors pass through)."""
    inputs = _cast_inputs(inputs, _model_dtype(model))
    with torch.inference_mode():
        output = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    return output.logits if hasattr(output, "logits") else output


def run_model(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Logits of `model` on `inputs` (a tensor, or keyword tensors), returned as float32.

    Floating-point inputs are cast to the model's dtype first. Hugging Face outputs are reduced
    to their `.logits`. Inputs the model cannot take, and logits that overflow to inf or NaN in
    the model's dtype, are refused with a ValueError that names `inputs`.
    Example: run_model(nn.Linear(2, 1).bfloat16(), torch.ones(3, 2)) -> (3, 1) float32 logits.
    """
    _check_model(model)
    _check_inputs(inputs)
    try:
        logits = _forward(model, inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"the model cannot run on these inputs: {first_line}") from None
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError(f"model must return float logits for inputs, got {type(logits).__name__}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(
            f"the model's logits on these inputs hold inf or NaN in {dtype_name(logits.dtype)} "
            "(an overflow): scale the inputs down or run the model in float32"
        )
    return logits.float()


def logits_by_dtype(
    model: nn.Module, inputs: Inputs, dtypes: Sequence[str] = tuple(MODEL_DTYPES)
) -> dict[str, torch.Tensor]:
    """Float32 logits of a copy of `model` cast to each dtype, keyed by dtype name.

    Example: logits_by_dtype(cnn, images, ["float32", "bfloat16"]) -> {"float32": (n, 10),
    "bfloat16": (n, 10)}, both float32 tensors; `cnn` itself stays in float32.
    """
    _check_model(model)
    targets = _check_dtypes(dtypes)
    return {dtype_name(dtype): run_model(cast_model(model, dtype), inputs) for dtype in targets}


def sizes_by_dtype(model: nn.Module, dtypes: Sequence[str] = tuple(MODEL_DTYPES)) -> dict[str, int]:
    """Bytes of a copy of `model` cast to each dtype (model_size_bytes), keyed by dtype name.

    bytes = sum over parameters and buffers of numel * itemsize, where floating-point tensors
    take the dtype's itemsize and integer buffers keep theirs; tied tensors count once.
    Example: nn.Linear(3, 2) (8 parameters) -> {"float32": 32, "bfloat16": 16, "float16": 16}.
    """
    _check_model(model)
    targets = _check_dtypes(dtypes)
    return {dtype_name(dtype): model_size_bytes(cast_model(model, dtype)) for dtype in targets}


@dataclass(frozen=True)
class LogitComparison:
    """How far low-precision logits are from the reference logits."""

    mean_abs_diff: float  # mean over all logits of |other - reference|
    max_abs_diff: float  # largest |other - reference|
    top1_agreement: float  # fraction of rows whose argmax is the same


def _check_logits(value: object, name: str) -> torch.Tensor:
    """A finite, non-empty (rows, classes) float tensor."""
    logits = check_float_tensor(value, name)
    if logits.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (rows, classes), got shape {tuple(logits.shape)}; "
            f"for one row use {name}[None]"
        )
    return logits


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> LogitComparison:
    """Mean and max absolute difference and top-1 agreement of two (n, classes) logit tensors.

    diff = |other - reference| (in float64)
    agreement = mean_i [argmax reference_i == argmax other_i]

    Example: reference [[1.0, 2.0]], other [[1.0, 2.5]] -> mean 0.25, max 0.5, agreement 1.0.
    NaN or inf logits are refused: a NaN difference would hide where the model broke.
    """
    reference, other = _check_logits(reference, "reference"), _check_logits(other, "other")
    if reference.shape != other.shape:
        raise ValueError(
            f"Logit shapes differ: reference {tuple(reference.shape)}, other "
            f"{tuple(other.shape)}; compare outputs of the same model on the same inputs."
        )
    diff = (other.detach().double() - reference.detach().double()).abs()  # (n, classes)
    same_top1 = reference.argmax(dim=-1) == other.argmax(dim=-1)  # (n,)
    return LogitComparison(
        mean_abs_diff=diff.mean().item(),
        max_abs_diff=diff.max().item(),
        top1_agreement=same_top1.double().mean().item(),
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is at the true label.

    accuracy = mean_i [argmax logits_i == labels_i], logits (n, classes), labels (n,) integers.
    Example: logits [[0.1, 0.9], [0.8, 0.2]], labels [1, 1] -> 0.5.
    """
    logits = _check_logits(logits, "logits")
    labels = check_integer_tensor(labels, "labels")
    n, classes = logits.shape
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},), one class index per row of logits, got "
            f"{tuple(labels.shape)}; flatten a column of labels with labels.flatten()"
        )
    if bool(((labels < 0) | (labels >= classes)).any()):
        raise ValueError(f"labels must lie in [0, {classes - 1}] (the classes of logits)")
    return (logits.argmax(dim=-1) == labels).double().mean().item()


@dataclass(frozen=True)
class PrecisionReport:
    """One dtype of a model, compared with the same model in FP32."""

    dtype: str
    size_bytes: int
    mean_abs_diff: float
    max_abs_diff: float
    top1_agreement: float
    accuracy: float | None  # None when no labels were given


@dataclass(frozen=True)
class PrecisionComparison:
    """What compare_precisions measured: one report per dtype, and the logits they came from."""

    reports: tuple[PrecisionReport, ...]
    logits: dict[str, torch.Tensor]  # dtype name -> (n, classes) float32 logits


def compare_precisions(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor | None = None,
    dtypes: Sequence[str] = tuple(MODEL_DTYPES),
) -> PrecisionComparison:
    """Size, logit differences to FP32, top-1 agreement and accuracy of `model` in each dtype.

    Each dtype runs once, on a cast copy; the reference is a float32 copy (reused when float32
    is among `dtypes`, so its row has zero differences and agreement 1.0). The logits are
    returned too, so that nothing has to be run twice.
    Example: the shipped SimpleCNN on the 360 test digits -> float32 24,360 bytes, bfloat16
    12,180 bytes, mean |diff| about 2e-2, agreement 1.0.
    """
    _check_model(model)
    targets = _check_dtypes(dtypes)
    if labels is not None:
        labels = check_integer_tensor(labels, "labels")
    casts = {dtype_name(dtype): cast_model(model, dtype) for dtype in targets}
    logits = {name: run_model(cast, inputs) for name, cast in casts.items()}
    if "float32" in logits:
        reference = logits["float32"]
    else:
        reference = run_model(cast_model(model, torch.float32), inputs)
    reports = []
    for name, cast in casts.items():
        comparison = compare_logits(reference, logits[name])
        reports.append(
            PrecisionReport(
                dtype=name,
                size_bytes=model_size_bytes(cast),
                mean_abs_diff=comparison.mean_abs_diff,
                max_abs_diff=comparison.max_abs_diff,
                top1_agreement=comparison.top1_agreement,
                accuracy=None if labels is None else accuracy(logits[name], labels),
            )
        )
    return PrecisionComparison(reports=tuple(reports), logits=logits)


def report_table(reports: Sequence[PrecisionReport]) -> pd.DataFrame:
    """The reports as a table, one row per dtype, rounded for display (and exact comparison).

    Columns: bytes, mean and max |logit difference| to FP32 (3 significant digits), top-1
    agreement and accuracy (4 decimals; None without labels). Example row:
    bfloat16 | 12180 | 0.0183 | 0.0921 | 1.0 | 0.9833.
    """
    if isinstance(reports, str) or not isinstance(reports, Sequence):
        raise TypeError(
            f"reports must be a sequence of PrecisionReport, got {type(reports).__name__}"
        )
    if not all(isinstance(report, PrecisionReport) for report in reports):
        raise TypeError("reports must hold PrecisionReport objects (from compare_precisions)")
    rows = {
        report.dtype: {
            "bytes": report.size_bytes,
            "mean |diff|": float(f"{report.mean_abs_diff:.3g}"),
            "max |diff|": float(f"{report.max_abs_diff:.3g}"),
            "top-1 agreement": round(report.top1_agreement, 4),
            "accuracy": None if report.accuracy is None else round(report.accuracy, 4),
        }
        for report in reports
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("dtype")


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
    convolutions and matrix products on CPU. The inputs are first checked by running the model
    in float32 (a ValueError if even that fails); an unsupported dtype name raises ValueError.
    """
    target = check_dtype(dtype)
    run_model(cast_model(model, torch.float32), inputs)  # the inputs themselves are fine
    version = torch.__version__
    try:
        _forward(cast_model(model, target), inputs)
    except (RuntimeError, NotImplementedError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return DtypeTrial(dtype_name(target), ran=False, error=first_line, torch_version=version)
    return DtypeTrial(dtype_name(target), ran=True, error=None, torch_version=version)
