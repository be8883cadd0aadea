"""Tests of tutorlib.profiling (Lesson 5): MAC counts, hooks, Amdahl, activation statistics."""

import ast
import dataclasses
import inspect
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.perf import layer_steps
from tutorlib.perf.activations import (
    ActivationStats,
    activation_stats,
    activation_table,
    bert_layer_label,
)
from tutorlib.perf.amdahl import LinearFreeCap, _FreeLinear, amdahl_speedup, linear_free_cap
from tutorlib.perf.hooks import (
    capture_linear_inputs,
    is_linear_layer,
    large_allocations,
    operator_times,
    profile_linear_layers,
)
from tutorlib.perf.layer_steps import LayerSteps, profile_w8a8_steps


@pytest.mark.parametrize(
    ("fraction", "speedup", "expected"),
    [(0.8, 4.0, 2.5), (0.0, 10.0, 1.0), (1.0, 4.0, 4.0), (0.5, 1.0, 1.0)],
    ids=["textbook", "nothing-sped-up", "everything-sped-up", "no-gain"],
)
def test_amdahl_speedup(fraction: float, speedup: float, expected: float) -> None:
    assert amdahl_speedup(fraction, speedup) == pytest.approx(expected)


@settings(max_examples=50, deadline=None)
@given(fraction=st.floats(0, 1), speedup=st.floats(1, 100))
def test_amdahl_never_beats_the_serial_part(fraction: float, speedup: float) -> None:
    whole = amdahl_speedup(fraction, speedup)
    assert 1 <= whole * (1 + 1e-12) and whole <= speedup * (1 + 1e-12)
    if fraction < 1:
        assert whole <= 1 / (1 - fraction) * (1 + 1e-12)


def test_amdahl_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        amdahl_speedup(1.5, 2.0)
    with pytest.raises(ValueError):
        amdahl_speedup(0.5, 0.0)
    with pytest.raises(ValueError, match="speedup_of_fraction"):
        amdahl_speedup(0.5, math.nan)
    with pytest.raises(ValueError, match="parallel_fraction"):
        amdahl_speedup(math.nan, 2.0)


def test_profile_w8a8_steps_times_every_step_of_one_layer() -> None:
    torch.manual_seed(0)
    linear, x = nn.Linear(16, 32), torch.randn(3, 5, 16)  # any leading shape, as forward
    steps = profile_w8a8_steps(linear, x, repeats=3)
    assert isinstance(steps, LayerSteps)
    times = dataclasses.asdict(steps)
    assert set(times) == {
        "fp32", "w8a8", "quantize", "integer_matmul", "rescale", "torch_ao",
    }  # fmt: skip
    assert all(math.isfinite(t) and t > 0 for t in times.values())


def test_profile_w8a8_steps_uses_only_public_names() -> None:
    # The steps it times are W8A8Linear's public hot-path methods: no private attribute or
    # import (one leading underscore; dunders such as __name__ are Python's) in the module.
    tree = ast.parse(inspect.getsource(layer_steps))
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    private += [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]  # fmt: skip
    assert [name for name in private if name[:1] == "_" and name[:2] != "__"] == []


@pytest.mark.parametrize(
    ("linear", "x", "error"),
    [
        (nn.Conv1d(4, 4, 1), torch.randn(2, 4), TypeError),
        (nn.Linear(4, 4), torch.randn(2, 5), ValueError),
        (nn.Linear(4, 4), torch.ones(2, 4, dtype=torch.int64), TypeError),
        (nn.Linear(4, 4), torch.ones(2, 4, dtype=torch.float16), TypeError),
    ],
    ids=["not-a-linear", "wrong-width", "integer-input", "float16-input"],
)
def test_profile_w8a8_steps_rejects_bad_input(linear: nn.Module, x: torch.Tensor, error) -> None:
    with pytest.raises(error):
        profile_w8a8_steps(linear, x, repeats=1)


def test_is_linear_layer_recognises_every_kind_of_linear() -> None:
    linear = nn.Linear(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation warnings
        dynamic = torch.ao.quantization.quantize_dynamic(
            nn.Sequential(nn.Linear(4, 3)), {nn.Linear}, dtype=torch.qint8
        )[0]
    assert is_linear_layer(linear)
    assert is_linear_layer(W8A8Linear.from_linear(linear))
    assert is_linear_layer(dynamic)
    assert not is_linear_layer(nn.LayerNorm(4))
    assert not is_linear_layer(nn.Sequential(linear))


def test_profile_linear_layers_counts_macs_and_removes_its_hooks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 5, 4)  # 15 vectors
    profile = profile_linear_layers(model, lambda: model(x), repeats=3)
    assert profile.macs == 15 * 4 * 8 + 15 * 8 * 2  # 480 + 240
    # each call's linear time is part of its total, so the medians keep that order
    assert 0 < profile.linear_seconds <= profile.total_seconds
    assert 0 < profile.linear_fraction <= 1
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("encoder.layer.0.attention.self.query", "0 attention in"),
        ("encoder.layer.5.attention.output.dense", "5 attention out"),
        ("encoder.layer.3.intermediate.dense", "3 FFN up"),
        ("encoder.layer.11.output.dense", "11 FFN down"),
        ("pooler.dense", "pooler"),
    ],
    ids=["query", "attention-out", "ffn-up", "ffn-down", "pooler"],
)
def test_bert_layer_label(name: str, label: str) -> None:
    assert bert_layer_label(name) == label


def test_capture_linear_inputs_keeps_each_layers_rows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 5, 4)
    outputs = []
    inputs = capture_linear_inputs(model, lambda: outputs.append(model(x)))
    assert torch.equal(outputs[0], model(x))  # the hooks only look: same output, same shape
    assert list(inputs) == ["0", "2"]
    assert torch.equal(inputs["0"], x.reshape(15, 4))
    assert torch.equal(inputs["2"], torch.relu(model[0](x)).detach().reshape(15, 8))
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_activation_stats_by_hand() -> None:
    # One outlier row sets the per-tensor scale s = 100 / 127 for both rows:
    # row 0 [1.0, 0.25] -> q [1, 0] -> [0.7874, 0.0]. Per token, row 0 gets s = 1 / 127:
    # 0.25 * 127 = 31.75 -> 32 -> 0.251969. Row 1 [100, 0] is exact either way.
    rows = torch.tensor([[1.0, 0.25], [100.0, 0.0]])
    stats = activation_stats("toy", rows)
    signal = 1.0 + 0.25**2 + 100.0**2
    tensor_noise = (1.0 - 100 / 127) ** 2 + 0.25**2
    token_noise = (0.25 - 32 / 127) ** 2
    assert stats.layer == "toy"
    assert stats.abs_max == 100.0
    assert stats.median_token_abs_max == 1.0  # torch's median of [1, 100] is the lower one
    assert stats.sqnr_per_tensor_db == pytest.approx(
        10 * math.log10(signal / tensor_noise), abs=1e-3
    )
    assert stats.sqnr_per_token_db == pytest.approx(10 * math.log10(signal / token_noise), abs=0.05)


def test_activation_stats_of_an_exact_input_is_finite() -> None:
    # int8 holds a constant row exactly: no noise, so the SQNR is float32's own (146 dB).
    stats = activation_stats("const", torch.full((3, 8), 0.5))
    assert stats.sqnr_per_tensor_db == pytest.approx(6.02 * 24 + 1.76)
    assert math.isfinite(activation_stats("zeros", torch.zeros(3, 8)).sqnr_per_token_db)


def test_activation_table_has_one_row_per_input_and_the_gain() -> None:
    stats = [ActivationStats("0 FFN down", 30.0, 2.0, 20.04, 41.0)]
    frame = activation_table(stats)
    assert list(frame.columns) == [
        "layer input", "max|x|", "median row max", "per tensor (dB)", "per token (dB)", "gain (dB)",
    ]  # fmt: skip
    assert frame.iloc[0].tolist() == ["0 FFN down", 30.0, 2.0, 20.0, 41.0, 21.0]


def test_large_allocations_sees_an_output_and_a_temporary() -> None:
    x = torch.randn(256, 256)  # 256 KiB
    assert large_allocations(lambda: x + x, 100_000) == [256 * 256 * 4]
    assert large_allocations(lambda: (x + x) * x, 100_000) == [256 * 256 * 4] * 2
    assert large_allocations(lambda: x.add_(x), 100_000) == []  # in place: nothing new


def test_operator_times_lists_the_top_level_operators() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.LayerNorm(32))
    x = torch.randn(16, 32)
    frame = operator_times(lambda: model(x), repeats=2)
    assert {"aten::linear", "aten::gelu", "aten::layer_norm"} <= set(frame["operator"])
    assert frame["operator"].iloc[-1] == "python and other"
    assert (frame["calls"].iloc[:-1] == 1).all()


# ---------------------------------------------------------------- the forward without linear work


def test_linear_free_cap_times_the_model_and_a_copy_without_linear_work(monkeypatch) -> None:
    # No timing is asserted: the timer is replaced by one that runs each callable once, counts
    # the nn.Linear forwards it sees, and returns fixed durations. "full" must be the model
    # itself, "rest" a copy in which no nn.Linear runs; the medians and the cap come from them.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    with torch.no_grad():
        before = model(x)
    linear_calls: dict[str, int] = {}

    def fake_timer(runs, repeats, desc):
        assert set(runs) == {"full", "rest"} and repeats == 3
        for name, run in runs.items():
            seen = []
            hook = nn.modules.module.register_module_forward_hook(
                lambda module, args, out, seen=seen: seen.append(isinstance(module, nn.Linear))
            )
            try:
                run()
            finally:
                hook.remove()
            linear_calls[name] = sum(seen)
        return {"full": [0.030, 0.010, 0.020], "rest": [0.004, 0.005, 0.006]}

    monkeypatch.setattr("tutorlib.perf.amdahl.time_interleaved", fake_timer)
    result = linear_free_cap(model, lambda m: m(x), repeats=3)
    assert linear_calls == {"full": 2, "rest": 0}
    assert result == LinearFreeCap(full_ms=20.0, rest_ms=5.0)
    assert result.cap == pytest.approx(4.0)
    assert result.linear_budget_ms(2.5) == pytest.approx(20.0 / 2.5 - 5.0)
    assert all(isinstance(m, (nn.Linear, nn.ReLU, nn.Sequential)) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_linear_budget_is_what_the_target_leaves_the_linear_layers() -> None:
    # The docstring's case, and the property: a forward of rest + budget ms is `speedup` times
    # faster than full.
    times = LinearFreeCap(full_ms=75.0, rest_ms=15.0)
    assert times.linear_budget_ms(2.5) == pytest.approx(15.0)
    for speedup in (1.0, 2.0, 3.7):
        budget = times.linear_budget_ms(speedup)
        assert times.full_ms / (times.rest_ms + budget) == pytest.approx(speedup)
    assert times.linear_budget_ms(10.0) < 0  # beyond the cap of 5x: the rest alone is too slow
    with pytest.raises(ValueError, match="speedup"):
        times.linear_budget_ms(0.0)


def test_free_linear_returns_the_same_zeros_at_every_call() -> None:
    layer = _FreeLinear.from_linear(nn.Linear(4, 3))
    with torch.inference_mode():
        y = layer(torch.ones(2, 5, 4, dtype=torch.bfloat16))
        assert y.shape == (2, 5, 3) and y.dtype == torch.bfloat16
        assert not bool(y.any())
        assert layer(torch.full((2, 5, 4), 7.0, dtype=torch.bfloat16)) is y  # no work, no copy
        assert layer(torch.ones(1, 4)).shape == (1, 3)  # one tensor per shape and dtype


def test_linear_free_cap_refuses_bad_arguments() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="model"):
        linear_free_cap("model", lambda m: m(torch.ones(1, 4)))
    with pytest.raises(TypeError, match="forward"):
        linear_free_cap(model, "m(x)")
    with pytest.raises(ValueError, match="repeats"):
        linear_free_cap(model, lambda m: m(torch.ones(1, 4)), repeats=0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        linear_free_cap(nn.Sequential(nn.ReLU()), lambda m: m(torch.ones(1, 4)))
