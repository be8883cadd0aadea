"""Tests of W8A8Linear (Lesson 5): int8 weights, per-token int8 activations, a packed matmul."""

import copy
import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.profiler import ProfilerActivity, profile

from tutorlib.layers.int8_kernel import Int8Kernel, select_int8_kernel, trial_runs
from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.layers.w8a8_context import W8A8Context
from tutorlib.layers.w8a16 import W8A16Linear
from tutorlib.quant.affine import linear_quantize
from tutorlib.quant.params import get_scale_and_zero_point

EPS32 = torch.finfo(torch.float32).eps  # 2**-23, spacing of float32 just above 1
# The activation grid the layer runs on this CPU: 8 bits (q_max 127) where u8 x s8 sums are
# exact (VNNI, AMX), 7 bits (q_max 63) where int16 pairs saturate (tutorlib.int8_kernel).
KERNEL = select_int8_kernel()
BITS, Q_MAX = KERNEL.activation_bits, KERNEL.q_max
# 8-bit activations with the integer sums in float64: exact on every CPU (slow), for the
# hand-computed 8-bit example whatever this CPU's kernel is.
EXACT_8_BIT = Int8Kernel(8, False, False, "", "float64 sums, for a test")


def _linear(in_features: int, out_features: int, seed: int = 0, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


def _generic_quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lesson 4 path: per-row (dim=0) symmetric scale on the layer's grid, then the one
    quantize formula."""
    params = get_scale_and_zero_point(rows, bits=BITS, symmetric=True, dim=0)
    return linear_quantize(rows, params), params.scale


# ---------------------------------------------------------------- a case by hand


def test_hand_computed_example() -> None:
    # The docstring's example: x = [0.5, -1.27, 0.1] -> s_x = 1.27 / 127 = 0.01,
    # x_q = [50, -127, 10]; W = [2.54, 0, -2.54] -> s_w = 0.02, W_q = [127, 0, -127];
    # acc = 50 * 127 - 10 * 127 = 5080; y = 0.01 * 0.02 * 5080 = 1.016.
    linear = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[2.54, 0.0, -2.54]]))
    layer = W8A8Linear.from_linear(linear)
    layer.kernel = EXACT_8_BIT
    x = torch.tensor([[0.5, -1.27, 0.1]])
    x_q, x_scale = layer.quantize_activations(x)
    assert x_q.tolist() == [[50, -127, 10]]
    assert x_scale.item() == pytest.approx(0.01, rel=EPS32)
    assert layer.int8_weight.tolist() == [[127, 0, -127]]
    assert layer.scales.item() == pytest.approx(0.02, rel=EPS32)
    assert layer(x).item() == pytest.approx(1.016, rel=8 * EPS32)
    # forward is exactly its three steps: quantize, integer product (times s_w), rescale
    y_w = layer.integer_matmul(x_q)
    assert y_w.item() == pytest.approx(0.02 * 5080, rel=EPS32)
    assert torch.equal(layer.rescale(y_w, x_scale), layer(x))


def test_int_mm_at_the_extremes_is_exact_where_the_self_test_says() -> None:
    # Every product at +-127 * 127: the int32 sums reach 4096 * 16129 = 66,064,384. Whether
    # torch._int_mm sums them exactly depends on the CPU (it may add 128 to one operand and use
    # a saturating int16 pair adder); the kernel self-test must have said the same.
    k = 4096
    a = torch.full((3, k), 127, dtype=torch.int8)
    a[1] = -127
    b = torch.full((k, 5), 127, dtype=torch.int8)
    b[:, 2] = -127
    acc = torch._int_mm(a, b)
    reference = a.double() @ b.double()  # exact: all below 2**53
    assert acc.dtype == torch.int32
    int_mm = next(trial for trial in trial_runs() if trial.name == "torch._int_mm")
    assert torch.equal(acc.double(), reference) == int_mm.exact
    assert reference.abs().max().item() == k * 127 * 127


# ---------------------------------------------------------------- agreement with references


@pytest.mark.parametrize(
    ("in_features", "out_features", "leading"),
    [(384, 1536, (32, 22)), (1536, 384, (1, 18)), (7, 5, (3,)), (384, 384, ())],
    ids=["ffn-up-batch32", "ffn-down-batch1", "odd-sizes", "one-vector"],
)
def test_matches_float64_reference_of_the_same_quantized_computation(
    in_features: int, out_features: int, leading: tuple[int, ...]
) -> None:
    linear = _linear(in_features, out_features)
    layer = W8A8Linear.from_linear(linear)
    torch.manual_seed(1)
    x = torch.randn(*leading, in_features)
    rows = x.reshape(-1, in_features)
    x_q, x_scale = _generic_quantize_rows(rows)  # Lesson 4's functions, not the layer's path
    acc = x_q.double() @ layer.int8_weight.double().t()  # exact: integers below 2**53
    y_ref = acc * x_scale.double() * layer.scales.double() + linear.bias.double()
    y = layer(x).reshape(-1, out_features).double()
    # The layer rounds three times in float32 (int32 -> float, two products, one sum):
    # each step is within EPS32 / 2 relative, so 4 EPS32 of the terms' magnitudes bounds it.
    magnitude = (acc * x_scale.double() * layer.scales.double()).abs() + linear.bias.abs()
    assert torch.all((y - y_ref).abs() <= 4 * EPS32 * magnitude)
    assert layer(x).shape == (*leading, out_features)


@settings(max_examples=40, deadline=None)
@given(
    tokens=st.integers(0, 20),
    features=st.integers(1, 64),
    log_scale=st.floats(-30, 30),
    zero_row=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fast_activation_quantizer_equals_the_generic_one(
    tokens: int, features: int, log_scale: float, zero_row: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(tokens, features, generator=generator) * 10**log_scale
    if zero_row and tokens > 0:
        rows[0] = 0.0  # absmax 0: both paths floor the scale at eps and give q = 0
    x_q, x_scale = W8A8Linear.from_linear(_linear(features, 1)).quantize_activations(rows)
    if tokens == 0:
        assert x_q.shape == (0, features) and x_scale.shape == (0, 1)
        return
    q_ref, scale_ref = _generic_quantize_rows(rows)
    assert torch.equal(x_scale, scale_ref)
    assert torch.equal(x_q, q_ref)
    assert x_q.dtype == torch.int8


@pytest.mark.parametrize("tokens", [300, 341, 342, 704], ids=lambda t: f"tokens{t}")
def test_both_ways_to_the_row_maxima_give_the_generic_integers(tokens: int) -> None:
    # From 2**17 activations (342 tokens of 384) on, max|x| comes from max x and -min x instead
    # of |x|: the integers and scales must not change, rows of one sign and of zeros included.
    generator = torch.Generator().manual_seed(tokens)
    rows = torch.randn(tokens, 384, generator=generator) * 3
    rows[0], rows[1], rows[2] = 0.0, rows[1].abs(), -rows[2].abs()
    x_q, x_scale = W8A8Linear.from_linear(_linear(384, 1)).quantize_activations(rows)
    q_ref, scale_ref = _generic_quantize_rows(rows)
    assert torch.equal(x_scale, scale_ref)
    assert torch.equal(x_q, q_ref)


def test_weights_are_the_same_integers_as_w8a16() -> None:
    linear = _linear(64, 32)
    assert torch.equal(
        W8A8Linear.from_linear(linear).int8_weight,
        W8A16Linear.from_linear(linear).int8_weight,
    )


# ---------------------------------------------------------------- error against the float layer


@settings(max_examples=30, deadline=None)
@given(
    tokens=st.integers(1, 12),
    in_features=st.integers(1, 96),
    out_features=st.integers(1, 24),
    seed=st.integers(0, 2**16),
)
def test_error_against_float_layer_is_within_the_rounding_bound(
    tokens: int, in_features: int, out_features: int, seed: int
) -> None:
    # Rounding moves each activation by at most s_x[t] / 2 and each weight by at most s_w[o] / 2,
    # so x.w - x_hat.w_hat = e_x.w + x_hat.e_w gives
    #   |y - y_float| <= s_x[t] / 2 * ||W[o]||_1 + s_w[o] / 2 * ||x_hat[t]||_1
    # (plus float32 rounding of the float layer, far below these terms).
    linear = _linear(in_features, out_features, seed)
    layer = W8A8Linear.from_linear(linear)
    x = torch.randn(tokens, in_features, generator=torch.Generator().manual_seed(seed))
    x_q, x_scale = layer.quantize_activations(x)
    x_hat = x_scale.double() * x_q.double()  # (tokens, in)
    weight = linear.weight.double()  # (out, in)
    bound = (
        x_scale.double() / 2 * weight.abs().sum(dim=1)  # (tokens, out)
        + layer.scales.double() / 2 * x_hat.abs().sum(dim=1, keepdim=True)
    )
    with torch.no_grad():
        error = (layer(x).double() - linear(x).double()).abs()
        slack = 8 * EPS32 * (x.double().abs() @ weight.abs().t() + linear.bias.double().abs())
    assert torch.all(error <= bound + slack)


# ---------------------------------------------------------------- shapes, dtypes, bad input


def test_any_leading_shape_gives_the_rows_result() -> None:
    layer = W8A8Linear.from_linear(_linear(16, 8))
    x = torch.randn(2, 3, 4, 16)
    y = layer(x)
    assert y.shape == (2, 3, 4, 8)
    assert torch.equal(y.reshape(-1, 8), layer(x.reshape(-1, 16)))  # per token: rows independent
    assert torch.equal(layer(x[0, 0, 0]), y[0, 0, 0])  # a 1-d input is one token


def test_one_token_and_no_tokens() -> None:
    layer = W8A8Linear.from_linear(_linear(384, 1536))
    one = torch.randn(1, 1, 384)
    assert layer(one).shape == (1, 1, 1536)  # batch 1, one token: no padding needed on CPU
    assert layer(torch.randn(0, 384)).shape == (0, 1536)


def test_bfloat16_input_quantizes_in_float32_and_returns_bfloat16() -> None:
    # In bf16, max|x| / (max|x| / 127) can come out as 127.5 and round to 128, past int8's 127;
    # the layer quantizes in float32, so q stays in [-q_max, q_max] and equals the float32 result.
    layer = W8A8Linear.from_linear(_linear(64, 16))
    x = torch.randn(20, 64, generator=torch.Generator().manual_seed(3)).bfloat16()
    x_q, _ = layer.quantize_activations(x)
    assert x_q.abs().max().item() == Q_MAX
    assert torch.equal(x_q, layer.quantize_activations(x.float())[0])
    y = layer(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, layer(x.float()).bfloat16())


def test_without_bias() -> None:
    linear = _linear(8, 4, bias=False)
    layer = W8A8Linear.from_linear(linear)
    assert layer.bias is None
    x = torch.randn(5, 8)
    with torch.no_grad():
        assert torch.allclose(layer(x), linear(x), atol=0.05)


@pytest.mark.parametrize("tokens", [3, 700], ids=["abs-then-max", "max-and-min"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_non_finite_activations_raise(bad: float, tokens: int) -> None:
    # small inputs find max|x| from |x|, large ones from max x and -min x: both must see it
    layer = W8A8Linear.from_linear(_linear(384, 2))
    x = torch.ones(tokens, 384)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        layer(x)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.ones(3, 5), ValueError, r"shape \(\.\.\., 4\)"),
        (torch.tensor(1.0), ValueError, r"shape \(\.\.\., 4\)"),
        (torch.ones(3, 4, dtype=torch.int32), TypeError, "float activations"),
        (torch.ones(3, 4, dtype=torch.int8), TypeError, "float activations"),
    ],
    ids=["wrong-features", "scalar", "int32", "int8"],
)
def test_bad_input_raises_clear_errors(x: torch.Tensor, error: type, message: str) -> None:
    layer = W8A8Linear.from_linear(_linear(4, 2))
    with pytest.raises(error, match=message):
        layer(x)


def test_replace_linear_swaps_every_linear() -> None:
    model = nn.Sequential(_linear(8, 16), nn.GELU(), _linear(16, 4, seed=1))
    x = torch.randn(6, 8)
    with torch.no_grad():
        expected = model(x)
    replace_linear(model, W8A8Linear)
    assert [type(m).__name__ for m in model] == ["W8A8Linear", "GELU", "W8A8Linear"]
    # int8 keeps about 2 significant digits: the outputs agree to a few percent of their scale
    assert (model(x) - expected).abs().max().item() < 0.05 * expected.abs().max().item()
    buffers = dict(model.named_buffers())
    assert buffers["0.int8_weight"].dtype == torch.int8
    assert buffers["0.int8_weight"].shape == (16, 8)
    assert buffers["0.scales"].shape == (16,)


def test_accumulator_bound_in_docstring() -> None:
    # in_features * 127**2 < 2**31 holds up to 133,144 and fails just after.
    assert 133_144 * 127**2 < 2**31 <= 133_145 * 127**2
    assert math.floor((2**31 - 1) / 127**2) == 133_144


@pytest.mark.parametrize(
    ("in_features", "out_features"), [(1, 3), (3, 1), (1, 1)], ids=["k=1", "n=1", "k=n=1"]
)
def test_size_one_dimensions(in_features: int, out_features: int) -> None:
    # With in_features = 1 the transposed weight (1, out) has strides (1, 1), a layout for which
    # torch 2.13's CPU _int_mm returns uninitialised memory; the layer copies it into a fresh one.
    linear = _linear(in_features, out_features)
    layer = W8A8Linear.from_linear(linear)
    x = torch.randn(4, in_features, generator=torch.Generator().manual_seed(0))
    x_q, x_scale = _generic_quantize_rows(x)
    acc = x_q.double() @ layer.int8_weight.double().t()
    y_ref = acc * x_scale.double() * layer.scales.double() + linear.bias.double()
    assert torch.allclose(layer(x).double(), y_ref, rtol=4 * EPS32, atol=0)


def test_non_contiguous_input_gives_the_contiguous_result() -> None:
    layer = W8A8Linear.from_linear(_linear(16, 8))
    x = torch.randn(16, 10).t()  # (10, 16) with strides (1, 10)
    assert not x.is_contiguous()
    assert torch.equal(layer(x), layer(x.contiguous()))


# ---------------------------------------------------------------- the fast path (Issue 14)


@pytest.mark.parametrize("tokens", [1, 5, 31, 32, 200], ids=lambda t: f"tokens{t}")
@pytest.mark.parametrize(
    ("in_features", "out_features"), [(384, 1536), (1536, 384), (1, 8), (8, 1)], ids=str
)
def test_integer_matmul_is_exact_against_the_int32_reference(
    tokens: int, in_features: int, out_features: int
) -> None:
    # Both paths (torch._int_mm below 10M multiply-adds a call, oneDNN's packed kernel from
    # there: here from 17 tokens for the two MiniLM shapes) must give the exact int32 sums
    # times s_w, rounded once: float32(acc) * s_w, bit for bit.
    layer = W8A8Linear.from_linear(_linear(in_features, out_features))
    generator = torch.Generator().manual_seed(tokens)
    x_q = torch.randint(-Q_MAX, Q_MAX + 1, (tokens, in_features), generator=generator)
    x_q = x_q.to(torch.int8)  # on this CPU's grid
    acc = x_q.long() @ layer.int8_weight.long().t()  # the reference, exact in int64
    assert torch.equal(layer.integer_matmul(x_q), acc.float() * layer.scales)


def test_packed_kernel_is_exact_at_the_int32_limit() -> None:
    # 133,144 products of 127 * 127 sum to 2,147,469,824, just below 2**31 (at 7 bits, of
    # 63 * 127): the packed kernel, which adds the zero point to make activations unsigned and
    # subtracts it afterwards, must stay exact.
    in_features = 133_144
    layer = W8A8Linear(in_features, 2, bias=False)
    layer.int8_weight[0] = 127
    layer.int8_weight[1] = -127
    x_q = torch.full((64, in_features), Q_MAX, dtype=torch.int8)
    x_q[1::2] = -Q_MAX
    want = torch.tensor([in_features * Q_MAX * 127, -in_features * Q_MAX * 127]).float()
    y = layer.integer_matmul(x_q)  # scales are 1
    assert torch.equal(y[0], want) and torch.equal(y[1], -want)


@pytest.mark.parametrize(
    ("tokens", "packed"),
    [(3, not select_int8_kernel().int_mm), (40, select_int8_kernel().onednn)],
    ids=["int_mm-path", "onednn-path"],
)
def test_no_call_returns_an_internal_buffer(tokens: int, packed: bool) -> None:
    # forward reuses scratch buffers; what it returns must be its own: a second call (with
    # another input, or another layer) must leave the first result unchanged.
    layer = W8A8Linear.from_linear(_linear(384, 1536))
    other = W8A8Linear.from_linear(_linear(384, 1536, seed=1), context=layer.context)
    x = torch.randn(tokens, 384)
    x_kernel, _ = layer.quantize_into_scratch(x)  # uint8 exactly when oneDNN's kernel runs
    assert (x_kernel.dtype == torch.uint8) == packed  # the path this case claims to cover
    first = layer(x)
    kept = first.clone()
    x_q, x_scale = layer.quantize_activations(x)
    kept_q = x_q.clone()
    layer(2 * x + 1)
    other(x)
    layer.quantize_activations(-x)
    assert torch.equal(first, kept)
    assert torch.equal(x_q, kept_q)
    assert torch.equal(layer(x), kept)  # and the same input gives the same output again


def _big_allocations(run, output_bytes: int) -> list[int]:
    """Bytes of every operator's allocation of at least half the output, in one call."""
    with torch.inference_mode():
        for _ in range(2):  # warm up: the scratch buffers and the packed weight are made once
            run()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run()
    return [
        event.self_cpu_memory_usage
        for event in prof.events()
        if event.self_cpu_memory_usage >= output_bytes // 2
    ]


@pytest.mark.parametrize("tokens", [18, 704], ids=["batch1", "batch32"])
def test_allocates_one_output_per_call_as_nn_linear(tokens: int) -> None:
    linear = _linear(384, 1536)
    layer = W8A8Linear.from_linear(linear)
    x = torch.randn(tokens, 384)
    output_bytes = tokens * 1536 * 4
    assert sum(_big_allocations(lambda: linear(x), output_bytes)) == output_bytes
    assert sum(_big_allocations(lambda: layer(x), output_bytes)) == output_bytes


def test_copies_and_state_dict_rebuild_the_packed_weight() -> None:
    layer = W8A8Linear.from_linear(_linear(16, 8))
    x = torch.randn(80, 16)
    y = layer(x)  # packs the weight
    assert torch.equal(copy.deepcopy(layer)(x), y)
    assert torch.equal(pickle.loads(pickle.dumps(layer))(x), y)
    other = W8A8Linear(16, 8)
    other(x)  # packs its zero weight
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other(x), y)


def test_first_call_inside_inference_mode_then_outside() -> None:
    layer = W8A8Linear.from_linear(_linear(24, 8))
    x = torch.randn(90, 24)
    with torch.inference_mode():
        y_inference = layer(x)
    assert torch.equal(layer(x), y_inference)


def test_huge_but_representable_inputs_do_not_overflow() -> None:
    # 1e38 * (weights of at most 1 / sqrt(8)) * 8 terms stays below float32's 3.4e38: the
    # product s_w * acc comes first and s_x last, so no intermediate exceeds the result.
    linear = _linear(8, 4)
    layer = W8A8Linear.from_linear(linear)
    x = torch.full((3, 8), 1e38)
    y = layer(x)
    want = x.double() @ linear.weight.double().t()
    assert torch.isfinite(y).all()
    assert torch.allclose(y.double(), want, rtol=0.02)


def test_refuses_inputs_whose_output_could_overflow() -> None:
    linear = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)  # y = 4 * 3e38, beyond float32's 3.4e38
    with pytest.raises(ValueError, match="too large"):
        W8A8Linear.from_linear(linear)(torch.full((3, 4), 3e38))
    with pytest.raises(ValueError, match="too large"):  # float16 overflows much earlier
        W8A8Linear.from_linear(linear)(torch.full((3, 4), 2e4, dtype=torch.float16))


def test_refuses_layers_whose_int32_sums_could_overflow() -> None:
    with pytest.raises(ValueError, match="133,144"):
        W8A8Linear(133_145, 1)
    assert W8A8Linear(133_144, 1).in_features == 133_144


def test_replace_linear_keeps_multihead_attention_out_proj() -> None:
    # nn.MultiheadAttention reads out_proj.weight directly; swapping out_proj would break it.
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(16, 2, 32).eval()  # batch_first=False: no fused fast path
    x = torch.randn(5, 2, 16)
    with torch.no_grad():
        expected = model(x)
    replace_linear(model, W8A8Linear)
    assert type(model.self_attn.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert isinstance(model.linear1, W8A8Linear) and isinstance(model.linear2, W8A8Linear)
    with torch.no_grad():
        assert (model(x) - expected).abs().max().item() < 0.05 * expected.abs().max().item()


def test_replace_linear_replaces_a_shared_linear_once_under_every_name() -> None:
    shared = _linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    replace_linear(model, W8A8Linear)
    assert isinstance(model[0], W8A8Linear) and model[0] is model[2]
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    replace_linear(tied, W8A8Linear, skip=("2",))  # one name skipped: both names keep it
    assert tied[0] is shared and tied[2] is shared


# ---------------------------------------------------------------- one quantization, several layers


def _layers_sharing_a_context(*seeds: int, features: int = 16) -> list[W8A8Linear]:
    context = W8A8Context()
    return [
        W8A8Linear.from_linear(_linear(features, 8, seed=seed), context=context) for seed in seeds
    ]


def test_query_key_value_on_one_input_quantize_it_once() -> None:
    # Three layers of one context read the same unchanged tensor, as query, key and value do:
    # one quantization, and every output exactly what a layer that quantized on its own gives.
    q, k, v = _layers_sharing_a_context(0, 1, 2, features=64)
    context = q.context
    x = torch.randn(50, 64)
    with torch.no_grad():
        alone = [layer(x.clone()) for layer in (q, k, v)]  # a new tensor each: no reuse
        assert (context.quantizations, context.reuses) == (3, 0)
        shared = [layer(x) for layer in (q, k, v)]
    assert (context.quantizations, context.reuses) == (4, 2)
    for got, want in zip(shared, alone, strict=True):
        assert torch.equal(got, want)


def test_layers_built_alone_never_share_a_quantization() -> None:
    # Each layer built alone works in its own context: no reuse between them (nor interference).
    a, b = W8A8Linear.from_linear(_linear(16, 8)), W8A8Linear.from_linear(_linear(16, 8, seed=1))
    assert a.context is not b.context
    x = torch.randn(10, 16)
    with torch.no_grad():
        a(x)
        y = b(x)
    assert (a.context.quantizations, b.context.quantizations, b.context.reuses) == (1, 1, 0)
    assert torch.equal(y, b(x.clone()))


def test_a_changed_input_is_quantized_again() -> None:
    # An in-place change, on the tensor or through a view of it, moves its version counter.
    a, b = _layers_sharing_a_context(0, 1)
    x = torch.randn(10, 16)
    with torch.no_grad():
        a(x)
        x.mul_(3.0)
        after_mul = b(x)
        x[0].zero_()  # through a view
        after_view = b(x)
        assert (a.context.quantizations, a.context.reuses) == (3, 0)
        assert torch.equal(after_view, b(x.clone()))
    assert not torch.equal(after_mul, after_view)


def test_swapped_data_or_a_transposed_tensor_is_quantized_again() -> None:
    # `x.data = other` keeps the object and its version counter: the data pointer tells. A square
    # tensor transposed in place keeps its shape: the version counter (and the strides) tell.
    a, b = _layers_sharing_a_context(0, 1)
    x = torch.randn(16, 16)
    with torch.no_grad():
        a(x)
        x.data = torch.randn(16, 16)
        assert torch.equal(b(x), b(x.clone()))
        a(x)
        x.t_()
        assert torch.equal(b(x), b(x.clone()))
    assert (a.context.quantizations, a.context.reuses) == (6, 0)


def test_inference_tensors_are_never_reused() -> None:
    # Tensors made under inference_mode have no version counter: an in-place change could not
    # be seen, so nothing is reused, and the result after a change is right.
    a, b = _layers_sharing_a_context(0, 1)
    with torch.inference_mode():
        x = torch.randn(10, 16)
        a(x)
        x.add_(1.0)
        y = b(x)
        assert (a.context.quantizations, a.context.reuses) == (2, 0)
        assert torch.equal(y, b(x.clone()))


def test_another_quantization_in_between_is_not_mistaken_for_the_input() -> None:
    # Any other quantization overwrites the scratch integers: the next layer must not reuse them.
    a, b = _layers_sharing_a_context(0, 1)
    x, other = torch.randn(10, 16), torch.randn(10, 16)
    with torch.no_grad():
        want = b(x.clone())
        a(x)
        a.quantize_activations(other)  # the checked step, as the lesson calls it
        assert torch.equal(b(x), want)
        a(x)
        a.quantize_into_scratch(other)  # the hot-path step
        assert torch.equal(b(x), want)
        a(x)
        a(other)  # another layer call on another tensor
        assert torch.equal(b(x), want)
    assert a.context.reuses == 2  # only the a(x) right after a b(x), which quantized this x


def test_forget_input_makes_the_next_layer_quantize_again() -> None:
    a, b = _layers_sharing_a_context(0, 1)
    x = torch.randn(10, 16)
    with torch.no_grad():
        a(x)
        a.context.forget_input()
        b(x)
    assert (a.context.quantizations, a.context.reuses) == (2, 0)


def test_a_reused_quantization_still_checks_this_layers_output_bound() -> None:
    # The bound on the output depends on the layer: a layer with huge weights must refuse an
    # input that a small layer accepted, even when the input's integers are reused.
    context = W8A8Context()
    small = W8A8Linear.from_linear(_linear(4, 2), context=context)
    huge = nn.Linear(4, 2)
    with torch.no_grad():
        huge.weight.fill_(1e30)
    huge_layer = W8A8Linear.from_linear(huge, context=context)
    x = torch.full((3, 4), 1e10)
    with torch.no_grad():
        small(x)
        with pytest.raises(ValueError, match="too large"):
            huge_layer(x)
    assert context.reuses == 1  # the refusal came from the reused result, as intended


class _Attention(nn.Module):
    """Query, key and value reading one input, then an output projection."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.query, self.key, self.value = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.output = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        weights = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
        return self.output(weights @ v)


def test_replace_linear_gives_the_model_one_context() -> None:
    model = replace_linear(_Attention(), W8A8Linear, skip=())
    context = model.query.context
    assert all(layer.context is context for layer in (model.key, model.value, model.output))
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        model(x)
    # query, key and value quantize x once; the output projection quantizes its own input
    assert (context.quantizations, context.reuses) == (2, 2)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_gets_its_own_context(how: str) -> None:
    # The copy's layers share one new, empty context: interleaving the two models' calls
    # must not let either reuse the other's scratch integers.
    model = replace_linear(_Attention(), W8A8Linear, skip=())
    x, other = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        want, want_other = model(x), model(other)
        copy_ = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
        context = copy_.query.context
        assert context is not model.query.context
        assert all(layer.context is context for layer in (copy_.key, copy_.value, copy_.output))
        assert (context.quantizations, context.scratch_bytes) == (0, 0)  # starts empty
        for _ in range(2):
            assert torch.equal(model(x), want)
            assert torch.equal(copy_(other), want_other)
    assert context.reuses == 4  # two calls, each reusing query's integers for key and value


def test_context_is_checked() -> None:
    with pytest.raises(TypeError, match="context"):
        W8A8Linear.from_linear(_linear(4, 2), context="shared")
    layer = W8A8Linear(4, 2)
    with pytest.raises(TypeError, match="context"):
        layer.context = None
    other = W8A8Linear(4, 2, context=layer.context)
    assert other.context is layer.context


def test_constructor_takes_bias_and_context_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        W8A8Linear(4, 2, False)  # the point: bias is keyword-only
    layer = W8A8Linear(4, 2, bias=False)
    assert layer.bias is None and layer.scales.shape == (2,) and layer.scales.dtype == torch.float32


# ---------------------------------------------------------------- caches keyed on versions


def _fresh_copy(layer: W8A8Linear) -> W8A8Linear:
    """A layer built anew from this layer's buffers: nothing cached yet."""
    fresh = W8A8Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    fresh.load_state_dict(layer.state_dict())
    return fresh


_EDITS = {
    "int8_weight": lambda layer: layer.int8_weight[0].neg_(),  # through a view
    "scales": lambda layer: layer.scales.mul_(3.0),
    "bias": lambda layer: layer.bias.add_(1.5),
    "int8_weight-copy": lambda layer: layer.int8_weight.copy_(layer.int8_weight.flip(1)),
}


@pytest.mark.parametrize("tokens", [3, 40], ids=["few-tokens", "many-tokens"])
@pytest.mark.parametrize("edit", list(_EDITS), ids=list(_EDITS))
def test_an_in_place_edit_of_a_buffer_is_seen_by_the_next_call(edit: str, tokens: int) -> None:
    # The packed (or transposed) weight and the output bound were made at the first call; an
    # in-place edit advances the buffer's version, so the next call rebuilds them.
    layer = W8A8Linear.from_linear(_linear(384, 1536))
    x = torch.randn(tokens, 384)
    with torch.no_grad():
        before = layer(x)
        _EDITS[edit](layer)
        after = layer(x.clone())
        assert torch.equal(after, _fresh_copy(layer)(x.clone()))
    assert not torch.equal(after, before)


def test_inference_tensor_buffers_are_read_afresh_at_every_call() -> None:
    # A buffer made under inference_mode has no version counter: nothing made from it is kept,
    # so an in-place edit (possible only inside inference_mode) is still seen.
    layer = W8A8Linear.from_linear(_linear(16, 8))
    x = torch.randn(40, 16)
    with torch.inference_mode():
        layer.int8_weight = layer.int8_weight.clone()  # an inference tensor
        before = layer(x)
        layer.int8_weight[0].neg_()
        after = layer(x.clone())
        assert torch.equal(after, _fresh_copy(layer)(x.clone()))
    assert not torch.equal(after, before)


def test_an_in_place_edit_of_the_scales_moves_the_output_bound() -> None:
    # The bound |y| <= max|x| * gain + max|b| is cached too: a larger scale must be refused.
    layer = W8A8Linear.from_linear(_linear(4, 2))
    x = torch.full((3, 4), 1e30)
    with torch.no_grad():
        layer(x)  # accepted: |y| stays near 1e30
        layer.scales.mul_(1e10)
        with pytest.raises(ValueError, match="too large"):
            layer(x.clone())


def test_a_float64_input_is_refused_where_the_float32_output_would_overflow() -> None:
    # The layer computes in float32: an output beyond float32's 3.4e38 cannot be returned,
    # even to a float64 caller.
    linear = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    with pytest.raises(ValueError, match="too large"):
        W8A8Linear.from_linear(linear)(torch.full((3, 4), 1e38, dtype=torch.float64))


# ---------------------------------------------------------------- the hot-path steps


@pytest.mark.parametrize("tokens", [3, 40], ids=["few-tokens", "many-tokens"])
def test_forward_is_exactly_its_three_hot_path_steps(tokens: int) -> None:
    layer = W8A8Linear.from_linear(_linear(384, 1536))
    rows = torch.randn(tokens, 384)
    x_q, x_scale_checked = layer.quantize_activations(rows)
    x_kernel, x_scale = layer.quantize_into_scratch(rows)
    assert torch.equal(x_scale, x_scale_checked)
    offset = KERNEL.zero_point if x_kernel.dtype == torch.uint8 else 0  # oneDNN reads u8
    assert torch.equal(x_kernel.short() - offset, x_q.short())
    y = layer.integer_product(x_kernel)
    assert torch.equal(y, layer.integer_matmul(x_q))
    assert layer.rescale_in_place(y, x_scale) is y  # in place
    assert torch.equal(y, layer(rows))


def test_hot_path_steps_check_kinds_and_shapes() -> None:
    layer = W8A8Linear.from_linear(_linear(8, 4))
    x_kernel, x_scale = layer.quantize_into_scratch(torch.randn(3, 8))
    wrong = torch.int8 if x_kernel.dtype == torch.uint8 else torch.uint8
    with pytest.raises(ValueError, match="x_kernel"):
        layer.integer_product(x_kernel.to(wrong))
    with pytest.raises(ValueError, match="x_kernel"):
        layer.integer_product(x_kernel[:, :4])
    with pytest.raises(TypeError, match="rows"):
        layer.quantize_into_scratch(torch.ones(3, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="rows"):
        layer.quantize_into_scratch(torch.ones(3, 7))
    with pytest.raises(ValueError, match="NaN"):  # found by the absmax, at no extra cost
        layer.quantize_into_scratch(torch.full((3, 8), float("nan")))
    y = layer.integer_product(x_kernel)
    with pytest.raises(TypeError, match="float32"):
        layer.rescale_in_place(y.double(), x_scale)
    with pytest.raises(ValueError, match="x_scale"):
        layer.rescale_in_place(y, x_scale[:2])
