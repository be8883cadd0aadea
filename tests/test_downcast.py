"""Tests of tutorlib.downcast: textbook cases, properties, and independent references.

The independent reference for "sequential" and "pairwise" is exact rational arithmetic
(fractions.Fraction) with a round-to-nearest-even written here from the format's parameters.
"""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib.formats.dot_products import (
    ACCUMULATE_MODES,
    DOT_DTYPES,
    SEQUENTIAL_MAX_N,
    Stall,
    compare_with_rounding_once,
    dot,
    find_stall,
    linear_outputs_not_rounded_once,
    pairwise_sum,
    sequential_partial_sums,
    split_error,
)
from tutorlib.formats.error_bounds import (
    condition_number,
    deterministic_bound,
    gamma,
    probabilistic_bound,
    unit_roundoff,
)
from tutorlib.formats.error_growth import (
    first_overflow_length,
    growth_exponent,
    growth_exponent_table,
    median_error_table,
    run_experiment,
    signed_errors_of_draws,
    sums_rounded_once,
)

DTYPE_IDS = ["float32", "float16", "bfloat16"]


# --- an exact reference: round a rational number to the nearest dtype value, ties to even ---


def round_to_dtype(value: Fraction, dtype: torch.dtype) -> Fraction:
    """Correctly rounded value in ``dtype`` (ties to even), by exact rational arithmetic."""
    info = torch.finfo(dtype)
    precision = 1 - round(math.log2(info.eps))  # significand bits, with the hidden one
    lowest_power = round(math.log2(info.smallest_normal))  # exponent of the smallest normal
    if value == 0:
        return Fraction(0)
    magnitude = abs(value)
    power = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** power > magnitude:  # make 2**power <= magnitude < 2**(power + 1)
        power -= 1
    step = Fraction(2) ** (max(power, lowest_power) - precision + 1)  # spacing in this binade
    multiple = magnitude / step
    below = math.floor(multiple)
    above_half = multiple - below > Fraction(1, 2)
    tie_to_odd = multiple - below == Fraction(1, 2) and below % 2 == 1
    rounded = (below + (1 if above_half or tie_to_odd else 0)) * step
    if rounded > Fraction(info.max):
        raise OverflowError("the test vectors must stay in range")
    return rounded if value > 0 else -rounded


def reference_partial_sums(x: list[float], y: list[float], dtype: torch.dtype) -> list[Fraction]:
    """s_k = round(s_{k-1} + round(x_k y_k)), one element at a time, in exact arithmetic."""
    total, sums = Fraction(0), []
    for x_k, y_k in zip(x, y, strict=True):
        x_hat, y_hat = round_to_dtype(Fraction(x_k), dtype), round_to_dtype(Fraction(y_k), dtype)
        total = round_to_dtype(total + round_to_dtype(x_hat * y_hat, dtype), dtype)
        sums.append(total)
    return sums


def reference_pairwise(terms: list[Fraction], dtype: torch.dtype) -> Fraction:
    """Recursive halving: sum each half of the zero-padded power-of-two list, round the add."""
    if len(terms) == 1:
        return terms[0]
    width = 1 << (len(terms) - 1).bit_length()
    padded = terms + [Fraction(0)] * (width - len(terms))
    half = width // 2
    left, right = reference_pairwise(padded[:half], dtype), reference_pairwise(padded[half:], dtype)
    return round_to_dtype(left + right, dtype)


# float32 values small enough that 40 products never overflow float16 (40 * 30**2 < 65504);
# they include tiny and subnormal values, where rounding works on a fixed grid.
any_values = st.floats(-30.0, 30.0, allow_nan=False, width=32)
# Values whose products stay normal in float16 (>= 2**-12): the bounds assume no underflow.
normal_values = st.just(0.0) | st.builds(
    lambda magnitude, sign: sign * magnitude,
    st.floats(2.0**-6, 30.0, width=32),
    st.sampled_from([1.0, -1.0]),
)


def vector_pairs(values: st.SearchStrategy[float]) -> st.SearchStrategy:
    """Pairs of lists of the same length, 1 to 40."""
    return st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.lists(values, min_size=n, max_size=n), st.lists(values, min_size=n, max_size=n)
        )
    )


# --- unit roundoff and gamma_n ---


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float64, 2.0**-53),
        (torch.float32, 2.0**-24),
        (torch.float16, 2.0**-11),
        (torch.bfloat16, 2.0**-8),
        (torch.float8_e4m3fn, 2.0**-4),
        (torch.float8_e5m2, 2.0**-3),
    ],
    ids=["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"],
)
def test_unit_roundoff_is_two_to_minus_p(dtype, expected):
    assert unit_roundoff(dtype) == expected


def test_unit_roundoff_bounds_the_rounding_of_every_float32_in_bfloat16():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    relative = ((x.to(torch.bfloat16).double() - x.double()) / x.double()).abs()
    assert relative.max().item() <= unit_roundoff(torch.bfloat16)
    assert relative.max().item() > 0.9 * unit_roundoff(torch.bfloat16)  # and it is nearly reached


@pytest.mark.parametrize(
    "bad", [torch.int8, torch.complex64, "bfloat16"], ids=["int8", "complex", "str"]
)
def test_unit_roundoff_rejects_non_float_dtypes(bad):
    with pytest.raises(TypeError, match="floating-point"):
        unit_roundoff(bad)


def test_gamma_textbook_value_and_its_end():
    u = 2.0**-8
    assert gamma(10, u) == pytest.approx(10 / 246, rel=1e-15)
    assert gamma(255, u) == pytest.approx(255.0, rel=1e-12)  # 255/256 / (1/256)
    assert gamma(256, u) == math.inf  # n u = 1: the bound promises nothing
    assert gamma(10**6, u) == math.inf
    assert deterministic_bound(100, torch.bfloat16) == pytest.approx(100 / 156, rel=1e-15)


@pytest.mark.parametrize(
    ("n", "u"),
    [(-1, 0.5), (0, 0.5), (2.5, 0.1), (True, 0.1), (3, 0.0), (3, 1.5), (3, None)],
    ids=["negative-n", "zero-n", "float-n", "bool-n", "zero-u", "u-above-1", "none-u"],
)
def test_gamma_rejects_bad_arguments(n, u):
    with pytest.raises((ValueError, TypeError), match=r"\b(n|u)\b"):
        gamma(n, u)


def test_probabilistic_bound_is_lambda_sqrt_n_u():
    assert probabilistic_bound(10_000, torch.bfloat16) == 100 * 2.0**-8
    assert probabilistic_bound(100, torch.float32, lam=3.0) == 30 * 2.0**-24
    with pytest.raises(ValueError):
        probabilistic_bound(0, torch.float32)
    with pytest.raises(ValueError):
        probabilistic_bound(10, torch.float32, lam=0.0)


def test_condition_number_textbook_and_all_positive():
    assert condition_number(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 0.5])) == 3.0
    x = torch.rand(100, generator=torch.Generator().manual_seed(2))
    assert condition_number(x, x) == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(ValueError, match="exactly 0"):
        condition_number(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0]))
    # All terms zero: the sum is exact in any precision, kappa = 1 as for same-signed terms.
    assert condition_number(torch.zeros(3), torch.ones(3)) == 1.0


# --- the three accumulation modes: textbook cases ---


def test_three_modes_three_answers_in_bfloat16():
    # Exact 259. Next to 256 bfloat16 counts in steps of 2.
    x, y = torch.tensor([256.0, 0.75, 0.75, 0.75, 0.75]), torch.ones(5)
    values = {mode: dot(x, y, torch.bfloat16, mode).value for mode in ACCUMULATE_MODES}
    assert values == {"native": 260.0, "sequential": 256.0, "pairwise": 258.0}
    assert dot(x, y, torch.bfloat16).reference == 259.0
    assert dot(x, y, torch.bfloat16, "sequential").relative_error == pytest.approx(3 / 259)


def test_bfloat16_sequential_sum_of_squares_stalls_at_256():
    x = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    result = dot(x, x, torch.bfloat16, "sequential")
    assert result.value == 256.0  # in [256, 512) the spacing is 2: a term below 1 is lost
    assert result.reference == pytest.approx(336.588, abs=1e-3)  # ~ 1000 / 3
    sums = sequential_partial_sums(x, x, torch.bfloat16)
    first = int((sums == 256).nonzero()[0])
    assert (sums[first:] == 256).all()  # once there, it never moves again
    assert dot(x, x, torch.bfloat16, "native").value == pytest.approx(336.0)  # fp32 accumulation


def test_float16_overflow_gives_inf_not_an_exception():
    x = torch.full((2,), 200.0)
    result = dot(x, x, torch.float16)  # 80000 > 65504, the largest float16
    assert result.value == math.inf and result.relative_error == math.inf


@pytest.mark.parametrize("mode", ["pairwise", "sequential"])
def test_float16_products_that_overflow_with_opposite_signs_give_inf_not_nan(mode):
    # Products 1.2e5 and -1.2e5 round to +inf and -inf in float16; IEEE gives inf - inf = NaN.
    x, y = torch.tensor([6e4, -6e4, 1.0]), torch.tensor([2.0, 2.0, 1.0])
    result = dot(x, y, torch.float16, mode)
    assert result.value == math.inf and result.relative_error == math.inf
    # The float32 accumulator forms the products exactly: no overflow, the exact 1.
    assert dot(x, y, torch.float16).value == 1.0


def test_inputs_beyond_the_dtype_are_refused():
    with pytest.raises(ValueError, match="x holds values beyond float16"):
        dot(torch.tensor([1e5, 1.0]), torch.ones(2), torch.float16)
    with pytest.raises(ValueError, match="overflow"):
        sequential_partial_sums(torch.full((2,), 200.0), torch.full((2,), 200.0), torch.float16)
    with pytest.raises(ValueError, match="overflowed"):
        split_error(torch.full((2,), 200.0), torch.full((2,), 200.0), torch.float16)


def test_inputs_that_require_grad_are_accepted_and_left_alone():
    x = torch.tensor([256.0, 0.75, 0.75]).requires_grad_()
    y = torch.ones(3, requires_grad=True)
    assert dot(x, y, torch.bfloat16, "sequential").value == 256.0
    assert sequential_partial_sums(x, y, torch.bfloat16).tolist() == [256.0, 256.0, 256.0]
    assert condition_number(x, y) == 1.0
    assert x.grad is None and y.grad is None


def test_split_of_an_all_zero_input_is_zero():
    split = split_error(torch.zeros(4), torch.ones(4), torch.bfloat16, "sequential")
    assert (split.total, split.input_rounding, split.accumulation) == (0.0, 0.0, 0.0)


def test_exact_cases_have_zero_error():
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])  # small integers: exact
    for dtype in DOT_DTYPES:
        for mode in ACCUMULATE_MODES:
            result = dot(x, y, dtype, mode)
            assert (result.value, result.relative_error) == (32.0, 0.0)


# --- properties and references ---


@pytest.mark.parametrize("dtype", DOT_DTYPES, ids=DTYPE_IDS)
@settings(max_examples=40, deadline=None)
@given(pair=vector_pairs(any_values))
def test_sequential_equals_the_step_by_step_reference(dtype, pair):
    x, y = pair
    sums = sequential_partial_sums(torch.tensor(x), torch.tensor(y), dtype)
    expected = reference_partial_sums(x, y, dtype)
    assert [Fraction(s) for s in sums.tolist()] == expected  # element by element, exactly


@pytest.mark.parametrize("dtype", DOT_DTYPES, ids=DTYPE_IDS)
@settings(max_examples=40, deadline=None)
@given(pair=vector_pairs(any_values))
def test_pairwise_equals_recursive_halving(dtype, pair):
    x, y = pair
    value = dot(torch.tensor(x), torch.tensor(y), dtype, "pairwise").value
    products = [
        round_to_dtype(
            round_to_dtype(Fraction(a), dtype) * round_to_dtype(Fraction(b), dtype), dtype
        )
        for a, b in zip(x, y, strict=True)
    ]
    assert Fraction(value) == reference_pairwise(products, dtype)


@pytest.mark.parametrize("mode", ACCUMULATE_MODES)
@pytest.mark.parametrize("dtype", DOT_DTYPES, ids=DTYPE_IDS)
@settings(max_examples=30, deadline=None)
@given(pair=vector_pairs(normal_values))
def test_every_mode_stays_within_gamma_n(dtype, mode, pair):
    x, y = torch.tensor(pair[0]), torch.tensor(pair[1])
    n = x.numel()
    x_hat, y_hat = x.to(dtype).double(), y.to(dtype).double()
    value = dot(x, y, dtype, mode).value
    # Accumulation alone: vectors already in dtype, n roundings per term (Higham 2002, eq. 3.5).
    accumulation = abs(value - torch.dot(x_hat, y_hat).item())
    assert (
        accumulation <= deterministic_bound(n, dtype) * torch.dot(x_hat.abs(), y_hat.abs()).item()
    )
    # Total against the original inputs: two more roundings per term (x_k and y_k).
    total = abs(value - torch.dot(x.double(), y.double()).item())
    magnitude = torch.dot(x.double().abs(), y.double().abs()).item()
    assert total <= gamma(n + 2, unit_roundoff(dtype)) * magnitude


@pytest.mark.parametrize("n", [1, 2, 7, 100, 4096, 100_000], ids=lambda n: f"n={n}")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_native_is_float32_accumulation_rounded_once(dtype, n):
    generator = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, generator=generator), torch.randn(n, generator=generator)
    x_hat, y_hat = x.to(dtype), y.to(dtype)
    # Products of two 8- or 11-bit significands are exact in float32 (24 bits).
    float32_once = (x_hat.float() * y_hat.float()).sum().to(dtype)
    exact_once = (x_hat.double() * y_hat.double()).sum().float().to(dtype)
    assert dot(x, y, dtype).value == torch.dot(x_hat, y_hat).item()
    assert torch.dot(x_hat, y_hat) == float32_once == exact_once


def test_native_float32_is_torch_dot():
    x, y = torch.randn(2, 5000, generator=torch.Generator().manual_seed(3))
    assert dot(x, y, torch.float32).value == torch.dot(x, y).item()


def test_reference_is_the_exact_dot_product_in_float64():
    x, y = torch.randn(2, 1000, generator=torch.Generator().manual_seed(4))
    exact = math.fsum(a * b for a, b in zip(x.double().tolist(), y.double().tolist(), strict=True))
    # float64 summation of 1000 exact products: relative error within ~n eps64 of |x|.|y|.
    tolerance = 1000 * torch.finfo(torch.float64).eps * torch.dot(x.abs(), y.abs()).item()
    assert dot(x, y, torch.bfloat16).reference == pytest.approx(exact, abs=tolerance)


@pytest.mark.parametrize("mode", ACCUMULATE_MODES)
@pytest.mark.parametrize("dtype", DOT_DTYPES, ids=DTYPE_IDS)
def test_split_adds_up_to_the_total(dtype, mode):
    x, y = torch.randn(2, 1000, generator=torch.Generator().manual_seed(5))
    split = split_error(x, y, dtype, mode)
    assert split.total == pytest.approx(split.input_rounding + split.accumulation, abs=1e-12)
    assert abs(split.total) == pytest.approx(dot(x, y, dtype, mode).relative_error, rel=1e-9)
    if dtype == torch.float32:
        assert split.input_rounding == 0.0  # float32 inputs need no rounding to float32


def test_pairwise_sum_of_a_power_of_two_and_an_odd_length():
    assert pairwise_sum(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).item() == 15.0
    terms = torch.tensor([256.0, 0.75, 0.75, 0.75, 0.75], dtype=torch.bfloat16)
    assert pairwise_sum(terms).item() == 258.0
    with pytest.raises(TypeError, match="terms must be a real floating-point"):
        pairwise_sum(torch.arange(4))
    with pytest.raises(ValueError, match="terms must be a 1-D"):
        pairwise_sum(torch.ones(2, 2))
    with pytest.raises(ValueError, match="terms is empty"):
        pairwise_sum(torch.ones(0))
    with pytest.raises(ValueError, match="terms contains NaN"):
        pairwise_sum(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="overflows float32"):
        pairwise_sum(torch.full((4,), 3e38))


# --- bad input ---


BAD_INPUTS = {
    "mismatched-lengths": (torch.ones(3), torch.ones(4), ValueError, "same length"),
    "2-D": (torch.ones(2, 2), torch.ones(2, 2), ValueError, "1-D"),
    "integer": (torch.ones(3, dtype=torch.int32), torch.ones(3), TypeError, "floating-point"),
    "complex": (torch.ones(3, dtype=torch.complex64), torch.ones(3), TypeError, "floating-point"),
    "empty": (torch.ones(0), torch.ones(0), ValueError, "empty"),
    "nan": (torch.tensor([1.0, float("nan")]), torch.ones(2), ValueError, "x contains NaN or inf"),
    "inf": (torch.ones(2), torch.tensor([1.0, float("inf")]), ValueError, "y contains NaN or inf"),
    "list": ([1.0, 2.0], torch.ones(2), TypeError, "torch.Tensor"),
}


@pytest.mark.parametrize(("x", "y", "error", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_dot_rejects_bad_vectors(x, y, error, message):
    with pytest.raises(error, match=message):
        dot(x, y, torch.bfloat16)


def test_dot_rejects_unknown_mode_and_dtype():
    x = torch.ones(3)
    with pytest.raises(ValueError, match="accumulate must be one of"):
        dot(x, x, torch.bfloat16, "kahan")
    with pytest.raises(TypeError, match="dtype must be one of"):
        dot(x, x, torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="dtype must be one of"):
        dot(x, x, torch.int8)


def test_sequential_is_bounded_in_length():
    x = torch.ones(SEQUENTIAL_MAX_N + 1)
    with pytest.raises(ValueError, match="limited to"):
        dot(x, x, torch.bfloat16, "sequential")


# --- the experiment ---


def test_run_experiment_shapes_and_the_stall():
    curves = run_experiment([10, 100, 1000, 2000], draws=3, seed=0)
    assert len(curves.errors) == 3 * 2 * 3  # dtypes x distributions x modes
    errors = curves.errors[("bfloat16", "rand", "sequential")]
    assert errors.shape == (3, 4)
    # All-positive terms in bfloat16, accumulated one by one: the error grows with n...
    assert (errors[:, -1] > 10 * errors[:, 0]).all()
    # ...while float32 accumulation ("native") keeps it near u.
    native = curves.errors[("bfloat16", "rand", "native")]
    assert (native <= 2 * unit_roundoff(torch.bfloat16) + 1e-12).all()
    assert curves.condition["rand"].allclose(torch.ones(3, 4, dtype=torch.float64))


def test_run_experiment_bounds_sequential_and_marks_float16_overflow():
    lengths = [10, SEQUENTIAL_MAX_N, 300_000]
    curves = run_experiment(lengths, dtypes=(torch.float16,), distributions=("rand",), draws=2)
    assert curves.lengths[("float16", "rand", "sequential")] == [10, SEQUENTIAL_MAX_N]
    assert curves.lengths[("float16", "rand", "native")] == lengths
    # 300000 products of rand x rand sum to ~75000 > 65504: float16 overflows to inf.
    assert (curves.errors[("float16", "rand", "native")][:, -1] == math.inf).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lengths": []},
        {"lengths": [100, 10]},
        {"lengths": [10], "draws": 0},
        {"lengths": [10], "distributions": ("cauchy",)},
        {"lengths": [10], "dtypes": (torch.int8,)},
        {"lengths": [10], "distributions": "randn"},
        {"lengths": [10], "seed": -1},
        {"lengths": [0, 10]},
    ],
    ids=[
        "empty",
        "decreasing",
        "no-draws",
        "unknown-distribution",
        "integer-dtype",
        "bare-string",
        "negative-seed",
        "zero-length",
    ],
)
def test_run_experiment_rejects_bad_arguments(kwargs):
    with pytest.raises((ValueError, TypeError), match=r"lengths|draws|distributions|dtypes|seed"):
        run_experiment(**kwargs)


def test_growth_exponent_of_sqrt_and_linear_laws():
    lengths = [10, 100, 1000, 10_000]
    n = torch.tensor(lengths, dtype=torch.float64)
    assert growth_exponent(lengths, (1e-4 * n.sqrt())[None]) == pytest.approx(0.5)
    assert growth_exponent(lengths, (1e-6 * n)[None].repeat(3, 1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="errors contains NaN or inf"):
        growth_exponent(lengths, torch.full((1, 4), math.inf))
    with pytest.raises(ValueError, match="lengths must hold positive ints"):
        growth_exponent([0, 10, 100, 1000], torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"errors must be \(draws, len\(lengths\)\)"):
        growth_exponent(lengths, torch.ones(4))


@pytest.mark.parametrize("shape", [(64, 384, 64), (8, 1536, 8)], ids=["384", "1536"])
def test_bfloat16_linear_also_accumulates_in_float32(shape):
    # Lesson 3's models run nn.Linear in bfloat16: each output is a dot product of length k.
    m, k, n = shape
    generator = torch.Generator().manual_seed(k)
    a = torch.randn(m, k, generator=generator).to(torch.bfloat16)
    w = torch.randn(n, k, generator=generator).to(torch.bfloat16)
    by_torch = torch.nn.functional.linear(a, w).double()
    rounded_once = (a.double() @ w.double().T).float().to(torch.bfloat16).double()
    # A float32 accumulator can only tip a result lying near a midpoint: one bfloat16 step at
    # most, and rarely. A bfloat16 accumulator would be off by many steps in most outputs.
    steps = (by_torch - rounded_once).abs() / spacing_of(rounded_once, torch.bfloat16)
    assert steps.max() <= 1
    assert (steps > 0).float().mean() < 0.01


def spacing_of(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Gap between |value| and the next larger number of ``dtype`` (values already in dtype)."""
    following = torch.nextafter(values.abs().to(dtype), torch.tensor(math.inf, dtype=dtype))
    return following.double() - values.abs()


def test_error_curves_median_and_exponent():
    curves = run_experiment([10, 100, 1000], dtypes=(torch.bfloat16,), draws=3)
    key = ("bfloat16", "randn", "pairwise")
    assert curves.median_at(key, 100) == curves.errors[key][:, 1].median().item()
    assert curves.exponent(key, n_max=100) == growth_exponent([10, 100], curves.errors[key][:, :2])


# --- the functions behind the notebook's cells ---


def test_bfloat16_torch_dot_equals_rounding_once_for_the_lessons_vectors():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, generator=generator), torch.randn(1000, generator=generator)
    result = compare_with_rounding_once(x, y, torch.bfloat16)
    assert result.by_torch == result.float32_sum_rounded_once == result.exact_sum_rounded_once
    assert result.by_torch == -18.125
    with pytest.raises(TypeError, match="dtype must be torch.float16 or torch.bfloat16"):
        compare_with_rounding_once(x, y, torch.float32)


def test_linear_outputs_not_rounded_once_counts_the_differences():
    # Exact small integers: every sum is exact in float32, so no output can differ.
    inputs = torch.arange(12.0).reshape(3, 4)
    weight = torch.ones(2, 4)
    assert linear_outputs_not_rounded_once(inputs, weight) == 0
    generator = torch.Generator().manual_seed(384)
    a, w = torch.randn(64, 384, generator=generator), torch.randn(64, 384, generator=generator)
    assert linear_outputs_not_rounded_once(a, w) <= 0.01 * 64 * 64  # rare, as the tests above
    with pytest.raises(ValueError, match="features"):
        linear_outputs_not_rounded_once(torch.ones(2, 3), torch.ones(2, 4))


@pytest.mark.parametrize(
    ("sums", "value", "first_k"),
    [([1.0, 2.0, 2.0, 2.0], 2.0, 2), ([1.0, 2.0, 3.0], 3.0, 3), ([5.0, 5.0], 5.0, 1)],
    ids=["stalls", "never-stalls", "constant"],
)
def test_find_stall_textbook(sums, value, first_k):
    assert find_stall(torch.tensor(sums)) == Stall(value, first_k)


def test_find_stall_of_the_lessons_running_sum_is_after_its_last_change():
    r = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    sums = sequential_partial_sums(r, r, torch.bfloat16)
    stall = find_stall(sums)
    assert stall.value == 256.0
    assert (sums[stall.first_k - 1 :] == 256.0).all() and sums[stall.first_k - 2] != 256.0


def test_signed_errors_of_all_positive_sums_are_one_sided():
    errors = signed_errors_of_draws("rand", 200, torch.bfloat16, "sequential", draws=8)
    assert len(errors) == 8 and all(e < 0 for e in errors)
    x, y = torch.rand(2, 200, generator=torch.Generator().manual_seed(3))
    assert errors[3] == split_error(x, y, torch.bfloat16, "sequential").total
    with pytest.raises(ValueError, match="distribution"):
        signed_errors_of_draws("cauchy", 10, torch.bfloat16)


@pytest.fixture(scope="module")
def small_curves():
    # 300000 all-positive products sum to ~75000: beyond float16's 65504.
    return run_experiment([10, 100, 1000, 300_000], draws=3, seed=0)


def test_growth_exponent_table_matches_the_curves(small_curves):
    table = growth_exponent_table(small_curves, n_max=1000)
    assert list(table.columns) == ["native", "pairwise", "sequential"]
    assert list(table.index) == [
        (d, t) for d in ("randn", "rand") for t in ("float32", "float16", "bfloat16")
    ]
    key = ("bfloat16", "rand", "sequential")
    assert table.loc[("rand", "bfloat16"), "sequential"] == small_curves.exponent(key, 1000)
    hidden = growth_exponent_table(small_curves, n_max=1000, omit_cpu_dependent=True)
    assert hidden["native"].isna().tolist() == [True, False, False, True, False, False]


def test_median_error_table_and_first_overflow(small_curves):
    table = median_error_table(small_curves, torch.bfloat16, "rand", [10, 1000])
    key = ("bfloat16", "rand", "native")
    assert table.loc[1000, "native"] == small_curves.median_at(key, 1000)
    assert first_overflow_length(small_curves, ("float16", "rand", "native")) == 300_000
    assert first_overflow_length(small_curves, ("bfloat16", "rand", "native")) is None


def test_sums_rounded_once_explain_the_native_error(small_curves):
    table = sums_rounded_once(small_curves, "rand", 1000, torch.bfloat16)
    # The native mode's error is its one final rounding: input rounding and the float32
    # accumulator's error are far below bfloat16's spacing at these sums (~250).
    assert table["native_error"].tolist() == pytest.approx(table["error_once"].tolist())
    assert (table["spacing"] == 1.0).all()  # sums ~250: bfloat16 counts in steps of 1 there
    assert table["exact"].tolist() == small_curves.exact["rand"][:, 2].tolist()
