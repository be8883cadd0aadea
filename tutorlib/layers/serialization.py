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
import hashlib
import json
import numbers
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tutorlib.layers.w4a16 import W4A16Linear

__all__ = ["FORMAT", "save_quantized", "read_settings", "load_quantized"]

FORMAT = "tutorlib-w4a16-v2"  # the metadata's format tag, checked when loading
_BITS = 4  # the only width W4A16Linear stores
_SETTING_KEYS = frozenset({"format", "bits", "layers", "notes", "sha256"})


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
    W4A16Linear: its group_size}, "notes": notes (e.g. {"method": "gptq"}), "sha256": {name of
    each tensor: SHA-256 of its dtype, shape and bytes}}, so that loading can tell an edited
    byte from the tensor that was saved.
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
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    digests = {name: _digest(tensor) for name, tensor in tensors.items()}
    settings = {"format": FORMAT, "bits": _BITS, "layers": layers, "notes": notes or {}}
    settings["sha256"] = digests
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
    return _check_settings(settings, path)


def load_quantized(path: str | Path, skeleton: nn.Module) -> nn.Module:
    """Rebuild a saved 4-bit model: a copy of the skeleton, its Linears swapped, tensors loaded.

    The skeleton is a float model of the same architecture (it is copied, not changed). Every
    Linear named in the metadata becomes an empty W4A16Linear of the same shape and group size,
    then every tensor of the file is loaded (strictly: a missing or extra tensor is an error).
    Everything read is checked before it is used: the metadata's schema; every tensor's
    SHA-256 against the one saved (a flipped byte is refused, naming the tensor); and every
    tensor's dtype, shape and values against the layer it goes to (packed integers uint8,
    scales float16 finite and positive, zero points uint8 on the 4-bit grid [0, 15], floats
    finite; nothing is cast). The rebuilt model's outputs are bit-identical to the saved
    model's: same tensors, same code.
    Example: load_quantized("minilm-w4.safetensors", load_minilm()[0]).
    """
    settings = read_settings(path)
    skeleton = _check_model(skeleton, "skeleton")
    tensors = _verified_tensors(path, settings)  # a tampered file is refused before building
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
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            group_size=group_size,
        )
        setattr(parent, child_name, layer)
    _check_tensors(tensors, model)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the file does not fit the skeleton's architecture: {error}") from None
    return model.eval()


def _digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (as stored: contiguous, little-endian)."""
    header = f"{tensor.dtype}|{tuple(tensor.shape)}|".encode()
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(header + data).hexdigest()


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_settings(settings: object, path: Path) -> dict:
    """The metadata's schema: every key, of the type and value save_quantized writes."""
    where = f"{path}: the tutorlib metadata"
    if not isinstance(settings, dict) or set(settings) != _SETTING_KEYS:
        keys = sorted(settings) if isinstance(settings, dict) else type(settings).__name__
        raise ValueError(f"{where} must hold exactly {sorted(_SETTING_KEYS)}, got {keys}")
    if settings["format"] != FORMAT:
        raise ValueError(f"{where} has format {settings['format']!r}; this code reads {FORMAT!r}")
    if not _is_int(settings["bits"]) or settings["bits"] != _BITS:
        raise ValueError(f"{where} has bits {settings['bits']!r}; a W4A16 file has bits 4")
    layers = settings["layers"]
    if not isinstance(layers, dict) or not all(
        isinstance(name, str) and (size is None or (_is_int(size) and size >= 1))
        for name, size in layers.items()
    ):
        raise ValueError(f"{where} 'layers' must map layer names to positive group sizes")
    notes = settings["notes"]
    if not isinstance(notes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in notes.items()
    ):
        raise ValueError(f"{where} 'notes' must map strings to strings")
    digests = settings["sha256"]
    if not isinstance(digests, dict) or not all(
        isinstance(name, str) and isinstance(d, str) and len(d) == 64 for name, d in digests.items()
    ):
        raise ValueError(f"{where} 'sha256' must map tensor names to SHA-256 hex digests")
    return settings


def _verified_tensors(path: Path, settings: dict) -> dict[str, torch.Tensor]:
    """The file's tensors, each checked against the SHA-256 saved for it."""
    tensors = load_file(path)
    saved = settings["sha256"]
    if set(tensors) != set(saved):
        extra, missing = sorted(set(tensors) - set(saved)), sorted(set(saved) - set(tensors))
        raise ValueError(
            f"{path}: the tensors do not match the ones saved (unexpected {extra[:3]}, missing "
            f"{missing[:3]}); the file was edited"
        )
    for name, tensor in tensors.items():
        if _digest(tensor) != saved[name]:
            raise ValueError(
                f"{path}: tensor {name!r} differs from the one saved (SHA-256 mismatch: a byte, "
                "its dtype or its shape was changed); save the model again"
            )
    return tensors


def _check_tensors(tensors: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Every tensor against the module it goes to: dtype and shape as the model's own (no
    silent cast), values on the layer's grid (W4A16Linear) or finite (everything else)."""
    expected = model.state_dict()
    for name, tensor in tensors.items():
        want = expected.get(name)
        if want is not None and (tensor.dtype != want.dtype or tensor.shape != want.shape):
            raise ValueError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, but the model needs "
                f"{want.dtype} {tuple(want.shape)}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor {name!r} holds NaN or inf; a saved model has none")
    for prefix, module in model.named_modules():
        if isinstance(module, W4A16Linear):
            scales = tensors.get(f"{prefix}.scales")
            zero_points = tensors.get(f"{prefix}.zero_points")
            if scales is not None and not bool((scales > 0).all()):
                raise ValueError(f"tensor '{prefix}.scales' has a scale <= 0; a grid needs s > 0")
            top = 2**_BITS - 1
            if zero_points is not None and zero_points.numel() and int(zero_points.max()) > top:
                raise ValueError(
                    f"tensor '{prefix}.zero_points' has a zero point above {top}: it is off "
                    f"the 4-bit grid [0, {top}]"
                )
