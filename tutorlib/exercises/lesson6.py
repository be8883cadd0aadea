"""Lesson 6 exercises: bits per weight, one GPTQ error-compensation step, a 4-bit layer's bytes.

Each asks for one piece of the lesson, in the order it teaches them: what a weight costs with
its group's scale and zero point, the step that moves the later columns when one column is
rounded, and the bytes of a packed 4-bit layer. The reference solutions are written here with
plain torch, independent of tutorlib.quant.gptq and tutorlib.layers.w4a16, and named ``my_...``
like the learner's, so that a notebook's never shadow tutorlib's.

Leaves out: the whole GPTQ loop (it repeats the step) and packing (Lesson 4's l4-pack-4bit,
Lesson 1's l1-packed-bytes).
"""

import torch

from tutorlib.exercises.core import (
    Exercise,
    call,
    expect_callable,
    expect_number,
    expect_tensor,
    register,
    same_number,
    same_tensor,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l6-bits-per-weight

# 3-bit codes in groups of 32, each group with a float16 scale (16 bits) and a uint8 zero point
# (8 bits): 3 + (16 + 8) / 32 bits per weight.
BPW_BITS, BPW_GROUP = 3, 32
BITS_PER_WEIGHT = BPW_BITS + (16 + 8) / BPW_GROUP  # 3.75


def _check_bits_per_weight(answer: object) -> str:
    got = expect_number(answer)
    k, g = BPW_BITS, BPW_GROUP
    mistakes = [
        (k, "add the group's scale and zero point, shared by its g weights: 24 / g"),
        (k + 16 / g, "the zero point costs 8 bits too: (16 + 8) / g"),
        (k + 8 / g, "the float16 scale costs 16 bits too: (16 + 8) / g"),
        (
            k + 32 / g,
            "the zero point here is one uint8 (8 bits), not 16; and 3-bit codes are "
            "packed bit by bit, not stored in 4 bits",
        ),
        (k + 40 / g, "the scale is float16 (16 bits), not float32"),
        ((k + 24) / g, "only the parameters are shared: k + 24 / g"),
    ]
    verify(got, BITS_PER_WEIGHT, mistakes, same_number(rel_tol=1e-9), "3 bits, groups of 32")
    return (
        "3.75: k + (16 + 8) / g = 3 + 24/32. The parameters cost a quarter of a bit per weight "
        "here; in groups of 128 they cost 0.1875."
    )


register(
    Exercise(
        id="l6-bits-per-weight",
        lesson=6,
        prompt=(
            "3-bit codes, groups of 32, each a float16 scale and uint8 zero point: bits per weight?"
        ),
        solution=BITS_PER_WEIGHT,
        checker=_check_bits_per_weight,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l6-error-step


def my_gptq_step(
    weight: torch.Tensor, u: torch.Tensor, column: int, quantized_column: torch.Tensor
) -> torch.Tensor:
    """One GPTQ step: column i becomes its quantized value, the columns j > i absorb its error.

    err = (w_i - w_hat_i) / U[i, i] (one value per row);  w_j <- w_j - err * U[i, j] for j > i.
    U is the upper Cholesky factor of H^-1. Columns j < i are already quantized and stay.
    Example: w = [[1.0, 0.5]], U[0] = [0.5, -0.25], w_hat_0 = [1.2]: err = -0.4,
    column 1 becomes 0.5 - (-0.4)(-0.25) = 0.4; result [[1.2, 0.4]].
    Returns a new tensor; the input weight is not modified.
    """
    w = weight.clone()
    err = (w[:, column] - quantized_column) / u[column, column]  # (out,)
    w[:, column + 1 :] -= err[:, None] * u[column, column + 1 :][None, :]
    w[:, column] = quantized_column
    return w


def _step_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int, torch.Tensor]]:
    g = torch.Generator().manual_seed(61)
    u5 = torch.triu(torch.rand(5, 5, generator=g) - 0.5) + torch.eye(5)  # upper, diag > 0.5
    w = torch.randn(3, 5, generator=g)
    return [
        (
            "w = [[1.0, 0.5]], U = [[0.5, -0.25], [0, 1]], column 0 -> [1.2]",
            torch.tensor([[1.0, 0.5]]),
            torch.tensor([[0.5, -0.25], [0.0, 1.0]]),
            0,
            torch.tensor([1.2]),
        ),
        ("a (3, 5) weight, column 1", w, u5, 1, torch.round(w[:, 1] * 2) / 2),
        ("a (3, 5) weight, column 0", w, u5, 0, torch.round(w[:, 0])),
        ("a (3, 5) weight, the last column", w, u5, 4, torch.round(w[:, 4])),
    ]


def _step_mistakes(w, u, i, w_hat) -> list[tuple[object, str]]:
    def moved(err, columns, set_column=True):
        out = w.clone()
        out[:, columns] -= err[:, None] * u[i, columns][None, :]
        if set_column:
            out[:, i] = w_hat
        return out

    later = slice(i + 1, None)
    err = (w[:, i] - w_hat) / u[i, i]
    return [
        (w, "nothing changed: set column i to w_hat_i, then move the later columns"),
        (moved(w[:, i] - w_hat, later), "divide the error by U[i, i]"),
        (moved(-err, later), "subtract err * U[i, j]: err = (w_i - w_hat_i) / U[i, i]"),
        (moved(err, later, set_column=False), "set column i to its quantized value"),
        (
            moved((w[:, i] - w_hat) / u[i, i] ** 2, later),
            "divide by U[i, i] once, not squared",
        ),
    ]


def _check_step(answer: object) -> str:
    function = expect_callable(answer, 'check("l6-error-step", my_gptq_step)')
    for case, w, u, i, w_hat in _step_cases():
        got = call(function, w, u, i, w_hat, case=case)
        got = expect_tensor(got, tuple(w.shape), "the new weight")
        # float32 arithmetic in another order: a few units of 2**-24 on values near 1
        same = same_tensor(rtol=1e-5, atol=1e-6)
        verify(got, my_gptq_step(w, u, i, w_hat), _step_mistakes(w, u, i, w_hat), same, case)
    return "right: err = (w_i - w_hat_i) / U[i, i], then w_j -= err U[i, j] for the later columns."


register(
    Exercise(
        id="l6-error-step",
        lesson=6,
        prompt=(
            "Write my_gptq_step(weight, u, column, quantized_column): one error-compensation step."
        ),
        solution=my_gptq_step,
        checker=_check_step,
    )
)


# ---------------------------------------------------------------- l6-layer-bytes

# A W4A16Linear(1536, 384) (MiniLM's output.dense), groups of 128, with a float32 bias.
_OUT, _IN, _GROUP = 384, 1536, 128
_GROUPS = _OUT * _IN // _GROUP  # 4,608
LAYER_BYTES = _OUT * _IN // 2 + _GROUPS * 2 + _GROUPS * 1 + _OUT * 4  # 310,272


def _check_layer_bytes(answer: object) -> str:
    got = expect_number(answer, "the number of bytes")
    packed, scales, zeros, bias = _OUT * _IN // 2, _GROUPS * 2, _GROUPS, _OUT * 4
    mistakes = [
        (packed + scales + zeros, "add the float32 bias: 384 values of 4 bytes"),
        (packed + scales + bias, "add the zero points: one byte per group"),
        (packed + 2 * scales + zeros + bias, "the scales are float16: 2 bytes each"),
        (2 * packed + scales + zeros + bias, "two 4-bit weights share one byte: n / 2 bytes"),
        (packed, "add the scales, zero points and bias"),
        (_OUT * _IN * 4 + bias, "that is the float32 layer"),
    ]
    verify(got, LAYER_BYTES, mistakes, same_number(), "the (384, 1536) layer, groups of 128")
    return (
        f"{LAYER_BYTES:,} bytes: {packed:,} packed weights + {scales:,} of scales + "
        f"{zeros:,} of zero points + {bias:,} of bias, against {_OUT * _IN * 4 + bias:,} in "
        "float32."
    )


register(
    Exercise(
        id="l6-layer-bytes",
        lesson=6,
        prompt="How many bytes does a 4-bit (384, 1536) layer with groups of 128 and a bias take?",
        solution=LAYER_BYTES,
        checker=_check_layer_bytes,
        kind="predict",
    )
)
