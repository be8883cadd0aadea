"""Tests of tutorlib.serialization: a 4-bit model saved to safetensors and loaded back exactly."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from tutorlib.layers.calibrated import quantize_linear_weights
from tutorlib.layers.serialization import FORMAT, load_quantized, read_settings, save_quantized
from tutorlib.layers.w4a16 import W4A16Linear, to_w4_layers


def skeleton() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 128), nn.LayerNorm(128))


def quantized_model() -> tuple[nn.Module, torch.Tensor]:
    model = skeleton()
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    results = quantize_linear_weights(model, "gptq", 4, 128, run=lambda: model(x))
    return to_w4_layers(model, {name: r.quantized for name, r in results.items()}), x


def test_save_then_load_is_bit_exact(tmp_path):
    model, x = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors", notes={"method": "gptq"})
    loaded = load_quantized(path, skeleton())
    assert isinstance(loaded[0], W4A16Linear) and isinstance(loaded[2], W4A16Linear)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert torch.equal(loaded(x), model(x))


def test_file_holds_packed_integers_and_settings(tmp_path):
    model, _ = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors", notes={"method": "gptq"})
    with safe_open(path, framework="pt") as file:
        dtypes = {name: file.get_tensor(name).dtype for name in file.keys()}
        settings = json.loads(file.metadata()["tutorlib"])
    assert dtypes["0.packed_weight"] == torch.uint8
    assert dtypes["0.scales"] == torch.float16 and dtypes["0.zero_points"] == torch.uint8
    assert dtypes["3.weight"] == torch.float32
    assert settings == read_settings(path)
    assert settings == {
        "format": FORMAT,
        "bits": 4,
        "layers": {"0": 128, "2": 128},
        "notes": {"method": "gptq"},
    }


def test_file_size_is_within_one_percent_of_the_tensor_bytes(tmp_path):
    model, _ = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors")
    # packed 4-bit weights (n / 2 bytes), a float16 scale and a uint8 zero point per group of
    # 128, float32 biases and layer norm
    computed = (256 * 512 + 512 * 128) // 2 + (512 * 2 + 128 * 4) * 3 + (512 + 128 * 3) * 4
    assert computed == sum(t.nbytes for t in model.state_dict().values())
    assert abs(path.stat().st_size - computed) <= 0.01 * computed


def test_load_refuses_a_wrong_skeleton_and_a_foreign_file(tmp_path):
    model, _ = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors")
    with pytest.raises(ValueError, match="skeleton"):
        load_quantized(path, nn.Sequential(nn.Linear(256, 512)))
    with pytest.raises(ValueError, match="architecture"):
        load_quantized(path, nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 128)))
    other = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="save_quantized"):
        load_quantized(other, skeleton())
    with pytest.raises(ValueError, match="no such file"):
        read_settings(tmp_path / "missing.safetensors")


def test_save_refuses_tied_weights(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight
    with pytest.raises(ValueError, match="tied"):
        save_quantized(model, tmp_path / "tied.safetensors")
