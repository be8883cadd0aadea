"""Lesson 6: saving a 4-bit model to a safetensors file and loading it back, bit for bit.

The file holds every tensor of the model's state dict as it is stored: the packed 4-bit
integers (uint8), the float16 scales and uint8 zero points of each `W4A16Linear`, and the
float32 parameters of everything else; the quantization settings travel in the file's
metadata (a JSON string under "tutorlib"). Nothing is pickled, so loading runs no code.

To rebuild the model, `load_quantized` takes a skeleton: the float model with the same
architecture (e.g. `load_minilm()[0]`, or the architecture built from its config), whose
Linears named in the metadata are swapped for empty W4A16Linear layers before the tensors are
loaded into them. The skeleton's own weights are not used. Left out on purpose: storing the
architecture itself (Hugging Face stores a config.json next to the weights), sharded files,
and tied weights (safetensors refuses tensors that share memory; untie them first).
"""

import copy
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tutorlib.layers.w4a16 import W4A16Linear

__all__ = ["FORMAT", "save_quantized", "read_settings", "load_quantized"]

FORMAT = "tutorlib-w4a16-v1"  # the metadata's format tag, checked when loading


def _check_model(model: object, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_path(path: object) -> Path:
    if not isinstance(path, str | Path) or str(path) == "":
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give a file name such as model.safetensors")
    return path


def save_quantized(model: nn.Module, path: str | Path, notes: dict[str, str] | None = None) -> Path:
    """Write the model's state dict to a safetensors file, with its 4-bit settings as metadata.

    Metadata "tutorlib" = JSON {"format": FORMAT, "bits": 4, "layers": {dotted name of each
    W4A16Linear: its group_size}, "notes": notes} (notes: e.g. {"method": "gptq"}).
    File size = 8 bytes + the JSON header + the bytes of every tensor (each stored once).
    Example: MiniLM with its 37 Linears at 4 bits, groups of 128: 53,451,808 bytes against
    the FP32 checkpoint's 90,868,376. Returns the path written.
    """
    model, path = _check_model(model), _check_path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path {path}: the folder {path.parent} does not exist; create it first")
    if notes is not None and not (
        isinstance(notes, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items())
    ):
        raise TypeError(f"notes must be a dict of strings to strings, or None, got {notes!r}")
    layers = {
        name: module.group_size
        for name, module in model.named_modules()
        if isinstance(module, W4A16Linear)
    }
    settings = {"format": FORMAT, "bits": 4, "layers": layers, "notes": notes or {}}
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    pointers = [t.untyped_storage().data_ptr() for t in tensors.values() if t.numel()]
    if len(set(pointers)) != len(pointers):
        raise ValueError(
            "the model has tensors that share memory (tied weights); safetensors stores each "
            "tensor once: untie them (e.g. clone the tied weight) before saving"
        )
    save_file(tensors, path, metadata={"tutorlib": json.dumps(settings)})
    return path


def read_settings(path: str | Path) -> dict:
    """The quantization settings saved in a file's metadata (see save_quantized).

    Example: {"format": "tutorlib-w4a16-v1", "bits": 4, "layers": {"encoder.layer.0...": 128,
    ...}, "notes": {"method": "gptq"}}.
    """
    path = _check_path(path)
    if not path.is_file():
        raise ValueError(f"path {path}: no such file; save the model with save_quantized first")
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ValueError(f"path {path} is not a safetensors file ({error})") from None
    try:
        settings = json.loads(metadata["tutorlib"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(
            f"path {path} has no tutorlib settings: it was not written by save_quantized"
        ) from None
    if settings.get("format") != FORMAT:
        raise ValueError(
            f"{path} has format {settings.get('format')!r}, this code reads {FORMAT!r}"
        )
    return settings


def load_quantized(path: str | Path, skeleton: nn.Module) -> nn.Module:
    """Rebuild a saved 4-bit model: a copy of the skeleton, its Linears swapped, tensors loaded.

    The skeleton is a float model of the same architecture (it is copied, not changed). Every
    Linear named in the metadata becomes an empty W4A16Linear of the same shape and group size,
    then every tensor of the file is loaded (strictly: a missing or extra tensor is an error).
    The rebuilt model's outputs are bit-identical to the saved model's: same tensors, same code.
    Example: load_quantized("minilm-w4.safetensors", load_minilm()[0]).
    """
    settings = read_settings(path)
    skeleton = _check_model(skeleton, "skeleton")
    model = copy.deepcopy(skeleton)
    for name, group_size in settings["layers"].items():
        parent_name, _, child_name = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name) if parent_name else model
            linear = getattr(parent, child_name)
        except AttributeError:
            linear = None
        if not isinstance(linear, nn.Linear):
            raise ValueError(
                f"the file has a 4-bit layer {name!r}, but the skeleton has no nn.Linear there: "
                "pass the float model of the same architecture"
            )
        layer = W4A16Linear(
            linear.in_features, linear.out_features, group_size, linear.bias is not None
        )
        setattr(parent, child_name, layer)
    tensors = load_file(path)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the file does not fit the skeleton's architecture: {error}") from None
    return model.eval()
