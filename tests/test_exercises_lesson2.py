"""Lesson 2 exercises: the references agree with bfloat16 arithmetic; mistakes are named."""

import math

import pytest
import torch

from tutorlib.exercises import check
from tutorlib.exercises.lesson2 import (
    GAMMA_ONE_N,
    ONES_STALL,
    PAIRWISE_DTYPE,
    PAIRWISE_N,
    _float32_accumulated,
    _pairwise_cases,
    _sequential,
    my_pairwise_sum,
    my_unit_roundoff,
    pairwise_bound,
)
from tutorlib.formats.dot_products import pairwise_sum
from tutorlib.formats.error_bounds import deterministic_bound, gamma, unit_roundoff


def test_running_sum_of_ones_stalls_where_the_answer_says():
    total = torch.tensor(0.0, dtype=torch.bfloat16)
    for _ in range(2 * ONES_STALL):
        total = total + 1  # one bfloat16 rounding per addition
    assert total.item() == ONES_STALL == 256


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_unit_roundoff_agrees_with_tutorlib(dtype):
    assert my_unit_roundoff(dtype) == unit_roundoff(dtype)


def test_gamma_reaches_one_where_the_answer_says():
    u = unit_roundoff(torch.float16)
    assert gamma(GAMMA_ONE_N, u) == 1.0 and gamma(GAMMA_ONE_N - 1, u) < 1.0
    assert deterministic_bound(GAMMA_ONE_N, torch.float16) == pytest.approx(1.0)


def test_pairwise_dtype_is_the_narrowest_under_one_percent():
    n_roundings = math.ceil(math.log2(PAIRWISE_N)) + 1  # 17
    bounds = {d: gamma(n_roundings, unit_roundoff(d)) for d in (torch.bfloat16, torch.float16)}
    assert (
        bounds[torch.bfloat16] > 0.01 > bounds[PAIRWISE_DTYPE] and PAIRWISE_DTYPE == torch.float16
    )


@pytest.mark.parametrize("case", _pairwise_cases(), ids=lambda c: c[0])
def test_pairwise_sum_within_its_bound_and_its_own_dtype(case):
    _, terms = case
    result = my_pairwise_sum(terms)
    assert result.dtype == terms.dtype
    assert abs(result.item() - terms.double().sum().item()) <= pairwise_bound(terms)


def test_pairwise_sum_matches_tutorlib_on_a_power_of_two():
    terms = torch.rand(1024, generator=torch.Generator().manual_seed(0)).bfloat16()
    assert my_pairwise_sum(terms).item() == pairwise_sum(terms).item()


def test_the_stall_case_defeats_sequential_summation():
    _, squares = _pairwise_cases()[0]
    assert _sequential(squares).item() == 256.0
    assert abs(256.0 - squares.double().sum().item()) > pairwise_bound(squares)


def test_float32_accumulation_is_told_apart_from_pairwise():
    long_low_precision = [t for _, t in _pairwise_cases() if t.dtype != torch.float32]
    long_low_precision = [t for t in long_low_precision if t.numel() >= 100]
    differs = [
        my_pairwise_sum(t).item() != _float32_accumulated(t).item() for t in long_low_precision
    ]
    assert sum(differs) >= 3


def _sequential_sum(terms):
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _recursive_python_float(terms):
    return terms.double().sum().item()


WRONG = [
    ("l2-unit-roundoff", lambda dtype: torch.finfo(dtype).eps, "that is eps, the gap above 1"),
    ("l2-unit-roundoff", lambda dtype: torch.finfo(dtype).resolution, "decimal approximation"),
    ("l2-ones-stall", 2048, "where float16 stops"),
    ("l2-ones-stall", 257, "257 needs 9 significant bits"),
    ("l2-ones-stall", 512, "one binade too far"),
    ("l2-gamma-one", 2048, "it reaches 1 before, at n u = 1/2"),
    ("l2-gamma-one", 1023, "still below 1"),
    ("l2-gamma-one", 256, "float16's u is 2^-11"),
    ("l2-pairwise-dtype", torch.bfloat16, "bfloat16's u is 2^-8"),
    ("l2-pairwise-dtype", torch.float32, "a narrower type does too"),
    ("l2-pairwise-dtype", "float16", "answer with a torch dtype"),
    ("l2-pairwise-sum", _sequential_sum, "that is sequential summation"),
    ("l2-pairwise-sum", lambda terms: terms.sum(), "float32 accumulator"),
    ("l2-pairwise-sum", _recursive_python_float, "the sum should be a torch.Tensor"),
    (
        "l2-pairwise-sum",
        lambda terms: terms.float().sum(),
        "dtype torch.bfloat16, got torch.float32",
    ),
    ("l2-pairwise-sum", lambda terms: terms[:1].sum() * 0, "more than pairwise summation's bound"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message


def test_pairwise_sum_an_all_nan_answer_is_not_correct() -> None:
    feedback = check(
        "l2-pairwise-sum", lambda terms: torch.full((), float("nan"), dtype=terms.dtype)
    )
    assert not feedback.passed and "NaN" in feedback.message
