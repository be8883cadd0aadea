"""Tests of tutorlib.serialization: a 4-bit model saved to safetensors and loaded back exactly."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from tutorlib.layers.calibrated import fake_quantize_linear_weights
from tutorlib.layers.serialization import FORMAT, load_quantized, read_settings, save_quantized
from tutorlib.layers.w4a16 import W4A16Linear, to_w4_layers


def skeleton() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 128), nn.LayerNorm(128))


def quantized_model() -> tuple[nn.Module, torch.Tensor]:
    model = skeleton()
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    results = fake_quantize_linear_weights(model, "gptq", 4, 128, run=lambda: model(x))
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
    digests = settings.pop("sha256")
    assert settings == {
        "format": FORMAT,
        "bits": 4,
        "layers": {"0": 128, "2": 128},
        "notes": {"method": "gptq"},
    }
    assert set(digests) == set(dtypes) and all(len(d) == 64 for d in digests.values())


def test_file_size_is_the_header_plus_the_tensor_bytes(tmp_path):
    model, _ = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors")
    # packed 4-bit weights (n / 2 bytes), a float16 scale and a uint8 zero point per group of
    # 128, float32 biases and layer norm
    computed = (256 * 512 + 512 * 128) // 2 + (512 * 2 + 128 * 4) * 3 + (512 + 128 * 3) * 4
    assert computed == sum(t.nbytes for t in model.state_dict().values())
    # safetensors: an 8-byte little-endian header length, the JSON header, then the tensors
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.stat().st_size == 8 + header_length + computed


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


# ---------------------------------------------------------------- tampered files are refused


def _rewrite(path, edit_tensors=None, edit_settings=None, forge_digests=False, raw_header=None):
    """Rewrite a saved file with an edit: to its tensors, to its settings, or to the raw JSON
    header. forge_digests: recompute the SHA-256 of the edited tensors, as a careful forger
    would, so that only the checks of dtypes, shapes and values can catch the edit."""
    from safetensors.torch import load_file, save_file

    from tutorlib.layers.serialization import _digest

    tensors = load_file(path)
    with safe_open(path, framework="pt") as file:
        settings = json.loads(file.metadata()["tutorlib"])
    if edit_tensors:
        edit_tensors(tensors)
    if forge_digests:
        settings["sha256"] = {name: _digest(t) for name, t in tensors.items()}
    if edit_settings:
        edit_settings(settings)
    save_file(tensors, path, metadata={"tutorlib": json.dumps(settings)})
    if raw_header:  # edit the JSON header's text in place, keeping its length
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        header = raw_header(data[8 : 8 + n].decode())
        assert len(header) == n
        path.write_bytes(data[:8] + header.encode() + data[8 + n :])


def _set(name, value):
    def edit(tensors):
        tensors[name] = value(tensors[name])

    return edit


def _flip_byte(tensors):
    tensors["0.packed_weight"] = tensors["0.packed_weight"].clone()
    tensors["0.packed_weight"].view(-1)[17] ^= 0x10


TAMPERED = {
    "bits-8": ({"edit_settings": lambda s: s.update(bits=8)}, "bits"),
    "bits-string": ({"edit_settings": lambda s: s.update(bits="4")}, "bits"),
    "settings-a-list": ({"edit_settings": lambda s: s.update(layers=["0", "2"])}, "layers"),
    "digests-missing": ({"edit_settings": lambda s: s.pop("sha256")}, "exactly"),
    "byte-flipped": ({"edit_tensors": _flip_byte}, "'0.packed_weight' differs"),
    "zero-point-200": (
        {"edit_tensors": _set("0.zero_points", lambda t: t.clone().fill_(200))},
        "'0.zero_points' differs",
    ),
    "zero-point-16-forged": (
        {"edit_tensors": _set("0.zero_points", lambda t: t.clone().fill_(16)), "forge": True},
        "4-bit grid",
    ),
    "scale-0": ({"edit_tensors": _set("0.scales", lambda t: t * 0), "forge": True}, "<= 0"),
    "scale-negative": ({"edit_tensors": _set("0.scales", lambda t: -t), "forge": True}, "<= 0"),
    "scale-nan": (
        {"edit_tensors": _set("0.scales", lambda t: t.clone().fill_(float("nan"))), "forge": True},
        "NaN or inf",
    ),
    "scale-inf": (
        {"edit_tensors": _set("0.scales", lambda t: t.clone().fill_(float("inf"))), "forge": True},
        "NaN or inf",
    ),
    "bias-nan": (
        {"edit_tensors": _set("2.bias", lambda t: t.clone().fill_(float("nan"))), "forge": True},
        "NaN or inf",
    ),
    "packed-int32": (
        {"edit_tensors": _set("0.packed_weight", lambda t: t.int()), "forge": True},
        "torch.int32",
    ),
    "packed-float32": (
        {"edit_tensors": _set("0.packed_weight", lambda t: t.float()), "forge": True},
        "torch.float32",
    ),
    "zero-points-int64": (
        {"edit_tensors": _set("0.zero_points", lambda t: t.long()), "forge": True},
        "torch.int64",
    ),
    "bias-float64": (
        {"edit_tensors": _set("2.bias", lambda t: t.double()), "forge": True},
        "torch.float64",
    ),
    "header-I8-for-U8": ({"raw_header": lambda h: h.replace('"U8"', '"I8"', 1)}, "differs"),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_a_tampered_file_is_refused_at_load(tmp_path, case):
    kwargs, message = TAMPERED[case]
    model, _ = quantized_model()
    path = save_quantized(model, tmp_path / "w4.safetensors")
    _rewrite(
        path,
        edit_tensors=kwargs.get("edit_tensors"),
        edit_settings=kwargs.get("edit_settings"),
        forge_digests=kwargs.get("forge", False),
        raw_header=kwargs.get("raw_header"),
    )
    with pytest.raises(ValueError, match=message):
        load_quantized(path, skeleton())
