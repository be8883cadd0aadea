"""Tests of tutorlib.references: each recipe does what its docstring says, and bad input is
refused before the library sees it."""

import pytest
import torch
from torch import nn

from tutorlib.perf.baselines import quantize_with_quanto, quanto_w8a8, torch_ao_dynamic
from tutorlib.quant.affine import linear_quantize
from tutorlib.quant.params import get_scale_and_zero_point


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def test_quanto_int8_weights_are_symmetric_per_channel_and_in_place():
    model = _model()
    weight = model[0].weight.detach().clone()  # (8, 16)
    returned = quantize_with_quanto(model)
    assert returned is model  # in place
    quanto_weight = model[0].weight
    assert quanto_weight._data.dtype == torch.int8
    # scale = absmax / 127 per output row, exactly tutorlib's symmetric per-channel scale
    params = get_scale_and_zero_point(weight, bits=8, symmetric=True, dim=0)
    assert torch.equal(quanto_weight._scale, params.scale)
    assert torch.equal(quanto_weight._data, linear_quantize(weight, params))
    assert model[0].bias.dtype == torch.float32  # biases are not quantized


def test_torch_ao_dynamic_returns_a_new_quantized_model():
    model = _model()
    quantized = torch_ao_dynamic(model)
    assert isinstance(model[0], nn.Linear)  # the original is untouched
    assert type(quantized[0]).__name__ == "Linear" and quantized[0] is not model[0]
    assert quantized[0].weight().dtype == torch.qint8
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # int8 weights and activations: within a few percent of the float output
        torch.testing.assert_close(quantized(x), model(x), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("recipe", [quantize_with_quanto, torch_ao_dynamic], ids=["quanto", "ao"])
@pytest.mark.parametrize("bad", [None, "model", torch.zeros(3)], ids=["none", "str", "tensor"])
def test_a_non_module_is_refused_with_its_name(recipe, bad):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        recipe(bad)


def test_quanto_w8a8_refuses_a_non_module_before_calibrating():
    with pytest.raises(TypeError, match="model"):
        quanto_w8a8(None, tokenizer=None, sentences=["a sentence"])


@pytest.mark.parametrize("recipe", [quantize_with_quanto, torch_ao_dynamic], ids=["quanto", "ao"])
def test_a_bare_linear_is_refused_and_a_wrapped_one_is_quantized(recipe):
    # both libraries replace a module's Linear *children*: a bare Linear would come back with
    # weight None (quanto) or still float (torch.ao), so it is refused with the fix
    with pytest.raises(TypeError, match="nn.Sequential"):
        recipe(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="no nn.Linear"):
        recipe(nn.Sequential(nn.ReLU()))
    quantized = recipe(nn.Sequential(nn.Linear(4, 3)))
    assert type(quantized[0]) is not nn.Linear  # replaced by the library's quantized layer


@pytest.mark.parametrize(
    ("sentences", "error"), [([], ValueError), ("one sentence", TypeError)], ids=["none", "str"]
)
def test_quanto_w8a8_refuses_to_calibrate_on_nothing_or_on_letters(sentences, error):
    with pytest.raises(error, match="sentences"):
        quanto_w8a8(nn.Sequential(nn.Linear(4, 3)), tokenizer=None, sentences=sentences)
