"""Lesson 2 exercises: unit roundoff, the bfloat16 stall, gamma_n and pairwise summation.

Three predictions or choices (where a bfloat16 running sum of ones stops, where float16's bound
gamma_n reaches 100%, which dtype pairwise summation needs) and two derivations (the unit
roundoff of any dtype; pairwise summation, checked against float64 with the error bound of
Higham 2002, section 4.2). The functions to
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
        kind="predict",
    )
)


# ---------------------------------------------------------------- l2-gamma-one

# gamma_n = n u / (1 - n u) reaches 1 (a bound of 100%) when n u = 1/2: in float16, u = 2**-11,
# from n = 2**10. Below, gamma_1023 = 1023 / 1025 < 1.
GAMMA_ONE_N = 2**10  # 1024


def _check_gamma_one(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (
            2048.0,
            "at n = 2,048 n u = 1 and the bound is infinite; it reaches 1 before, at n u = 1/2",
        ),
        (1023.0, "gamma_1023 = 1023 u / (1 - 1023 u) = 1023/1025, still below 1"),
        (256.0, "256 is 1/u for bfloat16; float16's u is 2^-11"),
        (512.0, "gamma_512 = (1/4) / (3/4) = 1/3: solve n u / (1 - n u) = 1 for n"),
    ]
    verify(got, float(GAMMA_ONE_N), mistakes, same_number(), "float16, u = 2^-11")
    return (
        "1,024: gamma_n = 1 where n u = 1 - n u, so n u = 1/2 and n = 2^-1 / 2^-11 = 1,024. From "
        "there the worst-case bound allows an error as large as the sum itself."
    )


register(
    Exercise(
        id="l2-gamma-one",
        lesson=2,
        prompt="In float16 (u = 2^-11), from which n does gamma_n = n u / (1 - n u) reach 1?",
        solution=GAMMA_ONE_N,
        checker=_check_gamma_one,
        kind="predict",
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
    n_u = depth * my_unit_roundoff(terms.dtype)
    gamma = n_u / (1 - n_u) if n_u < 1 else math.inf  # gamma_depth, Higham (2002) eq. 3.5
    return gamma * terms.double().abs().sum().item()


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


# ---------------------------------------------------------------- l2-pairwise-dtype

# A dot product of n = 2**16 terms, each product rounded and then summed pairwise, gives each
# term at most 1 + ceil(log2 n) = 17 roundings, so its bound is gamma_17.
# Below 1 %: float16 (17 / 2048 = 0.83 %), not bfloat16 (17 / 256).
PAIRWISE_N = 2**16
PAIRWISE_DTYPE = torch.float16


def _pairwise_percent(dtype: torch.dtype) -> str:
    n_roundings = math.ceil(math.log2(PAIRWISE_N)) + 1
    u = torch.finfo(dtype).eps / 2
    return f"{100 * n_roundings * u / (1 - n_roundings * u):.2f}%"


def _check_pairwise_dtype(answer: object) -> str:
    if not isinstance(answer, torch.dtype):
        raise Wrong(f"answer with a torch dtype, such as torch.float32; got {describe(answer)}")
    mistakes = {
        torch.bfloat16: "bfloat16's u is 2^-8: gamma_17 = " + _pairwise_percent(torch.bfloat16),
        torch.float32: "float32 works, but a narrower type does too: float16's gamma_17 = "
        + _pairwise_percent(torch.float16)
        + " (float32 is what a sequential sum of 65,536 terms would need)",
        torch.float64: "far more than needed: count the roundings, 1 + ceil(log2 n) = 17",
    }
    if answer != PAIRWISE_DTYPE:
        raise Wrong(mistakes.get(answer, f"{answer} is not one of bfloat16, float16, float32"))
    return (
        "float16: a product and 16 pairwise additions give each term at most 17 roundings, "
        f"and gamma_17 = {_pairwise_percent(torch.float16)} with u = 2^-11 (bfloat16: "
        f"{_pairwise_percent(torch.bfloat16)})."
    )


register(
    Exercise(
        id="l2-pairwise-dtype",
        lesson=2,
        prompt="A dot product of 2^16 terms summed pairwise: narrowest dtype with a bound < 1%?",
        solution=PAIRWISE_DTYPE,
        checker=_check_pairwise_dtype,
        kind="reason",
    )
)
