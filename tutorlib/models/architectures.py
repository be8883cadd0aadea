"""Lesson 3: the published architectures of the original notes, built offline.

MobileViT-small and flan-t5-small are built from their published configurations, which tutorlib
ships: exact architectures and parameter counts, with untrained (seeded) weights. Loading the
real checkpoints works where the Hugging Face Hub is configured and reachable, from safetensors
only (never a pickle); the course itself never needs it. `chelsea_pixel_values` preprocesses
scikit-image's cat photo as MobileViT expects.

Left out on purpose: downloading anything, tokenizers for flan-t5, and image preprocessing
beyond resizing, cropping and scaling.
"""

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from tqdm import TqdmWarning

from tutorlib._loading import data_file, quiet_transformers

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # transformers imports tqdm.auto
    from transformers import (
        MobileViTConfig,
        MobileViTForImageClassification,
        MobileViTImageProcessorPil,
        T5Config,
        T5ForConditionalGeneration,
    )

__all__ = [
    "ARCHITECTURES",
    "build_architecture",
    "untie_lm_head",
    "load_pretrained",
    "chelsea_pixel_values",
]


# name -> (config file in tutorlib/data, config class, model class)
ARCHITECTURES = {
    "mobilevit-small": (
        "mobilevit_small_config.json",
        MobileViTConfig,
        MobileViTForImageClassification,
    ),
    "flan-t5-small": ("flan_t5_small_config.json", T5Config, T5ForConditionalGeneration),
}


def _check_name(name: str) -> None:
    """Raise ValueError for a model name the course does not know, listing the known ones."""
    if name not in ARCHITECTURES:
        known = ", ".join(repr(k) for k in ARCHITECTURES)
        raise ValueError(f"Unknown model name {name!r}. Known models: {known}.")


def _published_config(name: str) -> tuple[str, dict]:
    """(Hub checkpoint id, config values) of a known architecture, from tutorlib/data."""
    file_name = ARCHITECTURES[name][0]
    data = json.loads(data_file(file_name).read_text(encoding="utf-8"))
    return data["checkpoint"], data["config"]


def untie_lm_head(model: T5ForConditionalGeneration) -> T5ForConditionalGeneration:
    """Give a T5 model its own `lm_head` weight, as the flan-t5 checkpoints have.

    transformers 5 always ties T5's `lm_head` to the shared embedding (T5Config forces
    tie_word_embeddings=True and keeps the published False only as scale_decoder_outputs).
    flan-t5 checkpoints store a separate lm_head, so this replaces the tied weight by a new
    Parameter initialised as T5 initialises an untied head (normal, std = initializer_factor)
    and removes it from the model's tying maps so that `tie_weights()` keeps it apart.
    Uses the global torch generator: seed it before calling.
    """
    if not isinstance(model, T5ForConditionalGeneration):
        raise TypeError(
            f"model must be a transformers T5ForConditionalGeneration, got {type(model).__name__}"
        )
    shared = model.shared.weight  # (vocab_size, d_model)
    std = model.config.initializer_factor * 1.0
    model.lm_head.weight = nn.Parameter(torch.randn_like(shared, requires_grad=False) * std)
    # Drop lm_head from the tying maps: the computed one, and the class-level one that
    # tie_weights() recomputes it from (an instance attribute shadows the class attribute).
    model.all_tied_weights_keys.pop("lm_head.weight", None)
    model._tied_weights_keys = {
        target: source
        for target, source in type(model)._tied_weights_keys.items()
        if target != "lm_head.weight"
    }
    return model


_INITIALISATIONS = ("transformers", "pytorch")


def _reset_to_pytorch_defaults(model: nn.Module) -> nn.Module:
    """Re-initialise every layer with PyTorch's own default (`reset_parameters`).

    transformers initialises MobileViT's BatchNorm scales from N(0, 0.02), so each of its
    normalised blocks shrinks the signal about fifty-fold and an untrained MobileViT outputs
    logits of about 1e-40. PyTorch's defaults (BatchNorm scale 1, Kaiming-uniform convolutions)
    keep the untrained network's logits at an ordinary size.
    """
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def build_architecture(name: str, seed: int = 0, init: str = "transformers") -> nn.Module:
    """The real architecture of a known model with untrained, seeded weights (FP32, eval mode).

    Built with transformers from the published config that tutorlib ships as data.
    "mobilevit-small": MobileViTForImageClassification with its 1000-class head, 5,578,632
    parameters (22,363,808 bytes in FP32 with its buffers). "flan-t5-small":
    T5ForConditionalGeneration with an untied lm_head, 76,961,152 parameters (307,844,608 bytes).
    `init` "transformers" keeps transformers' initialisation; "pytorch" re-initialises every
    layer with PyTorch's defaults (same sizes, outputs of ordinary magnitude when untrained).
    """
    _check_name(name)
    if init not in _INITIALISATIONS:
        raise ValueError(f"Unknown init {init!r}; choose one of {', '.join(_INITIALISATIONS)}.")
    _, values = _published_config(name)
    _, config_class, model_class = ARCHITECTURES[name]
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        config = config_class.from_dict(values)
        model = model_class(config)
        if name == "flan-t5-small":
            model = untie_lm_head(model)
        if init == "pytorch":
            model = _reset_to_pytorch_defaults(model)
    return model.float().eval()


def chelsea_pixel_values() -> torch.Tensor:
    """scikit-image's photo of Chelsea the tabby cat, preprocessed as MobileViT-small expects.

    Uses transformers' MobileViT image processor with the checkpoint's published settings
    (shipped in tutorlib/data): shorter side resized to 288, centre crop 256x256, pixel / 255,
    channels flipped from RGB to BGR. Returns a (1, 3, 256, 256) float32 tensor in [0, 1].
    """
    from skimage import data

    file_name = ARCHITECTURES["mobilevit-small"][0]
    settings = json.loads(data_file(file_name).read_text(encoding="utf-8"))["preprocessor"]
    with quiet_transformers():
        processor = MobileViTImageProcessorPil(**settings)
        pixels = processor(images=data.chelsea(), return_tensors="pt")["pixel_values"]
    return pixels.float()  # (1, 3, 256, 256)


def _hub_offline() -> bool:
    """True when the configuration says not to use the Hub (HF_HUB_OFFLINE, as huggingface_hub
    reads it). Decided from configuration only: nothing is probed over the network."""
    from huggingface_hub import constants

    configured = os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES
    return constants.HF_HUB_OFFLINE or configured


def _in_hub_cache(checkpoint: str) -> bool:
    """True if the checkpoint's config.json is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(checkpoint, "config.json")
    return isinstance(cached, str)


_SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


def _check_local_weights(folder: Path, offline_hint: str) -> None:
    """Refuse a local checkpoint folder without safetensors weights, before anything is read.

    A pickled checkpoint (pytorch_model.bin) can run any code while it loads; safetensors holds
    only tensors. tutorlib loads safetensors only, and says so instead of falling back.
    """
    if any((folder / name).is_file() for name in _SAFETENSORS_FILES):
        return
    found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
    pickles = (
        f" It holds {', '.join(found)}: pickled weights, which tutorlib never loads"
        if found
        else ""
    )
    raise ValueError(
        f"source {str(folder)!r} holds no model.safetensors.{pickles} (unpickling can run "
        "arbitrary code). Save the checkpoint with save_pretrained (it writes safetensors), or "
        f"convert a checkpoint you trust with safetensors.torch.save_file. {offline_hint}"
    )


def load_pretrained(name: str, source: str | Path | None = None) -> nn.Module:
    """Load the pretrained checkpoint of a known model (FP32, eval mode), from safetensors only.

    `source` defaults to the Hub checkpoint ("apple/mobilevit-small", "google/flan-t5-small");
    a local folder written by `save_pretrained` works too. Weights load only from safetensors
    (use_safetensors=True): a local folder holding only a pickled pytorch_model.bin is refused
    with a ValueError. With no Hub and no cached copy it fails at once with a RuntimeError that
    names the offline alternative, build_architecture.
    Example: load_pretrained("mobilevit-small", source=folder) -> MobileViTForImageClassification.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(ARCHITECTURES)}")
    if source is not None and not isinstance(source, str | Path):
        raise TypeError(
            f"source must be a str, a pathlib.Path or None, got {type(source).__name__}"
        )
    _check_name(name)
    checkpoint, _ = _published_config(name)
    source = checkpoint if source is None else source
    model_class = ARCHITECTURES[name][2]
    is_local = Path(source).is_dir()
    offline_hint = (
        f"Offline, build the same architecture with untrained weights instead: "
        f"build_architecture({name!r})."
    )
    if not is_local and not _in_hub_cache(str(source)) and _hub_offline():
        raise RuntimeError(
            f"Cannot load {str(source)!r}: HF_HUB_OFFLINE is set and the checkpoint is not "
            f"in the local cache. {offline_hint}"
        )
    expected_type = _published_config(name)[1]["model_type"]
    local_config = Path(source) / "config.json"
    if is_local and local_config.is_file():
        found_type = json.loads(local_config.read_text(encoding="utf-8")).get("model_type")
        if found_type != expected_type:
            raise ValueError(
                f"{str(source)!r} holds a {found_type!r} checkpoint, but {name!r} is a "
                f"{expected_type!r} model; pass the folder of a {name} checkpoint."
            )
    if is_local:
        _check_local_weights(Path(source), offline_hint)
    try:
        with quiet_transformers():
            model, info = model_class.from_pretrained(
                source, dtype=torch.float32, use_safetensors=True, output_loading_info=True
            )
    except Exception as error:  # any loading failure: one clear line, not transformers' traceback
        message = str(error).strip()
        first_line = message.splitlines()[0].rstrip(".") if message else type(error).__name__
        raise RuntimeError(f"Cannot load {str(source)!r}: {first_line}. {offline_hint}") from None
    _check_loading_info(info, source)
    return model.eval()


def _check_loading_info(info: dict, source: str | Path) -> None:
    """Refuse a checkpoint whose tensors do not match the architecture one to one: transformers
    would initialise a missing tensor at random (and drop an unexpected one) with a warning."""
    problems = {
        "missing": list(info.get("missing_keys", [])),
        "unexpected": list(info.get("unexpected_keys", [])),
        "of the wrong shape": [str(item[0]) for item in info.get("mismatched_keys", [])],
    }
    found = {kind: names for kind, names in problems.items() if names}
    if found:
        listed = "; ".join(
            f"{len(names)} {kind} (e.g. {', '.join(sorted(names)[:3])})"
            for kind, names in found.items()
        )
        raise ValueError(
            f"{str(source)!r} does not match the architecture tensor for tensor: {listed}. "
            "A missing tensor would be initialised at random; use a complete checkpoint"
        )
