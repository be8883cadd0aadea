"""Tests of tutorlib.architectures (Lesson 3): published architectures built offline."""

from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from tutorlib.models.architectures import (
    build_architecture,
    chelsea_pixel_values,
    load_pretrained,
    untie_lm_head,
)


def test_mobilevit_small_architecture() -> None:
    model = build_architecture("mobilevit-small")
    assert sum(p.numel() for p in model.parameters()) == 5_578_632
    assert model.config.image_size == 256 and model.config.num_labels == 1000
    assert not model.training
    with torch.inference_mode():
        logits = model(pixel_values=torch.zeros(1, 3, 256, 256)).logits
    assert logits.shape == (1, 1000)


def test_flan_t5_small_has_an_untied_lm_head() -> None:
    model = build_architecture("flan-t5-small")
    assert sum(p.numel() for p in model.parameters()) == 76_961_152
    lm_head, shared = model.lm_head.weight, model.shared.weight
    assert lm_head.untyped_storage().data_ptr() != shared.untyped_storage().data_ptr()
    assert not torch.equal(lm_head, shared)
    assert model.config.scale_decoder_outputs is False  # as tie_word_embeddings=false implies
    model.tie_weights()  # transformers would re-tie a plain T5 here
    assert sum(p.numel() for p in model.parameters()) == 76_961_152


@pytest.mark.parametrize("name", ["mobilevit-small", "flan-t5-small"])
def test_build_architecture_is_seeded(name: str) -> None:
    state = build_architecture(name, seed=3).state_dict()
    again = build_architecture(name, seed=3).state_dict()
    assert all(torch.equal(state[key], again[key]) for key in state)


def test_build_architecture_seed_matters() -> None:
    state = build_architecture("mobilevit-small", seed=3).state_dict()
    other = build_architecture("mobilevit-small", seed=4).state_dict()
    assert not all(torch.equal(state[key], other[key]) for key in state)


def test_build_architecture_does_not_touch_the_global_generator() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_architecture("mobilevit-small")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("loader", [build_architecture, load_pretrained], ids=["build", "load"])
def test_unknown_name_lists_the_known_ones(loader) -> None:
    with pytest.raises(ValueError, match="'mobilevit-small', 'flan-t5-small'"):
        loader("resnet-50")


def test_load_pretrained_mobilevit_from_a_local_folder(tmp_path: Path) -> None:
    saved = build_architecture("mobilevit-small", seed=5)
    saved.save_pretrained(tmp_path)
    loaded = load_pretrained("mobilevit-small", source=tmp_path)
    assert not loaded.training
    reference = saved.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in loaded.state_dict().items())


def test_load_pretrained_keeps_an_untied_t5_head(tmp_path: Path) -> None:
    # A tiny T5 with an untied head, like the flan-t5 checkpoints, saved and loaded back.
    config = T5Config(
        vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    saved = untie_lm_head(T5ForConditionalGeneration(config))
    saved.save_pretrained(tmp_path)
    loaded = load_pretrained("flan-t5-small", source=tmp_path)
    assert torch.equal(loaded.lm_head.weight, saved.lm_head.weight)
    assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight)


def test_load_pretrained_offline_names_the_alternative(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError, match=r"build_architecture\('flan-t5-small'\)"):
        load_pretrained("flan-t5-small")


def test_load_pretrained_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no model.safetensors.*build_architecture"):
        load_pretrained("mobilevit-small", source=tmp_path)


def test_load_pretrained_refuses_a_pickled_checkpoint(tmp_path: Path) -> None:
    # A copy of a real checkpoint folder, with the weights as a pickle instead of safetensors:
    # unpickling can run any code, so nothing may be loaded from it.
    model = build_architecture("mobilevit-small")
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="holds no model.safetensors. It holds pytorch_model.bin"):
        load_pretrained("mobilevit-small", source=tmp_path)


def test_untie_lm_head_refuses_another_model() -> None:
    with pytest.raises(TypeError, match="model must be a transformers T5ForConditionalGeneration"):
        untie_lm_head(torch.nn.Linear(2, 2))


def test_load_pretrained_refuses_another_model_type(tmp_path: Path) -> None:
    config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 't5' checkpoint.*'mobilevit' model"):
        load_pretrained("mobilevit-small", source=tmp_path)


def test_load_pretrained_corrupted_weights_is_one_clear_line(tmp_path: Path) -> None:
    build_architecture("mobilevit-small").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RuntimeError, match=r"Cannot load .*\. Offline, build") as caught:
        load_pretrained("mobilevit-small", source=tmp_path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_chelsea_is_preprocessed_like_mobilevit() -> None:
    from skimage import data

    pixels = chelsea_pixel_values()
    assert pixels.shape == (1, 3, 256, 256) and pixels.dtype == torch.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    # Channels flipped to BGR: the photo's mean red (its brightest channel) comes last.
    red_mean = data.chelsea()[..., 0].mean() / 255
    assert abs(pixels[0, 2].mean().item() - red_mean) < 0.03


def test_pytorch_init_keeps_untrained_mobilevit_logits_ordinary() -> None:
    pixels = chelsea_pixel_values()
    with torch.inference_mode():
        transformers_init = build_architecture("mobilevit-small")(pixel_values=pixels).logits
        pytorch_init = build_architecture("mobilevit-small", init="pytorch")(
            pixel_values=pixels
        ).logits
    assert transformers_init.abs().max() < 1e-20  # BatchNorm scales ~ N(0, 0.02) shrink it
    assert pytorch_init.std() > 1e-3
    with pytest.raises(ValueError, match="transformers, pytorch"):
        build_architecture("mobilevit-small", init="xavier")


@pytest.mark.parametrize("change", ["missing", "unexpected"])
def test_load_pretrained_refuses_a_checkpoint_with_missing_or_extra_tensors(
    tmp_path: Path, change: str
) -> None:
    # the tiny T5 of the test above, its file edited: a tensor removed, or one added
    from safetensors.torch import load_file, save_file

    config = T5Config(
        vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    untie_lm_head(T5ForConditionalGeneration(config)).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(path)
    if change == "missing":
        del tensors["encoder.final_layer_norm.weight"]
    else:
        tensors["encoder.extra.weight"] = torch.zeros(3)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"1 {change}"):
        load_pretrained("flan-t5-small", source=tmp_path)
