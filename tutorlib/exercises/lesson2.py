"""Lesson 2 exercises: unit roundoff, the bfloat16 stall, gamma_n and pairwise summation.

From recall (where a bfloat16 running sum of ones stops) to implementation (pairwise summation,
checked against float64 with the error bound of Higham 2002, section 4.2). The functions to
write are named ``my_...``, so that a notebook's never shadow tutorlib's.

Leaves out: the probabilistic bound as an exercise (it holds only with high probability, so no
hidden case could check it without false alarms).
"""

import math

import torch

from tutorlib.exercises.core import (
    Exercise,
    Wrong,
    call,
    describe,
    expect_callable,
    expect_number,
    expect_tensor,
    register,
    same_number,
    verify,
)
from tutorlib.formats.dot_products import sequential_partial_sums

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l2-unit-roundoff


def my_unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2**-p = eps / 2, with p significand bits (the hidden one included).

    Rounding to nearest errs by at most half the gap above 1 (eps): |fl(r) - r| <= u |r|.
    Example: bfloat16 has eps = 2**-7, so u = 2**-8 = 0.00390625.
    """
    return torch.finfo(dtype).eps / 2


_U_DTYPES = [
    torch.bfloat16,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def _check_unit_roundoff(answer: object) -> str:
    function = expect_callable(answer, 'check("l2-unit-roundoff", my_unit_roundoff)')
    for dtype in _U_DTYPES:
        case = f"dtype={dtype}"
        got = expect_number(call(function, dtype, case=case), "u")
        info = torch.finfo(dtype)
        mistakes = [
            (info.eps, "that is eps, the gap above 1; rounding to nearest errs by half of it"),
            (info.resolution, "finfo.resolution is a decimal approximation; use eps / 2"),
            (info.eps / 4, "u is eps / 2, not eps / 4"),
        ]
        verify(got, my_unit_roundoff(dtype), mistakes, same_number(), case)  # powers of 2: exact
    return "right: u = eps / 2 = 2^-p, e.g. 2^-8 for bfloat16 and 2^-24 for float32."


register(
    Exercise(
        id="l2-unit-roundoff",
        lesson=2,
        prompt=(
            "Write my_unit_roundoff(dtype) -> float, the unit roundoff u = 2^-p of a float dtype."
        ),
        solution=my_unit_roundoff,
        checker=_check_unit_roundoff,
    )
)


# ---------------------------------------------------------------- l2-ones-stall

# In [256, 512) bfloat16 counts in steps of 2**(8 - 7) = 2, so 256 + 1 = 257 is a tie between 256
# and 258, and ties round to the even mantissa: 256. (The tests check it by running the sum.)
ONES_STALL = 256


def _check_ones_stall(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (2048.0, "2048 is where float16 stops (11 significant bits); bfloat16 keeps only 8"),
        (2.0**24, "2^24 is where float32 stops (24 significant bits); bfloat16 keeps only 8"),
        (512.0, "one binade too far: the step is already 2 in [256, 512), and 257 is a tie"),
        (128.0, "in [128, 256) the step is 1, so adding 1 is still exact there"),
        (255.0, "every integer up to 256 is exact in bfloat16 (8 significant bits)"),
        (257.0, "257 needs 9 significant bits; bfloat16 has 8, so 256 + 1 rounds back to 256"),
        (float(torch.finfo(torch.bfloat16).max), "the sum stops growing long before overflow"),
    ]
    # Exact: the sum is an integer, and the answer must be that integer.
    verify(got, float(ONES_STALL), mistakes, same_number(), "the running sum of ones")
    return (
        "256: from 256 on bfloat16's step is 2, 256 + 1 = 257 is a tie, and the tie rounds to "
        "the even neighbour, 256."
    )


register(
    Exercise(
        id="l2-ones-stall",
        lesson=2,
        prompt="A bfloat16 running sum adds 1.0 again and again from 0: where does it stop?",
        solution=ONES_STALL,
        checker=_check_ones_stall,
    )
)


# ---------------------------------------------------------------- l2-gamma


def my_gamma(n: int, u: float) -> float:
    """gamma_n = n u / (1 - n u), the constant of the deterministic bound (Higham 2002, eq. 3.5).

    Defined while n u < 1; for n u >= 1 the bound says nothing and this returns math.inf.
    Example: my_gamma(1000, 2**-24) = 5.96e-05; my_gamma(256, 2**-8) = inf.
    """
    if n * u >= 1:
        return math.inf
    return n * u / (1 - n * u)


_GAMMA_CASES = [(1000, 2.0**-24), (10, 2.0**-8), (255, 2.0**-8), (1, 2.0**-11)]
_GAMMA_CASES += [(10**6, 2.0**-24), (256, 2.0**-8), (300, 2.0**-8), (4096, 2.0**-11)]


def _check_gamma(answer: object) -> str:
    function = expect_callable(answer, 'check("l2-gamma", my_gamma)')
    # A few float64 roundings in a different order differ by a few ulps: 1e-12 is far above
    # that and far below any mistake.
    same = same_number(rel_tol=1e-12)
    for n, u in _GAMMA_CASES:
        case = f"n={n}, u=2^{round(math.log2(u))}"
        got = expect_number(call(function, n, u, case=case), "gamma_n")
        mistakes = [
            (n * u, "that is n u; gamma_n divides it by (1 - n u)"),
            (math.sqrt(n) * u, "that is the probabilistic bound's sqrt(n) u, not gamma_n"),
            (n * u / (1 + n * u), "the denominator is 1 - n u, not 1 + n u"),
        ]
        if n * u >= 1 and math.isfinite(got):
            mistakes.append((got, "when n u >= 1 the bound is meaningless: return math.inf"))
        verify(got, my_gamma(n, u), mistakes, same, case)
    return "right: gamma_n = n u / (1 - n u), and inf once n u >= 1 (n = 256 in bfloat16)."


register(
    Exercise(
        id="l2-gamma",
        lesson=2,
        prompt="Write my_gamma(n, u) -> n u / (1 - n u), or math.inf when n u >= 1.",
        solution=my_gamma,
        checker=_check_gamma,
    )
)


# ---------------------------------------------------------------- l2-pairwise-sum


def my_pairwise_sum(terms: torch.Tensor) -> torch.Tensor:
    """Sum a 1-D tensor by halves, in its own dtype: sum(t) = sum(first half) + sum(second half).

    Each addition of two 0-d tensors is rounded to their dtype; the tree has depth
    ceil(log2 n), so each term meets at most ceil(log2 n) roundings instead of n - 1.
    Example: [256, 0.75, 0.75, 0.75, 0.75] in bfloat16 -> (256 + 0.75) + (0.75 + (0.75 + 0.75))
    = 256 + 2.25 -> 258 (the exact sum is 259).
    """
    n = terms.shape[0]
    if n == 1:
        return terms[0]
    half = n // 2
    return my_pairwise_sum(terms[:half]) + my_pairwise_sum(terms[half:])


def _pairwise_cases() -> list[tuple[str, torch.Tensor]]:
    """Seeded hidden inputs: the stall case, the lesson's hand case, odd lengths, three dtypes."""
    generator = torch.Generator().manual_seed(2)
    bf16 = torch.bfloat16
    return [
        ("1000 squares of rand, bfloat16", (torch.rand(1000, generator=generator) ** 2).to(bf16)),
        (
            "[256, 0.75, 0.75, 0.75, 0.75], bfloat16",
            torch.tensor([256, 0.75, 0.75, 0.75, 0.75], dtype=bf16),
        ),
        ("one term, bfloat16", torch.tensor([3.5], dtype=bf16)),
        ("randn(7), bfloat16", torch.randn(7, generator=generator).to(bf16)),
        ("randn(4096), bfloat16", torch.randn(4096, generator=generator).to(bf16)),
        ("100 * randn(1000), bfloat16", (100 * torch.randn(1000, generator=generator)).to(bf16)),
        ("rand(2000) - 0.5, bfloat16", (torch.rand(2000, generator=generator) - 0.5).to(bf16)),
        ("rand(4097), bfloat16", torch.rand(4097, generator=generator).to(bf16)),
        ("randn(3000), float16", torch.randn(3000, generator=generator).half()),
        ("randn(512), float16", torch.randn(512, generator=generator).half()),
        ("randn(1000), float32", torch.randn(1000, generator=generator)),
    ]


def pairwise_bound(terms: torch.Tensor) -> float:
    """|fl(sum) - sum| <= gamma_h sum|t_i|, h = ceil(log2 n) (Higham 2002, eq. 4.6, pairwise).

    Example: 1000 bfloat16 terms in [0, 1): h = 10, gamma_10 = 0.0406, bound 0.0406 * sum.
    """
    depth = math.ceil(math.log2(terms.numel()))  # 0 for one term: no addition, no error
    return my_gamma(depth, my_unit_roundoff(terms.dtype)) * terms.double().abs().sum().item()


def _sequential(terms: torch.Tensor) -> torch.Tensor:
    return sequential_partial_sums(terms, torch.ones_like(terms), terms.dtype)[-1]


def _float32_accumulated(terms: torch.Tensor) -> torch.Tensor:
    return terms.float().sum().to(terms.dtype)  # what torch.sum and torch.dot do in bf16/fp16


def _stall_case_sum() -> float:
    _, squares = _pairwise_cases()[0]
    return my_pairwise_sum(squares).item()


def _check_pairwise_sum(answer: object) -> str:
    function = expect_callable(answer, 'check("l2-pairwise-sum", my_pairwise_sum)')
    like_float32_accumulator, differs_from_it = True, 0
    for case, terms in _pairwise_cases():
        got = call(function, terms, case=case)
        if isinstance(got, torch.Tensor) and got.numel() == 1 and got.ndim <= 1:
            got = got.reshape(())  # accept shape (1,) as well as a 0-d tensor
        got = expect_tensor(got, (), "the sum", dtype=terms.dtype)
        exact = terms.double().sum().item()
        error, bound = abs(got.item() - exact), pairwise_bound(terms)
        if math.isnan(error):
            raise Wrong(f"on the hidden case {case} your sum is NaN; the terms are all finite")
        if error > bound:
            if got.item() == _sequential(terms).item():
                raise Wrong(
                    f"that is sequential summation: on the hidden case {case} it gives "
                    f"{got.item():g} (exact {exact:g}); add the two halves' sums, recursively"
                )
            raise Wrong(
                f"on the hidden case {case} your sum {got.item():g} is {error:.3g} away from the "
                f"exact {exact:g}, more than pairwise summation's bound {bound:.3g}"
            )
        if terms.dtype != torch.float32 and terms.numel() >= 100:
            float32_sum = _float32_accumulated(terms).item()
            like_float32_accumulator &= got.item() == float32_sum
            differs_from_it += my_pairwise_sum(terms).item() != float32_sum
    if like_float32_accumulator and differs_from_it >= 3:
        raise Wrong(
            "your sums are those of a float32 accumulator (as torch.sum gives): add the terms in "
            "their own dtype, two halves at a time"
        )
    return (
        "right: every hidden sum lies within gamma_h sum|t| (h = ceil(log2 n)) of the exact one; "
        f"on 1000 squares in bfloat16 pairwise gives {describe(_stall_case_sum())} where "
        "sequential stalls at 256."
    )


register(
    Exercise(
        id="l2-pairwise-sum",
        lesson=2,
        prompt="Write my_pairwise_sum(terms) that adds a 1-D tensor by halves, in its own dtype.",
        solution=my_pairwise_sum,
        checker=_check_pairwise_sum,
    )
)
