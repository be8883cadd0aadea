"""Tests of tutorlib.gptq: round-to-nearest and GPTQ on per-group grids, by hand and by property."""

import copy

import pytest
import torch
from torch import nn

from tutorlib.layers.calibrated import capture_next_inputs, fake_quantize_linear_weights
from tutorlib.models.calibration import load_calibration_sentences
from tutorlib.models.search_task import load_search_task, search_sentences
from tutorlib.perf.hooks import capture_linear_inputs
from tutorlib.quant.affine import linear_dequantize, linear_quantize
from tutorlib.quant.gptq import (
    calibration_rows,
    gptq_quantize,
    gptq_quantize_shared,
    hessian,
    inverse_hessian_cholesky,
    output_error,
    spread_column_error,
    token_rows,
)
from tutorlib.quant.params import QuantParams, get_scale_and_zero_point
from tutorlib.quant.rtn import rtn_quantize
from tutorlib.quant.shared_input import split_rows


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's construction: entries +-1 and H^T H = n I exactly (white inputs)."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def correlated_inputs(samples=2048, features=128, rank=16, seed=0):
    """Inputs whose features are mixtures of a few sources plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    sources = torch.randn(samples, rank, generator=g)
    mixing = torch.randn(rank, features, generator=g)
    return sources @ mixing + 0.1 * torch.randn(samples, features, generator=g)


def test_rtn_textbook_row():
    # One row, one group of 4 at 2 bits: s = 1.2 / 3 = 0.4 -> float16 0.39990234, z = 1.
    qt = rtn_quantize(torch.tensor([[-0.3, 0.1, 0.15, 0.9]]), bits=2, group_size=4)
    assert qt.q.tolist() == [[0, 1, 1, 3]]
    assert qt.params.zero_point.item() == 1
    assert qt.params.scale.item() == torch.tensor(0.4).half().item()
    assert torch.allclose(qt.dequantize(), torch.tensor([[-0.4, 0.0, 0.0, 0.8]]), atol=1e-3)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [8, 32, None], ids=["g8", "g32", "per-channel"])
def test_rtn_is_lesson_4s_quantizer_with_float16_scales(bits, group_size):
    w = seeded(16, 64)
    params = get_scale_and_zero_point(w, bits, group_size=group_size or 64)
    stored = QuantParams(
        params.scale.half().float(), params.zero_point, bits, False, None, params.group_size
    )
    qt = rtn_quantize(w, bits, group_size)
    assert torch.equal(qt.q, linear_quantize(w, stored))
    assert torch.equal(qt.params.zero_point, params.zero_point)
    # The float16 scale is within 2**-11 (float16's unit roundoff) of the float32 one.
    assert torch.allclose(qt.params.scale, params.scale, rtol=2**-11, atol=0)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_each_group_lies_on_its_grid(bits, method):
    w, x = seeded(8, 64), correlated_inputs(256, 64)
    qt = rtn_quantize(w, bits, 16) if method == "rtn" else gptq_quantize(w, x, bits, 16)
    assert qt.q.min() >= 0 and qt.q.max() <= 2**bits - 1
    w_hat = qt.dequantize().reshape(8, 4, 16)  # (out, groups, g)
    for row in w_hat:
        for group in row:
            assert group.unique().numel() <= 2**bits
    scale, zero_point = qt.params.scale, qt.params.zero_point  # (8, 4, 1)
    levels = zero_point + (w_hat / scale).round()  # back to integers on each group's grid
    assert torch.allclose(scale * (levels - zero_point), w_hat)


def test_gptq_on_white_inputs_equals_rtn_exactly():
    w, x = seeded(32, 128) * 0.05, hadamard(128) * 3.0  # X^T X = 9 * 128 I
    for bits, group_size in [(4, 32), (3, 128), (2, None)]:
        rtn, gptq = rtn_quantize(w, bits, group_size), gptq_quantize(w, x, bits, group_size)
        assert torch.equal(rtn.q, gptq.q)
        assert torch.equal(rtn.params.scale, gptq.params.scale)
        assert torch.equal(rtn.params.zero_point, gptq.params.zero_point)


@pytest.mark.parametrize("group_size", [32, None], ids=["g32", "per-channel"])
def test_gptq_beats_rtn_on_correlated_inputs(group_size):
    w, x = seeded(64, 128) * 0.05, correlated_inputs()
    rtn = output_error(w, rtn_quantize(w, 4, group_size).dequantize(), x)
    gptq = output_error(w, gptq_quantize(w, x, 4, group_size).dequantize(), x)
    assert gptq < 0.5 * rtn  # measured: about a quarter


@pytest.mark.parametrize("seed", range(4))
def test_gptq_never_worse_on_random_white_inputs(seed):
    w, x = seeded(64, 128, seed=seed), seeded(4096, 128, seed=100 + seed)
    rtn = output_error(w, rtn_quantize(w, 4, 32).dequantize(), x)
    gptq = output_error(w, gptq_quantize(w, x, 4, 32).dequantize(), x)
    assert gptq <= rtn


def test_one_error_compensation_step_by_hand():
    # 2 x 4 weight; U with first row [0.5, -0.25, 0.1, 0]. Column 0 rounds [1.0, 2.0] to
    # [1.2, 1.9]: err = (w - w_hat) / U[0, 0] = [-0.4, 0.2]; column j moves by -err * U[0, j]:
    # column 1 by [-0.1, 0.05], column 2 by [0.04, -0.02], column 3 not at all.
    w = torch.tensor([[1.0, 0.5, -0.5, 0.3], [2.0, -1.0, 0.25, 0.7]])
    u = torch.eye(4)
    u[0] = torch.tensor([0.5, -0.25, 0.1, 0.0])
    out = spread_column_error(w, u, 0, torch.tensor([1.2, 1.9]))
    expected = torch.tensor([[1.2, 0.4, -0.46, 0.3], [1.9, -0.95, 0.23, 0.7]])
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(w[:, 0], torch.tensor([1.0, 2.0]))  # the input is not modified


def test_inverse_hessian_cholesky_textbook():
    h = hessian(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert h.tolist() == [[4.0, 2.0], [2.0, 2.0]]
    u = inverse_hessian_cholesky(h, damp=0.0)
    s = 2**-0.5
    assert torch.allclose(u, torch.tensor([[s, -s], [0.0, s]], dtype=torch.float64))
    assert torch.allclose(u.T @ u, torch.linalg.inv(h))


def test_gptq_agrees_with_the_column_by_column_loop():
    """The blocked updates of gptq_quantize give what spread_column_error does column by column."""
    w, x, g = seeded(16, 64) * 0.1, correlated_inputs(512, 64), 16
    u = inverse_hessian_cholesky(hessian(x), 0.01).float()
    moving = w.clone()
    q = torch.empty(16, 64, dtype=torch.int32)
    for i in range(64):
        if i % g == 0:
            grid = rtn_quantize(moving[:, i : i + g], 4, None).params  # this group, as it is now
            params = type(grid)(grid.scale[:, 0], grid.zero_point[:, 0], 4, False, dim=0)
        q[:, i : i + 1] = linear_quantize(moving[:, i : i + 1], params)
        w_hat = linear_dequantize(q[:, i : i + 1], params)[:, 0]
        moving = spread_column_error(moving, u, i, w_hat)
    blocked = gptq_quantize(w, x, 4, g)
    assert (blocked.q == q).double().mean() > 0.99  # float sums in another order may flip a tie


def test_quantize_linear_weights_calibrates_in_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    x = correlated_inputs(256, 16)
    reference = model(x).detach()
    rtn_model = copy.deepcopy(model)
    rtn = fake_quantize_linear_weights(rtn_model, "rtn", 3, 16, run=lambda: rtn_model(x))
    results = fake_quantize_linear_weights(model, "gptq", 3, 16, run=lambda: model(x))
    assert list(results) == ["0", "2"]
    assert torch.equal(model[0].weight, results["0"].quantized.dequantize())
    for name in results:
        assert 0 < results[name].relative_error < rtn[name].relative_error
    assert (model(x) - reference).norm() < (rtn_model(x) - reference).norm()


def test_quantize_linear_weights_refuses_gptq_without_calibration():
    with pytest.raises(ValueError, match="run"):
        fake_quantize_linear_weights(nn.Sequential(nn.Linear(8, 4)), "gptq")


def test_calibration_sentences_are_not_the_search_task():
    calibration = load_calibration_sentences()
    assert 32 <= len(calibration) <= 64
    assert not set(calibration) & set(search_sentences(load_search_task()))


def test_bad_inputs_get_clear_errors():
    w = seeded(4, 8)
    with pytest.raises(ValueError, match="group_size"):
        rtn_quantize(w, 4, 3)
    with pytest.raises(ValueError, match="bits"):
        rtn_quantize(w, 16)
    with pytest.raises(ValueError, match="inputs"):
        gptq_quantize(w, seeded(5, 7), 4, 8)
    with pytest.raises(ValueError, match="weight"):
        gptq_quantize(seeded(8), seeded(5, 8), 4, 8)


def test_a_group_too_narrow_for_float16_scales_is_refused() -> None:
    # range 1e-4 over 15 steps: s = 6.7e-6, a float16 subnormal (spacing 2**-24 = 6e-8), whose
    # rounding error relative to s grows without bound as groups narrow: refused, with the fix
    weight = torch.linspace(0, 1e-4, 32).reshape(1, 32)
    with pytest.raises(ValueError, match="smallest normal"):
        rtn_quantize(weight, bits=4, group_size=32)
    # the same shape at a normal range quantizes, every weight within half a step
    quantized = rtn_quantize(weight * 1e3, bits=4, group_size=32)
    step = quantized.params.scale.max().item()
    assert (quantized.dequantize() - weight * 1e3).abs().max().item() <= step / 2 * (1 + 1e-3)


@pytest.mark.parametrize("problem", ["nan-weight", "never-called", "narrow-group"])
def test_a_refused_model_is_left_exactly_as_it_was(problem: str) -> None:
    # a NaN weight is refused before anything changes; a Linear the calibration never calls,
    # and a group too narrow for float16 scales, are found after earlier layers were quantized:
    # those must be put back
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.Linear(8, 4))
    x = torch.randn(32, 16)
    with torch.no_grad():
        if problem == "nan-weight":
            model[2].weight[0, 0] = float("nan")
        if problem == "narrow-group":  # the second layer's first row spans 1e-6
            model[2].weight[0] = torch.linspace(0, 1e-6, 16)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    calls = model[:3] if problem == "never-called" else model  # [:3] never calls the last
    with pytest.raises(ValueError):
        fake_quantize_linear_weights(model, "gptq", 4, 8, run=lambda: calls(x))
    after = model.state_dict()
    assert all(torch.equal(before[k].nan_to_num(), after[k].nan_to_num()) for k in before)


# ---- padding: only the real tokens of a calibration batch enter H


def test_token_rows_textbook_case():
    x = torch.arange(24.0).reshape(2, 3, 4)  # (batch, seq, features)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])  # the second sentence has one real token
    rows = token_rows(x, mask)
    assert rows.shape == (4, 4)
    assert torch.equal(rows, torch.cat([x[0], x[1, :1]]))  # the padded rows are gone
    assert torch.equal(token_rows(x, mask.bool()), rows)  # a boolean mask reads the same


def test_masked_gptq_is_gptq_on_the_real_tokens_alone():
    # A model that treats each token on its own: masking the padded batch must give exactly
    # what GPTQ gives on the real tokens' rows, and differ from calibrating on the padding too.
    g = torch.Generator().manual_seed(0)
    layer = nn.Sequential(nn.Linear(16, 8))  # a model whose one Linear sees each token alone
    x = torch.randn(3, 5, 16, generator=g)
    x[1, 3:] = 5.0  # padded positions carry vectors far from the real tokens'
    x[2, 2:] = 5.0
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    weight = layer[0].weight.detach().clone()
    masked = copy.deepcopy(layer)
    fake_quantize_linear_weights(masked, "gptq", 4, 8, run=lambda: masked(x), token_mask=mask)
    reference = gptq_quantize(weight, x[mask.bool()], 4, 8).dequantize()
    assert torch.equal(masked[0].weight.detach(), reference)
    unmasked = copy.deepcopy(layer)
    fake_quantize_linear_weights(unmasked, "gptq", 4, 8, run=lambda: unmasked(x))
    assert not torch.equal(unmasked[0].weight.detach(), reference)


def test_captured_inputs_keep_only_real_tokens():
    layer = nn.Linear(4, 2)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    captured = capture_linear_inputs(layer, lambda: layer(x), token_mask=mask)
    assert torch.equal(captured[""], torch.stack([x[0, 0], x[0, 1], x[1, 0]]))


@pytest.mark.parametrize(
    "mask, error, message",
    [
        (torch.tensor([[1, 1], [1, 0]]), ValueError, "shape (batch, seq)"),
        (torch.tensor([[1.0, 1, 1], [1, 0, 0]]), TypeError, "integers or booleans"),
        (torch.tensor([[1, 2, 1], [1, 0, 0]]), ValueError, "only 0 (padding) and 1"),
        (torch.zeros(2, 3, dtype=torch.long), ValueError, "no real token"),
        ([[1, 1, 1], [1, 0, 0]], TypeError, "must be a tensor"),
    ],
)
def test_token_rows_refuses_a_bad_mask(mask, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        token_rows(torch.zeros(2, 3, 4), mask)


def test_a_mask_for_another_batch_is_refused_before_anything_changes():
    layer = nn.Sequential(nn.Linear(4, 2))
    weight = layer[0].weight.detach().clone()
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="token_mask has shape"):
        fake_quantize_linear_weights(
            layer, "gptq", 4, 4, run=lambda: layer(x), token_mask=torch.ones(2, 5, dtype=torch.long)
        )
    assert torch.equal(layer[0].weight.detach(), weight)
    with pytest.raises(ValueError, match="pass run too"):
        fake_quantize_linear_weights(layer, "rtn", 4, 4, token_mask=torch.ones(2, 3, dtype=int))


def test_calibration_rows_keep_a_per_sequence_input_whole():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    pooled = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))  # a pooler's input
    assert torch.equal(calibration_rows(pooled, mask), pooled)
    assert calibration_rows(torch.zeros(2, 3, 4), mask).shape == (4, 4)
    assert calibration_rows(torch.zeros(2, 3, 4), None).shape == (6, 4)


def test_a_model_with_a_pooler_calibrates_with_a_mask():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Linear(4, 4)
            self.pooler = nn.Linear(4, 2)

        def forward(self, x):
            return self.pooler(self.token(x)[:, 0])  # the first position's state, per sequence

    model = Pooled()
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    results = fake_quantize_linear_weights(
        model, "gptq", 4, 4, run=lambda: model(x), token_mask=mask
    )
    assert list(results) == ["token", "pooler"]


def test_capture_refuses_a_bad_mask_before_running_the_model():
    calls = []
    layer = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="only 0 \\(padding\\) and 1"):
        capture_linear_inputs(layer, lambda: calls.append(1), token_mask=torch.full((2, 3), 2))
    with pytest.raises(TypeError, match="token_mask must be a tensor"):
        capture_linear_inputs(layer, lambda: calls.append(1), token_mask=[[1, 0]])
    assert calls == []  # run() never started


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [8, 32, None], ids=["g8", "g32", "per-channel"])
def test_gptq_on_stacked_weights_is_gptq_on_each(bits, group_size):
    # Rows never see each other in GPTQ (U comes from X alone, each row has its own grid):
    # a query, key and value quantized together get exactly their own integers and grids.
    x = correlated_inputs(samples=512, features=64)
    weights = [seeded(24, 64), seeded(8, 64, seed=1), seeded(8, 64, seed=2)]
    shared = gptq_quantize_shared(weights, x, bits, group_size)
    for weight, together in zip(weights, shared, strict=True):
        alone = gptq_quantize(weight, x, bits, group_size)
        assert torch.equal(together.q, alone.q)
        assert torch.equal(together.params.scale, alone.params.scale)
        assert torch.equal(together.params.zero_point, alone.params.zero_point)
        assert together.params.group_size == alone.params.group_size


def test_gptq_shared_refuses_weights_that_cannot_share_an_input():
    x = seeded(32, 8)
    with pytest.raises(ValueError, match="one in_features"):
        gptq_quantize_shared([seeded(4, 8), seeded(4, 6)], x)
    with pytest.raises(TypeError, match="non-empty list"):
        gptq_quantize_shared(seeded(4, 8), x)  # one tensor, not a list of them
    with pytest.raises(TypeError, match="non-empty list"):
        gptq_quantize_shared([], x)
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        gptq_quantize_shared([seeded(4, 8), seeded(8)], x)  # names the weight that is wrong


def test_capture_next_inputs_groups_the_linears_that_read_one_tensor():
    # Two heads read the same tensor, a third reads their sum: the first capture is the pair,
    # the second the third Linear, on its own input; the pass stops before the rest runs.
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.c(self.a(x) + self.b(x))

    block, x = Block(), seeded(2, 3, 4)
    pending = {"a": block.a, "b": block.b, "c": block.c}
    names, captured = capture_next_inputs(pending, lambda: block(x))
    assert names == ["a", "b"]
    assert torch.equal(captured, x.reshape(6, 4))  # one row per position
    names, captured = capture_next_inputs({"c": block.c}, lambda: block(x))
    with torch.no_grad():
        assert torch.allclose(captured, (block.a(x) + block.b(x)).reshape(6, 4))
    assert names == ["c"]
    assert list(pending) == ["a", "b", "c"]  # the caller's dict is not changed


def test_split_rows_gives_each_weight_its_rows_and_refuses_a_mismatch():
    weights = [seeded(6, 16), seeded(2, 16, seed=1)]
    stacked = rtn_quantize(torch.cat(weights), 4, 8)
    first, second = split_rows(stacked, weights)
    assert torch.equal(first.dequantize(), rtn_quantize(weights[0], 4, 8).dequantize())
    assert torch.equal(second.q, rtn_quantize(weights[1], 4, 8).q)
    with pytest.raises(ValueError, match="8 rows in all, but stacked has 6"):
        split_rows(rtn_quantize(seeded(6, 16), 4, 8), weights)
    with pytest.raises(TypeError, match="stacked must be a QuantizedTensor"):
        split_rows(torch.zeros(8, 16), weights)
