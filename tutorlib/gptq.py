"""Lesson 6: 4-bit weights by round-to-nearest (RTN) and by GPTQ, for a layer and a whole model.

RTN rounds every weight to the nearest level of its group's grid. GPTQ (Frantar et al., ICLR
2023, arXiv:2210.17323) quantizes the columns of a weight one at a time, left to right, and
spreads each column's rounding error onto the columns not yet quantized, weighted by how the
layer's inputs correlate, so that the layer's OUTPUT on real inputs changes as little as
possible: it minimises ||X W^T - X W_hat^T|| rather than ||W - W_hat||.

Both return the package's quantized value, a `QuantizedTensor` (integers plus `QuantParams`) on
an asymmetric per-group grid: per group of `group_size` consecutive inputs of a row, min-max
widened to contain 0, an integer zero point, q in [0, 2**k - 1] (`get_scale_and_zero_point`).
`group_size=None` is per output channel: one group spanning the whole row. Scales are rounded
to float16 values (the scale the 4-bit layer stores), so storing them loses nothing.

Left out on purpose, from the paper: act-order (quantizing columns by decreasing Hessian
diagonal; it helps LLMs with outlier features, but it permutes columns and groups, which
obscures the algorithm) and the GPU-only tricks. Lazy batch updates are kept only in their
simplest form, because without them the column loop is ten times slower on a CPU: inside a
block of 32 columns the later columns move step by step, and the moves onto the columns after
the block are applied at once as one matrix product (the same sums in another order; a test
checks it against `spread_column_error` column by column). `quantize_linear_weights` runs one
(truncated) calibration forward pass per group of Linears sharing an input, which is simple and
slower than the paper's block-by-block pass that reuses each block's outputs.
"""

import functools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_float_tensor, check_int, check_names, check_real
from tutorlib._loading import data_file
from tutorlib.quantization import (
    QuantizedTensor,
    QuantParams,
    get_scale_and_zero_point,
    linear_quantize,
)

__all__ = [
    "rtn_quantize",
    "hessian",
    "inverse_hessian_cholesky",
    "spread_column_error",
    "gptq_quantize",
    "output_error",
    "LayerQuantization",
    "quantize_linear_weights",
    "load_calibration_sentences",
]

GPTQ_BITS = (2, 3, 4, 5, 6, 7, 8)  # the grids of this lesson: 2 to 8 bits
# Weights beyond this would need scales beyond float16's largest value, 65504 (at 2 bits,
# s = range / 3): refused rather than stored as inf.
_LARGEST_WEIGHT = 30_000


# ---------------------------------------------------------------- checks of user input


def _check_weight(weight: object, name: str = "weight") -> torch.Tensor:
    weight = check_float_tensor(weight, name)
    if weight.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (out_features, in_features) like nn.Linear's, "
            f"got shape {tuple(weight.shape)}"
        )
    if weight.abs().max().item() > _LARGEST_WEIGHT:
        raise ValueError(
            f"{name} has values beyond {_LARGEST_WEIGHT:,}: their scales would overflow the "
            "float16 the 4-bit format stores; such weights are not a neural network's"
        )
    return weight.detach().float()  # (out_features, in_features)


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in GPTQ_BITS:
        raise ValueError(f"bits must be one of {GPTQ_BITS}, got {bits!r}")
    return bits


def _check_group_size(group_size: object, in_features: int) -> int:
    """The group size as an int; None (per channel) becomes the whole row."""
    if group_size is None:
        return in_features
    check_int(group_size, "group_size", minimum=1)
    if in_features % group_size != 0:
        raise ValueError(
            f"group_size={group_size} does not divide in_features={in_features}; choose a "
            "divisor of it, or None for one group per row (per channel)"
        )
    return group_size


def _check_inputs(inputs: object, in_features: int, name: str = "inputs") -> torch.Tensor:
    inputs = check_float_tensor(inputs, name)
    if inputs.ndim == 0 or inputs.shape[-1] != in_features:
        raise ValueError(
            f"{name} must have shape (..., {in_features}) to match the weight's in_features, "
            f"got {tuple(inputs.shape)}"
        )
    return inputs.detach().reshape(-1, in_features).double()  # (samples, in_features)


# ---------------------------------------------------------------- the grid of a group


def _storable(params: QuantParams) -> QuantParams:
    """The same grid with each scale rounded to the nearest float16 value, widened back to float32.

    The 4-bit layer stores scales in float16; quantizing with the rounded scale from the start
    means that storing it loses nothing (the layer gives exactly QuantizedTensor.dequantize()).
    """
    scale = params.scale.half().float()
    return QuantParams(
        scale, params.zero_point, params.bits, params.symmetric, params.dim, params.group_size
    )


def _column_grid(columns: torch.Tensor, bits: int) -> QuantParams:
    """Per-row asymmetric grid of one group, (out, g) -> scale and zero point (out, 1)."""
    return _storable(get_scale_and_zero_point(columns, bits, symmetric=False, dim=0))


def _grouped_params(grids: list[QuantParams], group_size: int) -> QuantParams:
    """Stack the per-group grids (each (out, 1)) into one per-group QuantParams, (out, n_g, 1)."""
    scale = torch.stack([g.scale for g in grids], dim=1)  # (out, n_groups, 1)
    zero_point = torch.stack([g.zero_point for g in grids], dim=1)  # (out, n_groups, 1)
    return QuantParams(scale, zero_point, grids[0].bits, False, group_size=group_size)


# ---------------------------------------------------------------- round-to-nearest


def rtn_quantize(
    weight: torch.Tensor, bits: int = 4, group_size: int | None = 128
) -> QuantizedTensor:
    """Round-to-nearest on an asymmetric per-group grid (group_size=None: per output channel).

    For each row o and group of g consecutive inputs: r_min = min(min(w), 0),
    r_max = max(max(w), 0), s = (r_max - r_min) / (2**k - 1) (rounded to float16),
    z = -round(r_min / s), q = clamp(round(w / s) + z, 0, 2**k - 1).
    Example: the row group [-0.3, 0.1, 0.15, 0.9] at 2 bits: s = 1.2 / 3 = 0.4 (float16:
    0.39990234), z = 1, q = [0, 1, 1, 3], w_hat = s * (q - z) = [-0.4, 0.0, 0.0, 0.8].
    Returns a QuantizedTensor with q int32 (uint8 at 8 bits) (out, in) and scale (out, n_g, 1).
    """
    weight = _check_weight(weight)
    bits = _check_bits(bits)
    group_size = _check_group_size(group_size, weight.shape[1])
    params = _storable(get_scale_and_zero_point(weight, bits, group_size=group_size))
    return QuantizedTensor(linear_quantize(weight, params), params)


# ---------------------------------------------------------------- GPTQ, step by step


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X, in float64: the Hessian of the layer's squared output error in each row.

    X holds one input vector per row, (samples, in_features); inputs of shape
    (..., in_features) are flattened to rows first. Row o's output error is
    ||X (w_o - w_hat_o)||^2 = (w_o - w_hat_o)^T X^T X (w_o - w_hat_o), whose Hessian is 2 X^T X.
    Example: X = [[1, 0], [1, 1]] -> X^T X = [[2, 1], [1, 1]], H = [[4, 2], [2, 2]].
    """
    inputs = check_float_tensor(inputs, "inputs")
    if inputs.ndim == 0:
        raise ValueError("inputs must have shape (..., in_features), got a 0-d tensor")
    x = inputs.detach().reshape(-1, inputs.shape[-1]).double()  # (samples, in_features)
    return 2 * x.T @ x  # (in_features, in_features)


def inverse_hessian_cholesky(h: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """U, the upper Cholesky factor of (H + lambda I)^-1, with lambda = damp * mean(diag H).

    (H + lambda I)^-1 = U^T U. Row i of U, divided by U[i, i], says how to move the columns
    j > i when column i errs: the OBS update restricted to the columns not yet quantized
    (Frantar et al. 2023, section 4, "Cholesky reformulation"). The dampening keeps H invertible
    when inputs are few or correlated; an all-zero H (the layer never saw a non-zero input) is
    taken as the identity, where GPTQ equals round-to-nearest.
    Example: H = [[4, 2], [2, 2]], damp 0: H^-1 = [[0.5, -0.5], [-0.5, 1]],
    U = [[0.7071, -0.7071], [0, 0.7071]].
    Returns (in_features, in_features) float64.
    """
    h = check_float_tensor(h, "h")
    damp = check_real(damp, "damp", 0.0)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or not torch.allclose(h, h.T):
        raise ValueError(f"h must be a symmetric square matrix (2 X^T X), got {tuple(h.shape)}")
    return _inverse_hessian_cholesky(h.detach().double(), damp)


def _inverse_hessian_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """inverse_hessian_cholesky without its checks, on a float64 H."""
    mean_diagonal = h.diagonal().mean().item()
    if mean_diagonal == 0:
        h = torch.eye(h.shape[0], dtype=torch.float64)  # no inputs: nothing to compensate
    h = h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=torch.float64)
    lower, info = torch.linalg.cholesky_ex(h)
    if info.item() != 0:
        raise ValueError(
            "H + damp * mean(diag H) I is not positive definite; raise damp (e.g. 0.1) or "
            "calibrate on more inputs than the layer has input features"
        )
    lower_inverse = torch.linalg.solve_triangular(
        lower, torch.eye(h.shape[0], dtype=h.dtype), upper=False
    )
    h_inverse = lower_inverse.T @ lower_inverse  # (L L^T)^-1 = L^-T L^-1 = (H + lambda I)^-1
    return torch.linalg.cholesky(h_inverse, upper=True).contiguous()  # U, upper triangular


def spread_column_error(
    weight: torch.Tensor, u: torch.Tensor, column: int, quantized_column: torch.Tensor
) -> torch.Tensor:
    """One GPTQ step: set column i to its quantized value and move the columns j > i.

    err = (w_i - w_hat_i) / U[i, i]   (one value per row),
    w_j <- w_j - err * U[i, j]        for every j > i,
    which is the optimal compensation for the rounding of column i given the inputs' Hessian
    (the columns j < i are already quantized and stay). Example (2 x 3, U[0] = [0.5, -0.25, 0]):
    w_0 = [1.0, 2.0] rounded to [1.2, 2.0]: err = [-0.4, 0], column 1 moves by
    -err * (-0.25) = [-0.1, 0], column 2 (U[0, 2] = 0) does not move.
    Returns a new (out, in) float32 tensor; the input is not modified.
    """
    weight = _check_weight(weight)
    u = check_float_tensor(u, "u")
    n = weight.shape[1]
    if tuple(u.shape) != (n, n):
        raise ValueError(
            f"u must be ({n}, {n}) for a weight with {n} columns, got {tuple(u.shape)}"
        )
    column = check_int(column, "column", 0, n - 1)
    quantized_column = check_float_tensor(quantized_column, "quantized_column")
    if tuple(quantized_column.shape) != (weight.shape[0],):
        raise ValueError(
            f"quantized_column must have shape ({weight.shape[0]},), one value per row, "
            f"got {tuple(quantized_column.shape)}"
        )
    if quantized_column.abs().max().item() > _LARGEST_WEIGHT:
        raise ValueError(f"quantized_column has values beyond {_LARGEST_WEIGHT:,}, no weight's")
    if u[column, column].item() <= 0:
        raise ValueError("u must have a positive diagonal (from inverse_hessian_cholesky)")
    moved = _spread(weight.clone(), u.float(), column, quantized_column.float())
    if not bool(torch.isfinite(moved).all()):
        raise ValueError(
            "the update overflowed float32: u's diagonal is too small for these errors; "
            "compute u with inverse_hessian_cholesky from the layer's inputs"
        )
    return moved


def _spread(w: torch.Tensor, u: torch.Tensor, i: int, w_hat_i: torch.Tensor) -> torch.Tensor:
    """spread_column_error without its checks, in place on w (the loop of gptq_quantize)."""
    err = (w[:, i] - w_hat_i) / u[i, i]  # (out,)
    w[:, i + 1 :] -= err[:, None] * u[i, i + 1 :][None, :]  # (out, in - i - 1)
    w[:, i] = w_hat_i
    return w


def gptq_quantize(
    weight: torch.Tensor,
    inputs: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 128,
    damp: float = 0.01,
) -> QuantizedTensor:
    """GPTQ: quantize columns left to right, spreading each one's error onto the later ones.

    H = 2 X^T X from the calibration inputs X (samples, in_features), dampened by
    damp * mean(diag H); U = the upper Cholesky factor of H^-1. For i = 0, 1, ..., in - 1:
    when i starts a group, that group's grid (per row, min-max widened to 0, as rtn_quantize)
    is computed from the columns i .. i + g - 1 as they are NOW (already moved by the errors of
    earlier columns); then q_i = clamp(round(w_i / s) + z, 0, 2**k - 1), w_hat_i = s (q_i - z),
    err_i = (w_i - w_hat_i) / U[i, i], and every later column moves: w_j -= err_i U[i, j].
    The moves are applied as `spread_column_error` does, column by column, inside a block of
    columns (gcd(group_size, 32) wide, so a group always starts a block); the moves of a block
    onto the columns after it are summed into one matrix product when the block ends (the
    same sums in another order; on a CPU the column-by-column loop is ten times slower).
    When H is a multiple of the identity (white inputs), U is diagonal, nothing moves, and the
    result equals rtn_quantize exactly. Example: a (768, 384) layer fed correlated inputs has
    a smaller output error ||X (W - W_hat)^T|| than rtn_quantize on the same grid.
    Returns a QuantizedTensor like rtn_quantize's.
    """
    w = _check_weight(weight)  # (out, in), float32
    x = _check_inputs(inputs, w.shape[1])
    bits = _check_bits(bits)
    group_size = _check_group_size(group_size, w.shape[1])
    u = _inverse_hessian_cholesky(2 * x.T @ x, check_real(damp, "damp", 0.0)).float()  # (in, in)
    w_t = w.T.contiguous()  # (in, out): column i of W is row i here, contiguous
    q_t = torch.empty(w_t.shape, dtype=torch.int32)  # (in, out)
    grids: list[QuantParams] = []
    block = math.gcd(group_size, 32)
    for start in range(0, w_t.shape[0], block):
        end = start + block
        errors = torch.empty(block, w_t.shape[1])  # (block, out): err_i of each column
        for i in range(start, end):
            if i % group_size == 0:  # a new group: its grid from the weights as they are now
                grids.append(_column_grid(w_t[i : i + group_size].T, bits))
            q_t[i], w_hat = _round_column(w_t[i], grids[-1])
            errors[i - start] = (w_t[i] - w_hat) / u[i, i]
            w_t[i + 1 : end] -= torch.outer(u[i, i + 1 : end], errors[i - start])
        w_t[end:].addmm_(u[start:end, end:].T, errors, alpha=-1)  # the block's moves, at once
    params = _grouped_params(grids, group_size)
    return QuantizedTensor(q_t.T.contiguous().to(params.integer_dtype), params)


def _round_column(column: torch.Tensor, grid: QuantParams) -> tuple[torch.Tensor, torch.Tensor]:
    """linear_quantize and linear_dequantize of one column (out,) on a per-row grid (out, 1),
    without their checks (the loop of gptq_quantize calls this once per column; a test checks
    that the integers and values are identical to the checked functions'):
    q = clamp(round(w / s) + z, q_min, q_max), w_hat = s (q - z). Returns (q int32, w_hat)."""
    scale, zero_point = grid.scale[:, 0], grid.zero_point[:, 0]  # (out,)
    q = torch.clamp(torch.round(column / scale) + zero_point, grid.q_min, grid.q_max)
    return q.to(torch.int32), scale * (q - zero_point)


def output_error(weight: torch.Tensor, weight_hat: torch.Tensor, inputs: torch.Tensor) -> float:
    """The layer's output error on inputs X: ||X (W - W_hat)^T||_F, in float64.

    Example: W = [[1, 2]], W_hat = [[1, 1.5]], X = [[1, 2]]: X (W - W_hat)^T = [[1.0]] -> 1.0.
    """
    weight = _check_weight(weight)
    weight_hat = _check_weight(weight_hat, "weight_hat")
    if weight.shape != weight_hat.shape:
        raise ValueError(
            f"weight {tuple(weight.shape)} and weight_hat {tuple(weight_hat.shape)} must have "
            "the same shape"
        )
    x = _check_inputs(inputs, weight.shape[1])
    return torch.linalg.norm(x @ (weight.double() - weight_hat.double()).T).item()


# ---------------------------------------------------------------- a whole model


@dataclass(frozen=True)
class LayerQuantization:
    """One Linear of a model, quantized: its integers and grid, and what it did to the output.

    relative_error = ||X (W - W_hat)^T|| / ||X W^T|| on the calibration inputs X the layer saw
    (NaN when no calibration ran), e.g. 0.05 for a 5% change of the layer's output.
    """

    quantized: QuantizedTensor
    relative_error: float


class _StopForward(Exception):
    """Raised by a hook to end a calibration forward pass once the inputs it needs are in."""


def _capture_next(
    pending: dict[str, nn.Linear], run: Callable[[], object]
) -> tuple[list[str], torch.Tensor]:
    """Run the model until the first pending Linear is called; return its name, the names of
    the pending Linears called right after it on the very same input tensor (a block's query,
    key and value), and that input, (samples, in_features). The pass stops there: the layers
    after it would not change these inputs."""
    names: list[str] = []
    captured: list[torch.Tensor] = []

    def hook(name: str, module: nn.Module, args: tuple) -> None:
        if captured and args[0] is not captured[0]:
            raise _StopForward  # a different input: the group is complete
        if not captured:
            captured.append(args[0])
        names.append(name)

    handles = [
        linear.register_forward_pre_hook(functools.partial(hook, name))
        for name, linear in pending.items()
    ]
    try:
        with torch.inference_mode():
            run()
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if not captured:
        raise ValueError("run() never called the Linears left to quantize: it must run the model")
    x = captured[0].detach().reshape(-1, captured[0].shape[-1]).float()  # (samples, in)
    return names, x


def _linears(model: nn.Module, skip: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in skip and name.split(".")[-1] not in skip
    ]


def quantize_linear_weights(
    model: nn.Module,
    method: str = "gptq",
    bits: int = 4,
    group_size: int | None = 128,
    run: Callable[[], object] | None = None,
    damp: float = 0.01,
    skip: Iterable[str] = (),
) -> dict[str, LayerQuantization]:
    """Quantize every nn.Linear's weight, in the order the model calls them, calibrating each on
    the inputs it sees in the model as quantized so far.

    Repeat until every Linear is done: `run()` (a forward pass on calibration data) drives the
    model, and forward hooks record the input X of the first Linear not yet quantized (and of
    the ones called right after it on the same tensor: a block's query, key and value), then
    stop the pass there. Each of those weights is quantized (method "rtn", or "gptq" on X), and
    replaced in place by its dequantized value W_hat. So layer i is calibrated on inputs from
    a model whose layers before i are already quantized, as in the paper. `run` is needed for
    "gptq"; for "rtn" it is optional and only measures each layer's error.
    Linears named in `skip` (attribute or dotted name) stay as they are.
    Example: MiniLM's 37 Linears (in 25 passes: query, key and value share one) at 4 bits,
    groups of 128, calibrated on 48 sentences (730 tokens).
    Returns {dotted name: LayerQuantization}; the model now holds the dequantized weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in ("rtn", "gptq"):
        raise ValueError(f"method must be 'rtn' or 'gptq', got {method!r}")
    _check_bits(bits)
    if run is not None and not callable(run):
        raise TypeError(f"run must be a function of no arguments, got {type(run).__name__}")
    if method == "gptq" and run is None:
        raise ValueError("GPTQ needs calibration inputs: pass run, e.g. lambda: model(**batch)")
    skip = check_names(skip, "skip")
    targets = _linears(model, skip)
    if not targets:
        raise ValueError("model has no nn.Linear to quantize (or all of them are in skip)")
    for _, linear in targets:  # every group size is checked before anything changes
        _check_group_size(group_size, linear.in_features)
    pending, results = dict(targets), {}
    while pending:
        if run is None:
            names, x = [next(iter(pending))], None
        else:  # the next Linears the model calls, and their inputs from the model as it is now
            names, x = _capture_next(pending, run)
        for name in names:
            results[name] = _quantize_linear(pending.pop(name), x, method, bits, group_size, damp)
    return results


def load_calibration_sentences() -> list[str]:
    """The 48 calibration sentences of tutorlib/data/calibration_sentences.json.

    Written for this course on topics the search task does not touch (glaciers, trains, chess,
    recipes, ...), so that a model calibrated on them is evaluated on sentences it never saw.
    """
    data = json.loads(data_file("calibration_sentences.json").read_text(encoding="utf-8"))
    return list(data["sentences"])


def _quantize_linear(
    linear: nn.Linear, x: torch.Tensor | None, method: str, bits: int, group_size, damp: float
) -> LayerQuantization:
    """Quantize one Linear's weight, put W_hat in its place, measure the relative output error."""
    weight = linear.weight.detach()  # (out, in)
    if method == "gptq":
        quantized = gptq_quantize(weight, x, bits, group_size, damp)
    else:
        quantized = rtn_quantize(weight, bits, group_size)
    weight_hat = quantized.dequantize()  # (out, in) float32
    relative = float("nan")
    if x is not None:
        reference = torch.linalg.norm(x.double() @ weight.double().T).item()
        relative = output_error(weight, weight_hat, x) / max(reference, 1e-300)
    with torch.no_grad():
        linear.weight.copy_(weight_hat)
    return LayerQuantization(quantized, relative)
