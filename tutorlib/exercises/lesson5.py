"""Lesson 5 exercises: per-token activations, int8 x int8 -> int32, the rescale, Amdahl's law.

The W8A8 path piece by piece, three derivations here: quantize each token's activations with
its own scale, multiply the int8 matrices with int32 sums, turn the sums back into floats with
y = s_x[t] s_w[o] acc[t, o] + b[o]. Three predictions live in ``_lesson5_predictions``: the
headroom of an int32 accumulator, the largest code a saturating int16 pair can take, and the
speedup a profile allows. The functions to write are named ``my_...``, so that a notebook's
never shadow tutorlib's.

Leaves out: timing the learner's code (it would make the feedback machine-dependent) and
torch._int_mm (it needs shapes the hidden cases would have to respect).
"""

import torch

from tutorlib.exercises.core import (
    Exercise,
    Wrong,
    call,
    expect_callable,
    expect_pair,
    expect_tensor,
    register,
    same_tensor,
    seeded,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution

_INT8_MAX = torch.iinfo(torch.int8).max  # 127: the restricted symmetric range is [-127, 127]
_EPS = torch.finfo(torch.float32).eps  # 2**-23, the floor of a scale (as in torch.ao)


# ---------------------------------------------------------------- l5-per-token


def my_quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization with one scale per token (row) of x (tokens, features).

    s_x[t] = max(max_f |x[t, f]| / 127, eps), q = clamp(round(x / s_x), -127, 127) as int8;
    the floor eps = 2**-23 keeps a row of zeros from dividing 0 by 0.
    Example: x = [[0.5, -1.27, 0.1]] -> s_x = [[0.01]], q = [[50, -127, 10]].
    Returns (q int8 (tokens, features), s_x float32 (tokens, 1)).
    """
    q_max = torch.iinfo(torch.int8).max  # 127
    eps = torch.finfo(torch.float32).eps  # 2**-23
    x = x.float()
    scale = torch.clamp(x.abs().amax(dim=1, keepdim=True) / q_max, min=eps)  # (tokens, 1)
    q = torch.clamp(torch.round(x / scale), -q_max, q_max).to(torch.int8)
    return q, scale


def _per_token_cases() -> list[tuple[str, torch.Tensor]]:
    generator = seeded(51)
    tokens = torch.randn(8, 32, generator=generator)
    tokens[2, 5] = 40.0  # one outlier token
    with_zero_row = torch.randn(4, 16, generator=generator)
    with_zero_row[3] = 0.0
    return [
        ("(8, 32) activations with one outlier token", tokens),
        ("(5, 5) activations", 3 * torch.randn(5, 5, generator=generator)),
        ("(4, 16) activations with a row of zeros", with_zero_row),
        ("one token of 384 features", torch.randn(1, 384, generator=generator)),
    ]


def _scale_mistakes(x: torch.Tensor) -> list[tuple[object, str]]:
    row_max = x.abs().amax(dim=1, keepdim=True)
    per_tensor = "one scale for all tokens is per-tensor; per token needs one scale per row"
    return [
        (x.abs().max() / _INT8_MAX, per_tensor),
        ((x.abs().max() / _INT8_MAX).expand(x.shape[0], 1), per_tensor),
        (
            x.abs().amax(dim=0, keepdim=True) / _INT8_MAX,
            "one scale per token (row), not per feature",
        ),
        (torch.clamp(row_max / 128, min=_EPS), "divide by 127: 128 does not fit in int8"),
        (
            torch.clamp(row_max.squeeze(1) / _INT8_MAX, min=_EPS),
            "keep the scale's shape (tokens, 1)",
        ),
        (
            row_max / _INT8_MAX,
            "a row of zeros gets scale 0, and 0 / 0 = NaN: floor it with clamp(min=eps)",
        ),
    ]


def _q_mistakes(x: torch.Tensor, scale: torch.Tensor) -> list[tuple[object, str]]:
    ratio = x / scale
    floor, trunc = (
        "round x / s to the nearest, not floor",
        "round x / s to the nearest, not toward 0",
    )
    return [  # with and without the clamp, which only matters where x / s is about -127
        (torch.clamp(torch.floor(ratio), -_INT8_MAX, _INT8_MAX), floor),
        (torch.floor(ratio), floor),
        (torch.trunc(ratio), trunc),
    ]


def _same_up_to_ties(a: object, b: object) -> bool:
    """Integer tensors equal, except for off-by-one values at no more than 0.1% of the places.

    Multiplying by 1 / s instead of dividing by s can flip a value lying within a float32
    rounding of a .5 tie; nothing else moves q by one.
    """
    if not same_tensor(atol=1)(a, b):
        return False
    return (a.long() != b.long()).sum().item() <= 0.001 * b.numel()


def _as_q_and_scale(value: object) -> tuple[object, object]:
    return expect_pair(value, "q", "scale")


def _check_per_token(answer: object) -> str:
    function = expect_callable(answer, 'check("l5-per-token", my_quantize_per_token)')
    for case, x in _per_token_cases():
        q, scale = _as_q_and_scale(call(function, x, case=case))
        expected_q, expected_scale = my_quantize_per_token(x)
        same_scale = same_tensor(rtol=1e-6)  # absmax is exact; one float32 division
        verify(scale, expected_scale, _scale_mistakes(x), same_scale, case)
        verify(q, expected_q, _q_mistakes(x, expected_scale), _same_up_to_ties, case)
        expect_tensor(q, tuple(x.shape), "q", dtype=torch.int8)
        expect_tensor(scale, (x.shape[0], 1), "the scale", dtype=torch.float32)
    return "right: s_x[t] = max|x[t, :]| / 127 per token, q = round(x / s_x) in int8."


register(
    Exercise(
        id="l5-per-token",
        lesson=5,
        prompt="Write my_quantize_per_token(x) -> (q int8, scale (tokens, 1)), symmetric, per row.",
        solution=my_quantize_per_token,
        checker=_check_per_token,
    )
)


# ---------------------------------------------------------------- l5-int8-matmul


def my_int8_matmul(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """acc[t, o] = sum_i x_q[t, i] w_q[o, i], exact in int32 (what torch._int_mm computes).

    x_q is int8 (tokens, in), w_q int8 (out, in) like nn.Linear's weight; the products of two
    int8 numbers need up to 16 bits and their sums more, so convert to int32 before multiplying.
    Example: x_q = [[127, -128]], w_q = [[127, -128]] -> [[16129 + 16384]] = [[32513]].
    """
    return x_q.to(torch.int32) @ w_q.to(torch.int32).T  # (tokens, out)


def _int8(generator: torch.Generator, *shape: int, low: int = -128) -> torch.Tensor:
    return torch.randint(low, 128, shape, generator=generator, dtype=torch.int8)


def _matmul_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = seeded(52)
    return [
        ("(4, 64) x (8, 64)", _int8(generator, 4, 64), _int8(generator, 8, 64)),
        ("(6, 6) x (6, 6)", _int8(generator, 6, 6), _int8(generator, 6, 6)),
        (
            "[[127, -128]] x [[127, -128]]",
            torch.tensor([[127, -128]], dtype=torch.int8),
            torch.tensor([[127, -128]], dtype=torch.int8),
        ),
        # Sums near 3e7 > 2**24: float32 cannot hold every such integer exactly.
        (
            "(2, 2048) x (3, 2048) of large values",
            _int8(generator, 2, 2048, low=100),
            _int8(generator, 3, 2048, low=100),
        ),
    ]


def _check_int8_matmul(answer: object) -> str:
    function = expect_callable(answer, 'check("l5-int8-matmul", my_int8_matmul)')
    for case, x_q, w_q in _matmul_cases():
        got = call(function, x_q, w_q, case=case)
        expected = my_int8_matmul(x_q, w_q)  # (tokens, out)
        wrapped = (expected.long() + 128) % 256 - 128  # the same sums kept in int8
        mistakes = [(wrapped, "the sums overflowed int8 and wrapped around: use int32 first")]
        if w_q.shape[0] == w_q.shape[1]:  # only a square w_q multiplies without its transpose
            untransposed = x_q.to(torch.int32) @ w_q.to(torch.int32)
            mistakes.append((untransposed, "w_q is (out, in) like nn.Linear: multiply by w_q.T"))
        if not same_tensor()(got, expected) and same_tensor(rtol=1e-6)(got, expected):
            raise Wrong(
                "off by a few units: float32 holds integers exactly only up to 2^24 = 16,777,216 "
                f"and these sums are larger; multiply in int32 (on the hidden case {case})"
            )
        verify(got, expected, mistakes, same_tensor(), case)
        expect_tensor(got, tuple(expected.shape), "acc", dtype=torch.int32)
    return "right: int8 inputs, int32 products and sums, exact, as torch._int_mm computes them."


register(
    Exercise(
        id="l5-int8-matmul",
        lesson=5,
        prompt="Write my_int8_matmul(x_q, w_q) -> int32 acc = x_q @ w_q.T, exact.",
        solution=my_int8_matmul,
        checker=_check_int8_matmul,
    )
)


# ---------------------------------------------------------------- l5-w8a8-rescale


def my_w8a8_rescale(
    acc: torch.Tensor, x_scale: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """From int32 sums back to float32: y[t, o] = s_x[t] * s_w[o] * acc[t, o] + b[o].

    acc int32 (tokens, out); x_scale (tokens, 1); w_scale (out,); bias (out,) or None.
    Example: acc = [[5080]], s_x = [[0.01]], s_w = [0.02], b = [0.5] -> [[1.516]].
    """
    y = acc.to(torch.float32) * x_scale * w_scale  # (tokens, out): (t, 1) and (out,) broadcast
    return y if bias is None else y + bias


def _rescale_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, object]]:
    generator = seeded(53)

    def draw(tokens: int, out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acc = torch.randint(-(2**20), 2**20, (tokens, out), generator=generator, dtype=torch.int32)
        x_scale = torch.rand(tokens, 1, generator=generator) / 50 + 1e-3  # (tokens, 1)
        w_scale = torch.rand(out, generator=generator) / 500 + 1e-4  # (out,)
        return acc, x_scale, w_scale

    cases = []
    for name, tokens, out, with_bias in [
        ("(6, 8)", 6, 8, True),
        ("(5, 5)", 5, 5, True),
        ("(3, 4) without bias", 3, 4, False),
    ]:
        acc, x_scale, w_scale = draw(tokens, out)
        bias = torch.randn(out, generator=generator) if with_bias else None
        cases.append((f"acc {name}", acc, x_scale, w_scale, bias))
    return cases


def _rescale_mistakes(acc, x_scale, w_scale, bias) -> list[tuple[object, str]]:
    a, sx, sw = acc.double(), x_scale.double(), w_scale.double()
    b = 0.0 if bias is None else bias.double()
    mistakes = [
        (sx * sw * (a + b), "add the bias after rescaling: it is a float, not an integer sum"),
        (a / (sx * sw) + b, "multiply by the scales: x ~ s_x x_q and w ~ s_w w_q"),
        (sx * a + b, "multiply by the weight scale s_w[o] too"),
        (sw * a + b, "multiply by the activation scale s_x[t] too"),
    ]
    if bias is not None:
        mistakes.insert(0, (sx * sw * a, "add the bias b[o]"))
    if acc.shape[0] == acc.shape[1]:
        mistakes.append(
            (a * sx * sw[:, None] + b, "s_w[o] goes with the output column o, not the token row")
        )
    return mistakes


def _check_w8a8_rescale(answer: object) -> str:
    function = expect_callable(answer, 'check("l5-w8a8-rescale", my_w8a8_rescale)')
    for case, acc, x_scale, w_scale, bias in _rescale_cases():
        got = call(function, acc, x_scale, w_scale, bias, case=case)
        expected = my_w8a8_rescale(acc, x_scale, w_scale, bias)
        # float32: two products and a sum, each rounded to 2**-24 relative of the largest term,
        # so 4 * 2**-24 * max(|s_x s_w acc| + |b|) bounds any order of the operations.
        magnitude = (acc.double() * x_scale * w_scale).abs() + (0 if bias is None else bias.abs())
        # (rtol 1e-6 compares a mistaken answer, of another size, with its float64 version.)
        same = same_tensor(rtol=1e-6, atol=4 * 2.0**-24 * magnitude.max().item())
        verify(got, expected, _rescale_mistakes(acc, x_scale, w_scale, bias), same, case)
        expect_tensor(got, tuple(expected.shape), "y", dtype=torch.float32)
    return "right: y[t, o] = s_x[t] s_w[o] acc[t, o] + b[o], in float32."


register(
    Exercise(
        id="l5-w8a8-rescale",
        lesson=5,
        prompt=(
            "Write my_w8a8_rescale(acc, x_scale, w_scale, bias) -> y = s_x[t] s_w[o] acc + b[o]."
        ),
        solution=my_w8a8_rescale,
        checker=_check_w8a8_rescale,
    )
)


# The predictions (l5-int32-headroom, l5-int16-pairs, l5-amdahl) live in their own module;
# importing it registers them with this lesson's.
import tutorlib.exercises._lesson5_predictions  # noqa: E402, F401
