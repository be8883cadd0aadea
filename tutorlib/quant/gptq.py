"""Lesson 6: GPTQ (Frantar et al., 2023): quantize a weight column by column, correcting the
columns not yet quantized for each one's error.

With the layer's inputs X, the output error ||X (W - W_hat)^T||^2 has Hessian H = 2 X^T X; the
inverse's upper Cholesky factor U gives, for column i, the optimal move of the remaining
columns: W[:, j] -= e_i * U[i, j] / U[i, i]. The paper's lazy batch updates are kept in a simple
form (the moves of a block of columns onto the later ones are summed into one product). Left out
on purpose: act-order (quantizing columns by decreasing H diagonal). Padded positions of a
calibration batch are not inputs the layer will see: `token_rows` keeps only the real tokens.
"""

import math
from collections.abc import Sequence

import torch

from tutorlib._checks import check_bits, check_float_tensor, check_group_size, check_int, check_real
from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.params import QuantParams, get_scale_and_zero_point
from tutorlib.quant.rtn import _LARGEST_WEIGHT, GPTQ_BITS, _check_weight, _storable
from tutorlib.quant.shared_input import check_shared_weights, split_rows

__all__ = [
    "check_token_mask",
    "token_rows",
    "calibration_rows",
    "hessian",
    "inverse_hessian_cholesky",
    "spread_column_error",
    "gptq_quantize",
    "gptq_quantize_shared",
    "output_error",
]


def _check_inputs(inputs: object, in_features: int, name: str = "inputs") -> torch.Tensor:
    inputs = check_float_tensor(inputs, name)
    if inputs.ndim == 0 or inputs.shape[-1] != in_features:
        raise ValueError(
            f"{name} must have shape (..., {in_features}) to match the weight's in_features, "
            f"got {tuple(inputs.shape)}"
        )
    return inputs.detach().reshape(-1, in_features).double()  # (samples, in_features)


def check_token_mask(token_mask: torch.Tensor) -> torch.Tensor:
    """A tokenizer's attention_mask, checked before any model runs: (batch, seq), 0 or 1, and
    at least one real token. Returns it unchanged.
    Example: check_token_mask(torch.tensor([[1, 1, 0]])) is the same tensor.
    """
    if not isinstance(token_mask, torch.Tensor):
        raise TypeError(f"token_mask must be a tensor, got {type(token_mask).__name__}")
    if token_mask.ndim != 2:
        raise ValueError(f"token_mask must be (batch, seq), got {tuple(token_mask.shape)}")
    if token_mask.numel() == 0:
        raise ValueError("token_mask is empty: it must mark the tokens of a non-empty batch")
    token_rows(torch.zeros(*token_mask.shape, 1), token_mask)  # its dtype and values
    return token_mask


def token_rows(inputs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """The rows of a layer's input that belong to real tokens: X[mask], (real tokens, features).

    A calibration batch pads its shorter sentences; the padded positions run through the model
    but are never inputs at inference, so they must not enter H = 2 X^T X (GPTQ implementations
    drop them with the attention mask). inputs (batch, seq, features); token_mask (batch, seq),
    1 (or True) for a real token, 0 for padding, as a tokenizer's attention_mask.
    Example: inputs (2, 3, 4) with token_mask [[1, 1, 1], [1, 0, 0]] -> (4, 4): 4 real tokens.
    """
    inputs = check_float_tensor(inputs, "inputs")
    if not isinstance(token_mask, torch.Tensor):
        raise TypeError(
            f"token_mask must be a tensor (a tokenizer's attention_mask), got "
            f"{type(token_mask).__name__}"
        )
    if inputs.ndim != 3 or tuple(token_mask.shape) != tuple(inputs.shape[:2]):
        raise ValueError(
            f"token_mask must have the shape (batch, seq) of inputs (batch, seq, features); got "
            f"token_mask {tuple(token_mask.shape)} and inputs {tuple(inputs.shape)}"
        )
    if token_mask.is_floating_point() or token_mask.is_complex():
        raise TypeError(f"token_mask must hold integers or booleans, got {token_mask.dtype}")
    if not bool(((token_mask == 0) | (token_mask == 1)).all()):
        raise ValueError("token_mask must hold only 0 (padding) and 1 (a real token)")
    if not bool(token_mask.any()):
        raise ValueError("token_mask marks no real token: there is nothing to calibrate on")
    return inputs[token_mask.bool()]  # (real tokens, features)


def calibration_rows(inputs: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """A layer's captured input as the rows GPTQ calibrates on, (rows, features).

    Without a mask, every row: inputs reshaped to (-1, features). With a mask (batch, seq):
    an input of one row per position, (batch, seq, features), keeps its real tokens
    (`token_rows`); an input of one row per sequence, (batch, features) (BERT's pooler reads
    the first token's state), has no padding and is kept whole. Any other shape is refused.
    Example: inputs (2, 3, 4) with token_mask [[1, 1, 1], [1, 0, 0]] -> (4, 4); inputs (2, 4) with
    the same mask -> (2, 4).
    """
    inputs = check_float_tensor(inputs, "inputs")
    if inputs.ndim < 2:
        raise ValueError(
            f"inputs must be (..., features) rows of a layer, got {tuple(inputs.shape)}"
        )
    if token_mask is None:
        return inputs.reshape(-1, inputs.shape[-1])
    if not isinstance(token_mask, torch.Tensor):
        raise TypeError(f"token_mask must be a tensor or None, got {type(token_mask).__name__}")
    if inputs.ndim == 2 and token_mask.ndim == 2 and inputs.shape[0] == token_mask.shape[0]:
        return inputs  # one row per sequence: no padded positions
    return token_rows(inputs, token_mask)


def _column_grid(columns: torch.Tensor, bits: int) -> QuantParams:
    """Per-row asymmetric grid of one group, (out, g) -> scale and zero point (out, 1)."""
    return _storable(get_scale_and_zero_point(columns, bits, symmetric=False, dim=0))


def _grouped_params(grids: list[QuantParams], group_size: int) -> QuantParams:
    """Stack the per-group grids (each (out, 1)) into one per-group QuantParams, (out, n_g, 1)."""
    scale = torch.stack([g.scale for g in grids], dim=1)  # (out, n_groups, 1)
    zero_point = torch.stack([g.zero_point for g in grids], dim=1)  # (out, n_groups, 1)
    return QuantParams(scale, zero_point, grids[0].bits, False, group_size=group_size)


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
    bits = check_bits(bits, GPTQ_BITS)
    group_size = check_group_size(group_size, w.shape[1]) or w.shape[1]  # None: a whole row
    u = _inverse_hessian_cholesky(hessian(x), check_real(damp, "damp", 0.0)).float()  # (in, in)
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


def gptq_quantize_shared(
    weights: Sequence[torch.Tensor],
    inputs: torch.Tensor,
    bits: int = 4,
    group_size: int | None = 128,
    damp: float = 0.01,
) -> list[QuantizedTensor]:
    """GPTQ on the weights of Linears that read the same inputs X (a block's query, key and
    value): one H, one U and one column loop over their rows stacked, [W_1; W_2; ...].

    GPTQ's step for column i moves each row by that row's own error: w_j -= err_i U[i, j], with
    U from X alone, and each row has its own grid. No row sees another, so GPTQ on the stack is
    GPTQ on each W_k, with the same integers and grids (tested), for one Cholesky and one loop
    instead of one per weight (the loop's cost is mostly per column, not per row).
    Example: SmolLM2's query (576, 576), key and value (192, 576 each) on one input: one loop
    over 960 rows instead of three loops over 576, 192 and 192.
    Returns one QuantizedTensor per weight, in the order given.
    """
    checked = check_shared_weights(weights)  # each (out_k, in), one in_features
    stacked = gptq_quantize(torch.cat(checked), inputs, bits, group_size, damp)  # (sum out, in)
    return split_rows(stacked, checked)


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
