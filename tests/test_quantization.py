"""Tests of tutorlib.quantization: hand-computed cases, properties, and three references
(torch's quantized tensors, torch.ao's observers, optimum-quanto's int8 weights)."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optimum.quanto import freeze, qint8, quantize
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from tutorlib.quant.affine import (
    QuantizedTensor,
    fake_quantize,
    linear_dequantize,
    linear_quantize,
    quantize_tensor,
)
from tutorlib.quant.clipping import best_clipping, clipped_fake_quantize, clipping_sweep
from tutorlib.quant.error import db_per_bit, predicted_sqnr_db, quantization_error, sqnr_by_bits
from tutorlib.quant.offset import (
    OffsetParams,
    compare_forms,
    get_scale_and_offset,
    offset_dequantize,
    offset_fake_quantize,
    offset_quantize,
)
from tutorlib.quant.outliers import one_outlier
from tutorlib.quant.packing import pack_weights, unpack_weights
from tutorlib.quant.params import (
    SUPPORTED_BITS,
    QuantParams,
    get_scale_and_zero_point,
    integer_range,
)

EPS32 = torch.finfo(torch.float32).eps  # 2**-23


# ---------------------------------------------------------------- hand-computed cases


def test_affine_by_hand():
    # s = (3 - (-1)) / 255, z = 0 - round(-1 / s) = round(63.75) = 64
    r = torch.tensor([-1.0, 0.5, 3.0])
    params = get_scale_and_zero_point(r, bits=8)
    assert params.scale.item() == pytest.approx(4 / 255, rel=EPS32)
    assert params.zero_point.item() == 64
    # r / s = [-63.75, 31.875, 191.25] -> [-64, 32, 191] -> + 64 = [0, 96, 255]
    q = linear_quantize(r, params)
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 96, 255]
    r_hat = linear_dequantize(q, params)
    expected = [4 / 255 * (-64), 4 / 255 * 32, 4 / 255 * 191]
    assert r_hat.tolist() == pytest.approx(expected, rel=4 * EPS32)


def test_symmetric_by_hand():
    # s = 3 / 127; r / s = [-42.33, 21.17, 127] -> [-42, 21, 127]
    r = torch.tensor([-1.0, 0.5, 3.0])
    params = get_scale_and_zero_point(r, bits=8, symmetric=True)
    assert params.scale.item() == pytest.approx(3 / 127, rel=EPS32)
    assert params.zero_point.item() == 0
    q = linear_quantize(r, params)
    assert q.dtype == torch.int8
    assert q.tolist() == [-42, 21, 127]


def test_notes_min_max_form_by_hand():
    # s = 4 / 255, offset r_min = -1: (r + 1) / s = [0, 63.75, 255] -> q = [0, 64, 255]
    r = torch.tensor([-1.0, 0.0, 3.0])
    params = get_scale_and_offset(r, bits=8)
    assert params.offset.item() == -1.0
    q = offset_quantize(r, params)
    assert q.tolist() == [0, 64, 255]
    r_hat = offset_dequantize(q, params)
    # real 0 comes back a quarter step off: 64 * s - 1 = s / 4
    assert r_hat[1].item() == pytest.approx(4 / 255 / 4, rel=1e-4)
    assert r_hat[1].item() != 0.0


def test_offset_fake_quantize_is_the_three_calls():
    r = torch.tensor([-1.0, 0.0, 3.0])
    params = get_scale_and_offset(r, bits=8)
    expected = offset_dequantize(offset_quantize(r, params), params)
    assert torch.equal(offset_fake_quantize(r, bits=8), expected)


def test_notes_form_equals_affine_form_with_a_float_zero_point():
    torch.manual_seed(0)
    r = torch.randn(1000)
    params = get_scale_and_offset(r, bits=4)
    q = offset_quantize(r, params)
    # (r - r_min) / s rounded, computed in float64 from the same float32 scale and offset
    expected = torch.round((r.double() - params.offset.double()) / params.scale.double()).clamp(
        0, 15
    )
    assert torch.equal(q.long(), expected.long())


def test_per_channel_by_hand():
    weight = torch.tensor([[0.5, -1.27, 0.1], [2.0, 1.0, 0.0]])  # (out=2, in=3)
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    assert params.scale.shape == (2, 1)  # one scale per output channel, broadcasting
    assert params.scale.flatten().tolist() == pytest.approx([1.27 / 127, 2.0 / 127], rel=EPS32)
    q = linear_quantize(weight, params)
    assert q.tolist() == [[50, -127, 10], [127, 64, 0]]  # 1.0 / (2 / 127) = 63.5 -> 64 (even)


@pytest.mark.parametrize(
    ("dim", "group_size", "shape"),
    [
        (None, None, ()),
        (0, None, (6, 1)),
        (1, None, (1, 8)),
        (-1, None, (1, 8)),
        (None, 4, (6, 2, 1)),
    ],
    ids=["per-tensor", "per-channel-dim0", "per-channel-dim1", "per-channel-dim-1", "per-group"],
)
def test_scale_shapes(dim, group_size, shape):
    r = torch.randn(6, 8)
    params = get_scale_and_zero_point(r, bits=4, dim=dim, group_size=group_size)
    assert params.scale.shape == shape
    assert params.zero_point.shape == shape
    assert params.zero_point.dtype == torch.int32
    q = linear_quantize(r, params)
    assert q.shape == r.shape


@pytest.mark.parametrize(
    ("bits", "symmetric", "expected"),
    [(2, False, (0, 3)), (2, True, (-1, 1)), (4, False, (0, 15)), (4, True, (-7, 7)),
     (8, False, (0, 255)), (8, True, (-127, 127)), (16, False, (0, 65535)),
     (16, True, (-32767, 32767))],
    ids=["u2", "s2", "u4", "s4", "u8", "s8", "u16", "s16"],
)  # fmt: skip
def test_integer_range(bits, symmetric, expected):
    assert integer_range(bits, symmetric) == expected


@pytest.mark.parametrize(
    ("bits", "symmetric", "dtype"),
    [(8, False, torch.uint8), (8, True, torch.int8), (4, False, torch.int32),
     (4, True, torch.int32), (16, False, torch.int32), (16, True, torch.int32)],
    ids=["u8", "s8", "u4", "s4", "u16", "s16"],
)  # fmt: skip
def test_integer_dtype(bits, symmetric, dtype):
    r = torch.linspace(-1, 2, 50)
    params = get_scale_and_zero_point(r, bits=bits, symmetric=symmetric)
    assert linear_quantize(r, params).dtype == dtype


# ---------------------------------------------------------------- granularity by reshapes


def test_per_channel_equals_per_tensor_on_each_row():
    torch.manual_seed(1)
    weight = torch.randn(5, 16) * torch.logspace(-2, 1, 5).unsqueeze(1)
    params = get_scale_and_zero_point(weight, bits=4, dim=0)
    q = linear_quantize(weight, params)
    for row in range(5):
        params_s = get_scale_and_zero_point(weight[row], bits=4)
        assert torch.equal(params.scale[row, 0], params_s.scale)
        assert torch.equal(q[row], linear_quantize(weight[row], params_s))


def test_per_group_equals_per_tensor_on_each_group():
    torch.manual_seed(2)
    r = torch.randn(3, 12)
    params = get_scale_and_zero_point(r, bits=3, symmetric=True, group_size=4)
    q = linear_quantize(r, params)
    r_hat = linear_dequantize(q, params)
    for row in range(3):
        for g in range(3):
            chunk = r[row, 4 * g : 4 * g + 4]
            params_s = get_scale_and_zero_point(chunk, bits=3, symmetric=True)
            q_chunk = linear_quantize(chunk, params_s)
            assert torch.equal(q[row, 4 * g : 4 * g + 4], q_chunk)
            assert torch.equal(r_hat[row, 4 * g : 4 * g + 4], linear_dequantize(q_chunk, params_s))


def test_finer_granularity_lowers_the_error():
    torch.manual_seed(3)
    weight = torch.randn(32, 256) * torch.logspace(-2, 0, 32).unsqueeze(1)
    errors = [
        quantization_error(weight, fake_quantize(weight, 4, True, dim, g)).mse
        for dim, g in [(None, None), (0, None), (None, 32)]
    ]
    assert errors[0] > errors[1] > errors[2]


# ---------------------------------------------------------------- references: torch, torch.ao


def _near_tie(r: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elements whose r / s lies within float32 rounding of a half-integer (a rounding tie).

    torch's CPU kernel computes nearbyint(fma(r, 1 / s, z)) in float32: it multiplies by the
    rounded reciprocal and adds z before rounding, so within a few ulps of a tie the two
    computations may round to neighbours. 256 ulps of |r / s| + z is far wider than needed and
    still excludes all but about 1e-4 of random values.
    """
    x = (r.double() / scale.double()).abs()
    distance_to_tie = (x - x.floor() - 0.5).abs()
    return distance_to_tie <= 256 * EPS32 * (x + 256)


@pytest.mark.parametrize(
    ("symmetric", "dim", "torch_dtype"),
    [(False, None, torch.quint8), (True, None, torch.qint8), (False, 0, torch.quint8),
     (True, 0, torch.qint8), (False, 1, torch.quint8)],
    ids=["asym-per-tensor", "sym-per-tensor", "asym-per-channel", "sym-per-channel",
         "asym-per-column"],
)  # fmt: skip
def test_same_integers_as_torch_quantized_tensors(symmetric, dim, torch_dtype):
    torch.manual_seed(4)
    r = torch.randn(128, 256) * 0.1 + 0.02
    params = get_scale_and_zero_point(r, bits=8, symmetric=symmetric, dim=dim)
    q = linear_quantize(r, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch 2.13 deprecates quantized dtypes
        if dim is None:
            ref = torch.quantize_per_tensor(
                r, params.scale.item(), params.zero_point.item(), torch_dtype
            )
        else:
            ref = torch.quantize_per_channel(
                r,
                params.scale.flatten().double(),
                params.zero_point.flatten().long(),
                dim,
                torch_dtype,
            )
        ref_q = ref.int_repr()
    differ = q.int() != ref_q.int()
    assert (q.int() - ref_q.int()).abs().max() <= 1
    assert not (differ & ~_near_tie(r, params.scale)).any()  # ties aside, identical integers
    assert differ.sum() <= 0.001 * r.numel()


def test_torch_rounds_after_adding_the_zero_point():
    # An exact tie: r / s = -34.5 with s = 0.5 (a power of two, so every step is exact).
    # tutorlib: round(-34.5) + 129 = -34 + 129 = 95 (half to even before adding z).
    # torch:    round(-34.5 + 129) = round(94.5) = 94 (half to even after adding z).
    # Round-half-to-even is not invariant under adding an odd integer, so the two differ by 1.
    r = torch.tensor([-17.25])
    params = QuantParams(torch.tensor(0.5), torch.tensor(129), bits=8, symmetric=False)
    assert linear_quantize(r, params).item() == 95
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch 2.13 deprecates quantized dtypes
        assert torch.quantize_per_tensor(r, 0.5, 129, torch.quint8).int_repr().item() == 94
    # With an even zero point, or no tie, the two agree.
    params_even = QuantParams(torch.tensor(0.5), torch.tensor(130), bits=8, symmetric=False)
    assert linear_quantize(r, params_even).item() == 96


@pytest.mark.parametrize("dim", [None, 0], ids=["per-tensor", "per-channel"])
def test_same_scale_and_zero_point_as_torch_ao_minmax_observer(dim):
    torch.manual_seed(5)
    r = torch.randn(16, 64) + 0.3
    if dim is None:
        observer = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    else:
        observer = PerChannelMinMaxObserver(
            ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine
        )
    observer(r)
    ref_scale, ref_zero_point = observer.calculate_qparams()
    params = get_scale_and_zero_point(r, bits=8, dim=dim)
    assert torch.equal(params.scale.flatten(), ref_scale)
    assert torch.equal(params.zero_point.flatten().long(), ref_zero_point.long())


# ---------------------------------------------------------------- reference: optimum-quanto


@pytest.mark.parametrize("shape", [(32, 64), (384, 1536)], ids=["small", "minilm-ffn"])
def test_same_int8_weights_and_scales_as_quanto(shape):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(shape[1], shape[0]))
    weight = model[0].weight.detach().clone()  # (out_features, in_features)
    quantize(model, weights=qint8)
    freeze(model)
    quanto_weight = model[0].weight
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    q = linear_quantize(weight, params)
    assert torch.equal(params.scale, quanto_weight._scale)  # absmax / 127, (out_features, 1)
    assert torch.equal(q, quanto_weight._data)  # int8, (out_features, in_features)


def test_bfloat16_weights_round_to_the_nearest_level_unlike_quanto():
    # quanto divides a bfloat16 weight by its bfloat16 scale in bfloat16: 8 significant bits
    # round w / s (up to 127) to a multiple of 0.5 before torch.round, so some integers land
    # one level off. tutorlib divides in float32: same scales, integers within one of quanto's,
    # and each one the nearest level of the float64 quotient.
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(64, 32)).to(torch.bfloat16)
    weight = model[0].weight.detach().clone()
    quantize(model, weights=qint8)
    freeze(model)
    theirs = model[0].weight._data
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    ours = linear_quantize(weight, params)
    assert torch.equal(params.scale, model[0].weight._scale)
    assert (ours.int() - theirs.int()).abs().max() == 1
    quotient = weight.double() / params.scale.double()  # exact: both are bfloat16 numbers
    assert ((ours.double() - quotient).abs() <= 0.5).all()  # the nearest level, always
    assert ((theirs.double() - quotient).abs() > 0.5).any()  # quanto's: not always


# ---------------------------------------------------------------- properties

finite_floats = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)
tensors = st.lists(finite_floats, min_size=1, max_size=64).map(torch.tensor)
forms = st.sampled_from([False, True])
bit_widths = st.sampled_from(SUPPORTED_BITS)


@settings(max_examples=200, deadline=None)
@given(r=tensors, bits=bit_widths, symmetric=forms)
def test_property_q_in_range_and_error_at_most_half_a_step(r, bits, symmetric):
    params = get_scale_and_zero_point(r, bits=bits, symmetric=symmetric)
    q = linear_quantize(r, params)
    q_min, q_max = integer_range(bits, symmetric)
    assert q.long().min() >= q_min and q.long().max() <= q_max
    r_hat = linear_dequantize(q, params)
    # Every r lies inside the range, so only rounding errs: at most s / 2, plus float32
    # rounding in s, r / s and s * (q - z). Each of those errs by at most eps/2 relative to a
    # quantity no larger than the range width s * (q_max - q_min); 4 eps of it covers them.
    s = params.scale.double()
    tolerance = s / 2 + 4 * EPS32 * s * (q_max - q_min)
    assert ((r.double() - r_hat.double()).abs() <= tolerance).all()


@settings(max_examples=200, deadline=None)
@given(r=tensors, bits=bit_widths, symmetric=forms)
def test_property_quantize_of_dequantize_gives_q_back(r, bits, symmetric):
    params = get_scale_and_zero_point(r, bits=bits, symmetric=symmetric)
    q = linear_quantize(r, params)
    r_hat = linear_dequantize(q, params)
    assert torch.equal(linear_quantize(r_hat, params), q)


@settings(max_examples=200, deadline=None)
@given(r=tensors, bits=bit_widths, symmetric=forms)
def test_property_zero_is_exact_in_the_zero_point_form(r, bits, symmetric):
    r = torch.cat([r.abs() + 1.0, torch.zeros(1)])  # one-sided data, plus one exact zero
    r_hat = fake_quantize(r, bits=bits, symmetric=symmetric)
    assert r_hat[-1].item() == 0.0


@settings(max_examples=100, deadline=None)
@given(r=tensors, bits=bit_widths)
def test_property_notes_form_error_at_most_half_a_step(r, bits):
    params = get_scale_and_offset(r, bits=bits)
    q = offset_quantize(r, params)
    r_hat = offset_dequantize(q, params)
    q_max = integer_range(bits, symmetric=False)[1]
    s = params.scale.double()
    # as above, plus the float32 subtraction r - r_min and addition s * q + r_min
    tolerance = s / 2 + 4 * EPS32 * (s * q_max + params.offset.double().abs())
    assert ((r.double() - r_hat.double()).abs() <= tolerance).all()


# ---------------------------------------------------------------- constant and zero tensors


@pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
def test_all_zero_tensor_gets_the_eps_scale(symmetric):
    r = torch.zeros(4)
    params = get_scale_and_zero_point(r, bits=8, symmetric=symmetric)
    assert params.scale.item() == EPS32  # torch.ao's floor, instead of 0 / 0
    r_hat = linear_dequantize(linear_quantize(r, params), params)
    assert torch.equal(r_hat, r)


@pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
def test_constant_tensor_comes_back(symmetric):
    # the range is widened to [0, 2.5], so 2.5 sits on the last grid level
    r = torch.full((3,), 2.5)
    r_hat = fake_quantize(r, bits=8, symmetric=symmetric)
    assert torch.isfinite(r_hat).all()
    assert r_hat.tolist() == pytest.approx(r.tolist(), rel=2 * EPS32)


def test_constant_tensor_in_the_notes_form():
    r = torch.full((3,), -0.7)  # r_max == r_min: s would be 0 / 255
    params = get_scale_and_offset(r)
    assert params.scale.item() == EPS32
    q = offset_quantize(r, params)
    assert q.tolist() == [0, 0, 0]
    assert torch.equal(offset_dequantize(q, params), r)


# ---------------------------------------------------------------- bad input

bad_inputs = {
    "nan": (lambda: get_scale_and_zero_point(torch.tensor([1.0, math.nan])), ValueError, "NaN"),
    "inf": (lambda: get_scale_and_zero_point(torch.tensor([1.0, math.inf])), ValueError, "inf"),
    "empty": (lambda: get_scale_and_zero_point(torch.tensor([])), ValueError, "empty"),
    "integer": (lambda: get_scale_and_zero_point(torch.arange(4)), TypeError, "float"),
    "list": (lambda: get_scale_and_zero_point([1.0, 2.0]), TypeError, "torch.Tensor"),
    "bits-1": (lambda: get_scale_and_zero_point(torch.ones(2), bits=1), ValueError, "bits"),
    "bits-9": (lambda: get_scale_and_zero_point(torch.ones(2), bits=9), ValueError, "bits"),
    "bits-32": (lambda: integer_range(32, False), ValueError, "bits"),
    "dim-2": (lambda: get_scale_and_zero_point(torch.ones(2, 3), dim=2), ValueError, "dim=2"),
    "dim--3": (lambda: get_scale_and_zero_point(torch.ones(2, 3), dim=-3), ValueError, "dim"),
    "group-3-of-8": (
        lambda: get_scale_and_zero_point(torch.ones(2, 8), group_size=3),
        ValueError,
        "divisor of 8",
    ),
    "group-0": (
        lambda: get_scale_and_zero_point(torch.ones(2, 8), group_size=0),
        ValueError,
        "positive",
    ),
    "dim-and-group": (
        lambda: get_scale_and_zero_point(torch.ones(2, 8), dim=0, group_size=4),
        ValueError,
        "not both",
    ),
    "offset-nan": (
        lambda: get_scale_and_offset(torch.tensor([math.nan])),
        ValueError,
        "NaN",
    ),
    "quantize-int": (
        lambda: linear_quantize(torch.arange(3), QuantParams(torch.tensor(1.0), 0, 8, False)),
        TypeError,
        "float",
    ),
    "dequantize-float": (
        lambda: linear_dequantize(torch.ones(3), QuantParams(torch.tensor(1.0), 0, 8, False)),
        TypeError,
        "integer",
    ),
    "error-shapes": (
        lambda: quantization_error(torch.ones(3), torch.ones(4)),
        ValueError,
        "same shape",
    ),
}


@pytest.mark.parametrize(("call", "error", "message"), bad_inputs.values(), ids=bad_inputs.keys())
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- quantization_error


def test_quantization_error_by_hand():
    # MSE = (0.1**2 + 0.1**2) / 2 = 0.01; SQNR = 10 log10(2 / 0.02) = 20 dB
    error = quantization_error(
        torch.tensor([1.0, -1.0], dtype=torch.float64),
        torch.tensor([0.9, -1.1], dtype=torch.float64),
    )
    assert error.mse == pytest.approx(0.01, rel=1e-12)
    assert error.sqnr_db == pytest.approx(20.0, rel=1e-12)
    assert quantization_error(torch.ones(3), torch.ones(3)).sqnr_db == math.inf


@pytest.mark.parametrize("bits", [4, 6, 8], ids=["4-bit", "6-bit", "8-bit"])
def test_sqnr_of_full_scale_uniform_data(bits):
    # Uniform data on the whole grid: signal power W**2 / 12 over noise step**2 / 12 with
    # W = (2**k - 1) step, so SQNR = 20 log10(2**k - 1), about 6.02 dB per bit (MT-001).
    r = torch.rand(200_000, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    r = 2 * r - 1
    error = quantization_error(r, fake_quantize(r, bits=bits))
    assert error.sqnr_db == pytest.approx(20 * math.log10(2**bits - 1), abs=0.1)


# ---------------------------------------------------------------- the forms side by side


def test_compare_forms_by_hand():
    # s = 4 / 255 in the notes' form: 0 -> q = round(63.75) = 64 -> 64 s - 1 = s / 4
    forms = compare_forms(torch.tensor([-1.0, 0.0, 3.0]), bits=8)
    assert list(forms) == ["notes' min-max", "zero point", "symmetric"]
    assert forms["notes' min-max"].zero_comes_back_as == pytest.approx(1 / 255, rel=1e-4)
    assert forms["notes' min-max"].zeros_kept == 0.0
    for name in ("zero point", "symmetric"):
        assert forms[name].zero_comes_back_as == 0.0
        assert forms[name].zeros_kept == 1.0
    r = torch.tensor([-1.0, 0.0, 3.0])
    expected = quantization_error(r, fake_quantize(r, bits=8)).sqnr_db
    assert forms["zero point"].sqnr_db == expected


def test_compare_forms_without_zeros():
    forms = compare_forms(torch.tensor([1.0, 2.0]), bits=4)
    assert all(
        math.isnan(f.zeros_kept) and math.isnan(f.zero_comes_back_as) for f in forms.values()
    )


# ---------------------------------------------------------------- clipping


def test_clipped_fake_quantize_by_hand():
    # threshold 1.27 at 8 bits: s = 0.01; 3.0 is clipped to 127 * s = 1.27
    r_hat = clipped_fake_quantize(torch.tensor([0.01, 0.5, 3.0]), 1.27, bits=8)
    assert r_hat.tolist() == pytest.approx([0.01, 0.5, 1.27], rel=4 * EPS32)
    with pytest.raises(ValueError, match="positive"):
        clipped_fake_quantize(torch.ones(2), 0.0)


def test_clipping_sweep_ends_at_no_clipping_and_finds_a_better_threshold():
    r = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    r[0] = 50.0
    thresholds, sqnr_db = clipping_sweep(r, bits=4, n_thresholds=50)
    assert thresholds[-1].item() == 50.0  # the last threshold is max|r|: no clipping
    no_clipping = quantization_error(r, fake_quantize(r, bits=4, symmetric=True)).sqnr_db
    assert sqnr_db[-1].item() == pytest.approx(no_clipping, abs=1e-6)
    assert sqnr_db.max() > sqnr_db[-1] + 2  # clipping the outlier pays at 4 bits


# ---------------------------------------------------------------- packing


@pytest.mark.parametrize(
    ("bits", "values", "byte"),
    [(2, [1, 0, 3, 2], 0b10_11_00_01), (4, [3, 10], 0b1010_0011)],
    ids=["2-bit", "4-bit"],
)
def test_pack_a_byte_by_hand(bits, values, byte):
    packed = pack_weights(torch.tensor(values, dtype=torch.uint8), bits)
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [byte]  # 177 and 163
    assert unpack_weights(packed, bits).tolist() == values


@settings(max_examples=100, deadline=None)
@given(bits=st.sampled_from([2, 4]), data=st.data())
def test_property_pack_unpack_round_trip(bits, data):
    rows = data.draw(st.integers(1, 4))
    columns = 8 // bits * data.draw(st.integers(1, 8))
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=rows * columns,
                                max_size=rows * columns))  # fmt: skip
    q = torch.tensor(values, dtype=torch.uint8).reshape(rows, columns)
    packed = pack_weights(q, bits)
    assert packed.shape == (rows, columns * bits // 8)
    assert torch.equal(unpack_weights(packed, bits), q)


def test_packing_4bit_quantized_weights_halves_their_bytes():
    weight = torch.randn(8, 16)
    params = get_scale_and_zero_point(weight, bits=4, group_size=8)
    q = linear_quantize(weight, params)  # int32 in [0, 15]
    packed = pack_weights(q, 4)
    assert packed.numel() == weight.numel() // 2
    assert torch.equal(unpack_weights(packed, 4).int(), q)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: pack_weights(torch.tensor([4, 0, 0, 0]), 2), ValueError),
        (lambda: pack_weights(torch.tensor([-1, 0]), 4), ValueError),
        (lambda: pack_weights(torch.tensor([1, 0, 1]), 2), ValueError),
        (lambda: pack_weights(torch.tensor([1.0, 0.0]), 4), TypeError),
        (lambda: pack_weights(torch.tensor([1, 0]), 3), ValueError),
        (lambda: unpack_weights(torch.tensor([1, 0]), 4), TypeError),
    ],
    ids=["too-big", "negative", "not-a-multiple", "float", "3-bit", "unpack-int64"],
)
def test_packing_bad_input(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- parameters travel together


def test_params_cannot_be_unpacked_into_loose_pieces():
    # The old trap: s, z = get_scale_and_zero_point(w, symmetric=True) then
    # linear_quantize(w, s, z) with the asymmetric default range clamped every negative to 0.
    weight = torch.randn(4, 8)
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    with pytest.raises(TypeError, match="pass it whole"):
        s, z = params
    with pytest.raises(TypeError, match="QuantParams"):
        linear_quantize(weight, params.scale)  # the scale alone is not enough


def test_symmetric_params_keep_negative_weights():
    torch.manual_seed(0)
    weight = torch.randn(16, 32)
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    r_hat = linear_dequantize(linear_quantize(weight, params), params)
    # every error is at most half a step of its row (plus float32 rounding of s * q)
    assert ((weight - r_hat).abs() <= params.scale / 2 * (1 + 4 * EPS32)).all()


@pytest.mark.parametrize(
    ("scale", "zero_point", "bits", "symmetric", "error", "match"),
    [
        (torch.tensor(0.0), 0, 8, False, ValueError, "positive"),
        (torch.tensor(-0.1), 0, 8, False, ValueError, "positive"),
        (torch.tensor(math.nan), 0, 8, False, ValueError, "NaN"),
        (torch.tensor(0.1), torch.tensor(3.7), 8, False, ValueError, "whole numbers"),
        (torch.tensor(0.1), 300, 8, False, ValueError, r"\[0, 255\]"),
        (torch.tensor(0.1), 3, 8, True, ValueError, "symmetric"),
        (torch.tensor(0.1), 0, 9, False, ValueError, "bits"),
        (torch.tensor([0.1, 0.2]), torch.tensor([1]), 8, False, ValueError, "one zero point"),
        (0.1, 0, 8, False, TypeError, "scale must be a torch.Tensor"),
        (torch.tensor(1), 0, 8, False, TypeError, "scale must be a real floating-point"),
        (torch.tensor(0.1), 0, 8, "yes", TypeError, "symmetric must be True or False"),
    ],
    ids=["zero", "negative", "nan", "fractional-z", "z-out-of-range", "symmetric-z",
         "bits-9", "shapes", "float-scale", "int-scale", "string-symmetric"],
)  # fmt: skip
def test_params_are_checked_when_made(scale, zero_point, bits, symmetric, error, match):
    with pytest.raises(error, match=match):
        QuantParams(scale, zero_point, bits, symmetric)


def test_params_of_another_shape_are_refused():
    params = get_scale_and_zero_point(torch.randn(4, 8), bits=4, dim=0)  # scale (4, 1)
    with pytest.raises(ValueError, match="needs"):
        linear_quantize(torch.randn(5, 8), params)
    with pytest.raises(ValueError, match="divisor"):
        grouped = get_scale_and_zero_point(torch.randn(4, 8), bits=4, group_size=4)
        linear_quantize(torch.randn(4, 6), grouped)


def test_quantized_tensor_round_trip():
    r = torch.tensor([-1.0, 0.5, 3.0])
    quantized = quantize_tensor(r)
    assert quantized.q.tolist() == [0, 96, 255]
    assert torch.equal(quantized.dequantize(), fake_quantize(r))
    with pytest.raises(TypeError, match="integer"):
        QuantizedTensor(r, quantized.params)


# ---------------------------------------------------------------- extreme ranges


@pytest.mark.parametrize(
    ("values", "dtype"),
    [((-3e38, 3e38), torch.float32), ((-6e4, 6e4), torch.float16), ((-3e38, 3e38), torch.bfloat16)],
    ids=["float32", "float16", "bfloat16"],
)
@pytest.mark.parametrize("symmetric", [False, True], ids=["affine", "symmetric"])
def test_extreme_ranges_do_not_overflow(values, dtype, symmetric):
    r = torch.tensor([values[0], 0.0, values[1]], dtype=dtype)
    r_hat = fake_quantize(r, bits=8, symmetric=symmetric)
    assert torch.isfinite(r_hat).all()
    # each value within half a step, s = range / 255 (or absmax / 127), plus the dtype's rounding
    step = (values[1] - values[0]) / 255 if not symmetric else values[1] / 127
    eps = torch.finfo(dtype).eps
    assert ((r.double() - r_hat.double()).abs() <= step / 2 + 2 * eps * abs(values[1])).all()
    assert torch.isfinite(offset_fake_quantize(r, bits=8)).all()


def test_sixteen_bits_asymmetric_in_float16():
    r = torch.linspace(-2, 3, 101, dtype=torch.float16)
    r_hat = fake_quantize(r, bits=16)
    step = 5 / 65535
    # half a step plus float16's rounding of the result (u = 2**-11 relative)
    assert ((r.double() - r_hat.double()).abs() <= step / 2 + 3 * 2**-11).all()


def test_quantization_error_of_huge_float64_values():
    r = torch.tensor([1e200, -1e200], dtype=torch.float64)
    result = quantization_error(r, r * 1.1)
    assert result.sqnr_db == pytest.approx(20.0, abs=1e-9)  # 10 log10(1 / 0.01)


# ---------------------------------------------------------------- predicting the error


def test_predicted_sqnr_by_hand():
    r = torch.tensor([-1.0, 0.5, 3.0])
    params = get_scale_and_zero_point(r, bits=8)  # s = 4 / 255
    want = 10 * math.log10((10.25 / 3) * 12 / (4 / 255) ** 2)  # 52.22 dB
    assert predicted_sqnr_db(r, params) == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(52.2174, abs=1e-4)


def test_predicted_sqnr_averages_the_steps_of_every_channel():
    r = torch.tensor([[1.0, -1.0], [4.0, -4.0]])
    params = get_scale_and_zero_point(r, bits=8, symmetric=True, dim=0)  # s = 1/127, 4/127
    noise = ((1 / 127) ** 2 + (4 / 127) ** 2) / 2 / 12  # mean of s**2 / 12 over the 4 values
    want = 10 * math.log10((1 + 1 + 16 + 16) / 4 / noise)
    assert predicted_sqnr_db(r, params) == pytest.approx(want, rel=1e-6)


def test_predicted_sqnr_matches_a_measured_uniform_tensor():
    # many values spread evenly over the grid: the rounding errors are uniform, as the model says
    r = torch.rand(200_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    params = get_scale_and_zero_point(r, bits=8)
    measured = quantization_error(r, linear_dequantize(linear_quantize(r, params), params))
    assert predicted_sqnr_db(r, params) == pytest.approx(measured.sqnr_db, abs=0.05)


def test_sqnr_by_bits_columns_and_values():
    r = torch.tensor([[-1.0, 0.5, 3.0, 2.0], [0.25, -0.75, 1.5, -2.0]])
    table = sqnr_by_bits(r, [4, 8], group_size=2)
    assert list(table.columns) == ["per-tensor", "per-channel", "per-group (2)"]
    assert list(table.index) == [4, 8] and table.index.name == "bits"
    want = quantization_error(r, fake_quantize(r, 8, dim=0)).sqnr_db
    assert table.loc[8, "per-channel"] == want
    assert table.loc[8].round(2).tolist() == [49.44, 51.22, 58.11]  # the docstring's example
    predicted = sqnr_by_bits(r, [8], group_size=2, predicted=True)
    assert predicted.loc[8, "per-tensor"] == predicted_sqnr_db(r, get_scale_and_zero_point(r, 8))


def test_sqnr_by_bits_refuses_bad_bit_widths():
    r = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bits"):
        sqnr_by_bits(r, [4, 9])
    with pytest.raises(ValueError, match="bits"):
        sqnr_by_bits(r, [])
    with pytest.raises(ValueError, match="group_size"):
        sqnr_by_bits(r, [8], group_size=3)


def test_db_per_bit_by_hand_and_the_step_rule():
    table = pd.DataFrame({"a": [1.0, 10.0, 16.0, 22.0]}, index=[3, 4, 5, 6])
    assert db_per_bit(table)["a"] == pytest.approx(6.0)  # 3 bits left out of the fit
    # s = range / (2**k - 1): each bit shrinks s by slightly more than half, so the predicted
    # per-tensor SQNR climbs by 6.15 dB per bit from 4 to 8 bits, not 6.02
    r = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    predicted = sqnr_by_bits(r, range(4, 9), group_size=8, predicted=True)
    want = np.polyfit(range(4, 9), [20 * math.log10(2**k - 1) for k in range(4, 9)], 1)[0]
    assert db_per_bit(predicted)["per-tensor"] == pytest.approx(want, abs=1e-6)  # float32 s
    assert want == pytest.approx(6.147, abs=1e-3)
    with pytest.raises(ValueError, match="min_bits"):
        db_per_bit(table, min_bits=6)


def test_best_clipping_of_one_far_outlier():
    g = torch.Generator().manual_seed(0)
    r = torch.cat([torch.randn(4096, generator=g), torch.tensor([50.0])])
    choice = best_clipping(r, bits=4)  # the docstring's example
    thresholds, sqnr = clipping_sweep(r, bits=4)
    assert choice.sqnr_db == sqnr.max().item()
    assert choice.threshold == thresholds[sqnr.argmax()].item() == pytest.approx(7.0)
    assert choice.fraction_of_max == pytest.approx(0.14)
    assert choice.sqnr_db_unclipped == sqnr[-1].item()
    assert choice.n_clipped == 1  # only the outlier exceeds 7


def test_clipping_sweep_of_constants_and_zeros():
    _, sqnr = clipping_sweep(torch.full((4,), 0.75), bits=8, n_thresholds=4)
    assert sqnr[-1] == math.inf  # c = 0.75 = max: every value on a level
    assert torch.isfinite(sqnr[:-1]).all()
    thresholds, sqnr = clipping_sweep(torch.zeros(3), bits=8, n_thresholds=2)
    assert thresholds.tolist() == [0.0, 0.0] and sqnr.tolist() == [math.inf, math.inf]


def test_one_outlier_costs_20_db_per_tensor_and_per_channel_recovers():
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(2)) * 0.05
    result = one_outlier(w, factor=10.0, bits=8)
    sqnr = result.sqnr_others_db
    drop = sqnr["no outlier, per-tensor"] - sqnr["outlier, per-tensor"]
    assert drop == pytest.approx(20.0, abs=0.5)  # a ten times larger step: -20 dB
    assert sqnr["outlier, per-channel"] > sqnr["outlier, per-tensor"] + 15  # only row 0 suffers
    assert sqnr["outlier, per-tensor, clipped"] > sqnr["outlier, per-tensor"]
    assert result.outlier_kept == pytest.approx(result.clipping.fraction_of_max, rel=1e-5)
    assert result.clipping.n_clipped >= 1
    with pytest.raises(ValueError, match="factor"):
        one_outlier(torch.full((2,), 3e38), factor=10.0)


def test_float16_grids_stay_finite_and_within_half_a_step():
    # 2 bits over [-4e4, 6e4]: s = 33344 (float16), level 2 * s = 66688 > 65504 saturates
    r = torch.tensor([-40000.0, 10000.0, 60000.0], dtype=torch.float16)
    r_hat = fake_quantize(r, bits=2)
    assert torch.isfinite(r_hat).all()
    assert r_hat[2].item() == torch.finfo(torch.float16).max
    # 8 bits: float32 arithmetic keeps 10000 / s = 25.49 below the tie (float16 makes it 25.5)
    r = torch.tensor([-40000.0, -20000.0, 10000.0, 60000.0], dtype=torch.float16)
    params = get_scale_and_zero_point(r, bits=8)  # s = 392.25, z = 102
    r_hat = fake_quantize(r, bits=8)
    assert r_hat[2].item() == 9808.0  # level 25: 25 * 392.25 = 9806.25, in float16 9808
    # half a step, plus float16's rounding of the result (u = 2**-11 relative)
    bound = params.scale.item() / 2 + 2**-11 * 60000
    assert (r_hat.double() - r.double()).abs().max().item() <= bound


# ---------------------------------------------------------------- parameters own their data


def test_params_keep_their_own_copy_of_the_tensors_they_were_given() -> None:
    scale, zero_point = torch.tensor([[0.5], [0.25]]), torch.tensor([[3], [4]])  # (2, 1)
    params = QuantParams(scale, zero_point, bits=4, symmetric=False, dim=0)
    scale.zero_()  # the caller's tensors change after construction ...
    zero_point.fill_(99)
    r = torch.tensor([[1.0], [1.0]])
    # ... and the grid does not: q = round(1 / s) + z
    assert linear_quantize(r, params).flatten().tolist() == [5, 8]
    offset = OffsetParams(torch.tensor(0.1), torch.tensor(-1.0), bits=8)
    assert offset.scale.item() == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("q", "bits", "symmetric"),
    [([1000], 8, True), ([300], 8, False), ([-3], 8, False), ([20], 4, False), ([-8], 4, True)],
    ids=["1000-int8", "300-uint8", "-3-unsigned", "20-on-4-bits", "-8-symmetric-4-bits"],
)
def test_integers_outside_the_grid_are_refused_where_they_enter(
    q: list[int], bits: int, symmetric: bool
) -> None:
    params = QuantParams(torch.tensor(0.1), 0 if symmetric else 1, bits, symmetric)
    integers = torch.tensor(q, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"q must lie in \["):
        QuantizedTensor(integers, params)
    with pytest.raises(ValueError, match=r"q must lie in \["):
        linear_dequantize(integers, params)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dim": "0"}, TypeError),
        ({"dim": -1}, ValueError),
        ({"dim": 1.5}, TypeError),
        ({"group_size": 0}, ValueError),
        ({"group_size": 2.5}, TypeError),
    ],
    ids=["dim-str", "dim-negative", "dim-float", "group-0", "group-float"],
)
def test_offset_params_refuse_bad_axes_and_groups(kwargs: dict, error: type) -> None:
    with pytest.raises(error, match="dim|group_size"):
        OffsetParams(torch.tensor(0.1), torch.tensor(0.0), bits=8, **kwargs)


def test_numpy_integers_are_accepted_as_bits() -> None:
    params = QuantParams(torch.tensor(0.5), 0, bits=np.int64(8), symmetric=True)
    assert params.bits == 8 and type(params.bits) is int
    with pytest.raises(ValueError, match="bits must be one of"):
        QuantParams(torch.tensor(0.5), 0, bits=np.int64(9), symmetric=True)


def test_rows_of_a_per_group_tensor_keep_their_own_grids():
    # Rows 1 and 2 of a per-group tensor: the same integers, scales and zero points as quantizing
    # those rows alone (every grid is one row's), and the same values back.
    from tutorlib.quant.rtn import rtn_quantize

    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    whole, alone = rtn_quantize(weight, 4, 4), rtn_quantize(weight[1:3], 4, 4)
    part = whole.rows(1, 3)
    assert torch.equal(part.q, alone.q)
    assert torch.equal(part.params.scale, alone.params.scale)
    assert torch.equal(part.dequantize(), whole.dequantize()[1:3])
    with pytest.raises(ValueError, match="start < end"):
        whole.rows(2, 2)
    with pytest.raises(ValueError, match="per row"):
        quantize_tensor(weight).rows(0, 1)  # one scale for the whole tensor: no rows to split
