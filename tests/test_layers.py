"""Tests of W8A16Linear and replace_linear: a hand case, bounds, and optimum-quanto as reference."""

import copy
import importlib
import inspect
import pkgutil

import pytest
import torch
from torch import nn

import tutorlib.layers
from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.layers.w8a16 import W8A16Linear
from tutorlib.models.size import model_size_bytes
from tutorlib.perf.baselines import quantize_with_quanto


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    out_features, in_features = len(weight), len(weight[0])
    linear = nn.Linear(in_features, out_features, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if bias is not None:
            linear.bias.copy_(torch.tensor(bias))
    return linear


def test_from_linear_by_hand():
    # row 0: s = 1.27 / 127 = 0.01 -> [50, -127, 10]; row 1: s = 2 / 127 -> [127, 64, 0]
    linear = _linear([[0.5, -1.27, 0.1], [2.0, 1.0, 0.0]], bias=[0.25, -0.5])
    layer = W8A16Linear.from_linear(linear)
    assert layer.int8_weight.dtype == torch.int8
    assert layer.int8_weight.tolist() == [[50, -127, 10], [127, 64, 0]]
    assert layer.scales.shape == (2,)  # one per output channel, as W8A8Linear's
    assert layer.scales.flatten().tolist() == pytest.approx([0.01, 2 / 127], rel=1e-6)
    assert torch.equal(layer.bias, linear.bias.detach())


def test_forward_is_the_dequantized_matmul():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    layer = W8A16Linear.from_linear(linear)
    x = torch.randn(5, 64)
    dequantized = layer.scales[:, None] * layer.int8_weight.float()  # (16, 64)
    expected = x @ dequantized.T + linear.bias.detach()
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)


def test_output_error_within_the_rounding_bound():
    torch.manual_seed(1)
    linear = nn.Linear(128, 32)
    layer = W8A16Linear.from_linear(linear)
    x = torch.randn(8, 128)
    with torch.no_grad():
        error = (layer(x) - linear(x)).abs()  # (8, 32)
    # each weight moves by at most s_o / 2, so |y - y_hat| <= sum_i |x_i| * s_o / 2;
    # float32 matmul rounding adds at most about 128 * eps of sum_i |x_i| |W_oi| (Higham 3.5)
    rounding = x.abs().sum(dim=1, keepdim=True) * (layer.scales / 2)  # (8, 1) * (32,)
    float_slack = 128 * torch.finfo(torch.float32).eps * (x.abs() @ linear.weight.abs().T)
    assert (error <= rounding + float_slack).all()
    assert error.max() > 0  # it is quantized: not a copy of the float layer


def test_activations_keep_their_dtype():
    layer = W8A16Linear.from_linear(nn.Linear(16, 4))
    for dtype in (torch.float32, torch.bfloat16):
        assert layer(torch.randn(2, 3, 16, dtype=dtype)).dtype == dtype


def test_same_output_as_quanto_int8_weights():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(96, 48), nn.GELU(), nn.Linear(48, 24))
    ours = replace_linear(copy.deepcopy(model), W8A16Linear, skip=())
    theirs = quantize_with_quanto(copy.deepcopy(model))
    assert theirs[0].weight._data.dtype == torch.int8  # quanto's int8 weight tensor
    x = torch.randn(10, 96)
    with torch.no_grad():
        # same int8 integers and scales (see test_quantization); quanto multiplies in a
        # different order, so allow float32 rounding of a 96-term dot product
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


class _Bert(nn.Module):
    """A tiny stand-in with nested Linear layers, a non-Linear module and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            nn.ModuleDict({"query": nn.Linear(8, 8), "dense": nn.Linear(8, 8)}) for _ in range(2)
        )
        self.norm = nn.LayerNorm(8)
        self.lm_head = nn.Linear(8, 4)


def _linear_names(model: nn.Module, cls: type) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, cls)]


def test_replace_linear_swaps_all_but_the_skipped():
    model = _Bert()
    returned = replace_linear(model, W8A16Linear)  # default skip=("lm_head",)
    assert returned is model  # in place
    assert _linear_names(model, nn.Linear) == ["lm_head"]
    assert len(_linear_names(model, W8A16Linear)) == 4
    assert isinstance(model.norm, nn.LayerNorm)


@pytest.mark.parametrize(
    ("skip", "kept"),
    [((), []), (("dense",), ["encoder.0.dense", "encoder.1.dense"]),
     (("encoder.1.query", "lm_head"), ["encoder.1.query", "lm_head"])],
    ids=["nothing", "by-attribute-name", "by-full-name"],
)  # fmt: skip
def test_replace_linear_skip(skip, kept):
    model = replace_linear(_Bert(), W8A16Linear, skip=skip)
    assert _linear_names(model, nn.Linear) == kept


def test_replace_linear_takes_any_layer_class():
    class Doubled(nn.Module):
        @classmethod
        def from_linear(cls, linear: nn.Linear) -> "Doubled":
            layer = cls()
            layer.linear = linear
            return layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.linear(x)

    model = replace_linear(nn.Sequential(nn.Linear(3, 3)), Doubled, skip=())
    assert isinstance(model[0], Doubled)


def test_replace_linear_shares_one_context_when_from_linear_takes_one():
    # The first new layer makes the context; every other gets it: a shared Linear stays one
    # layer, a skipped one stays a Linear.
    class InContext(nn.Module):
        @classmethod
        def from_linear(cls, linear: nn.Linear, context: object = None) -> "InContext":
            layer = cls()
            layer.context = object() if context is None else context
            return layer

    shared = nn.Linear(8, 8)
    model = replace_linear(_Bert(), InContext)
    layers = [m for m in model.modules() if isinstance(m, InContext)]
    assert len(layers) == 4 and len({id(layer.context) for layer in layers}) == 1
    model = replace_linear(nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(8, 8)), InContext)
    assert model[0] is model[2] and model[0].context is model[3].context


def test_quantized_model_is_smaller_by_the_expected_bytes():
    model = nn.Sequential(nn.Linear(512, 256), nn.Linear(256, 128, bias=False))
    assert model_size_bytes(model) == (512 * 256 + 256 + 256 * 128) * 4
    replace_linear(model, W8A16Linear, skip=())
    # int8 weights, one float32 scale per output channel, float32 bias
    assert model_size_bytes(model) == 512 * 256 + 256 * 128 + (256 + 128) * 4 + 256 * 4


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: replace_linear(nn.Sequential(nn.Linear(2, 2)), nn.Linear), TypeError),
        (lambda: replace_linear(nn.Linear(2, 2), W8A16Linear), TypeError),
    ],
    ids=["class-without-from_linear", "model-is-a-linear"],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.ones(3, 8, dtype=torch.int64), TypeError, "x must hold float"),
        (torch.full((3, 8), float("nan")), ValueError, "x contains NaN"),
        (torch.ones(3, 5), ValueError, r"x must have shape \(\.\.\., 8\)"),
        ("not a tensor", TypeError, "x must be a torch.Tensor"),
    ],
    ids=["int-input", "nan", "wrong-width", "not-a-tensor"],
)
def test_w8a16_forward_refuses_bad_input(x, error: type, match: str) -> None:
    layer = W8A16Linear.from_linear(nn.Linear(8, 4))
    with pytest.raises(error, match=match):
        layer(x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_features": 0, "out_features": 4}, ValueError, "in_features"),
        ({"in_features": 8, "out_features": 2.5}, TypeError, "out_features"),
        ({"in_features": 8, "out_features": 4, "bias": "no"}, TypeError, "bias"),
        ({"in_features": 8, "out_features": 4, "dtype": torch.int8}, TypeError, "dtype"),
    ],
    ids=["zero-in", "float-out", "str-bias", "int-dtype"],
)
def test_w8a16_constructor_refuses_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        W8A16Linear(**kwargs)


def test_w8a16_constructor_takes_bias_and_dtype_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        W8A16Linear(8, 4, False)  # the point: bias is keyword-only
    layer = W8A16Linear(8, 4, bias=False, dtype=torch.bfloat16)
    assert layer.bias is None and layer.scales.shape == (4,)
    assert layer.scales.dtype == torch.bfloat16


def test_w8a16_keeps_a_bfloat16_weights_scales_in_bfloat16():
    # The scales stay in the weight's dtype (as optimum-quanto's), one per output channel.
    linear = nn.Linear(16, 4).to(torch.bfloat16)
    layer = W8A16Linear.from_linear(linear)
    assert layer.scales.dtype == torch.bfloat16 and layer.scales.shape == (4,)
    params = layer.weight_params(torch.float32)
    assert params.scale.shape == (4, 1)
    assert torch.equal(params.scale.flatten(), layer.scales.float())


def test_no_module_level_mutable_state_in_layers():
    # Buffers and caches belong to an object the caller can see (a layer, a W8A8Context), never
    # to a module: every module-level name of tutorlib.layers is a function, a class, a module
    # or an immutable constant.
    constant = (int, float, str, bytes, bool, tuple, frozenset, type(None), torch.dtype)
    found = []
    for info in pkgutil.iter_modules(tutorlib.layers.__path__, "tutorlib.layers."):
        for name, value in vars(importlib.import_module(info.name)).items():
            if name.startswith("__") or callable(value) or inspect.ismodule(value):
                continue
            if not isinstance(value, constant):
                found.append(f"{info.name}.{name}: {type(value).__name__}")
    assert found == []


def test_replace_linear_refuses_bad_arguments() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="model"):
        replace_linear("model", W8A16Linear)
    with pytest.raises(TypeError, match="layer_cls"):
        replace_linear(model, "W8A16Linear")
    with pytest.raises(TypeError, match="skip"):
        replace_linear(model, W8A16Linear, skip="lm_head")


@pytest.mark.parametrize("layer_cls", [W8A16Linear, W8A8Linear], ids=["W8A16", "W8A8"])
def test_a_refused_replace_leaves_the_model_exactly_as_it_was(layer_cls) -> None:
    # the second Linear has a NaN weight, which from_linear refuses: the first must not have
    # been swapped already (every new layer is built before any is put in place)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    children = list(model.children())
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(ValueError, match="NaN"):
        replace_linear(model, layer_cls)
    assert list(model.children()) == children  # the very same modules, none replaced
    after = model.state_dict()
    assert all(torch.equal(before[k].nan_to_num(), after[k].nan_to_num()) for k in before)
