"""Tests of tutorlib.digits (Lesson 3): the digits split, SimpleCNN, training, shipped weights."""

from pathlib import Path

import pytest
import torch

from tutorlib.models.digits import (
    SimpleCNN,
    load_digits_split,
    load_simple_cnn,
    simple_cnn_record,
    train_simple_cnn,
)


def test_digits_split_by_hand() -> None:
    split = load_digits_split()
    assert split.train_images.shape == (1437, 1, 8, 8)
    assert split.test_images.shape == (360, 1, 8, 8)
    assert split.train_images.min() == 0.0 and split.train_images.max() == 1.0
    # Stratified: every digit has 36 test images (+-1), as 1,797 images / 10 classes * 0.2.
    counts = torch.bincount(split.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_digits_split_is_seeded() -> None:
    first, again, other = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    assert torch.equal(first.test_labels, again.test_labels)
    assert not torch.equal(first.test_labels, other.test_labels)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.5)


def test_simple_cnn_shapes() -> None:
    model = SimpleCNN()
    assert sum(p.numel() for p in model.parameters()) == 6_090
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)


def _test_accuracy(model: SimpleCNN) -> float:
    split = load_digits_split()
    with torch.inference_mode():
        predictions = model(split.test_images).argmax(dim=1)
    return (predictions == split.test_labels).float().mean().item()


@pytest.mark.slow
def test_training_from_scratch_reaches_95_percent() -> None:
    model = train_simple_cnn()
    assert _test_accuracy(model) >= 0.95


def test_training_is_deterministic() -> None:
    split = load_digits_split()
    first = train_simple_cnn(split, epochs=1).state_dict()
    again = train_simple_cnn(split, epochs=1).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    with pytest.raises(ValueError, match="positive"):
        train_simple_cnn(split, epochs=0)


def test_shipped_weights_reproduce_their_recorded_accuracy() -> None:
    record = simple_cnn_record()
    model = load_simple_cnn()
    correct = round(_test_accuracy(model) * record["test_size"])
    assert correct == record["test_correct"]
    assert record["test_accuracy"] >= 0.95


def test_corrupted_weights_are_refused(monkeypatch, tmp_path: Path) -> None:
    import tutorlib.models.digits as digits

    broken = tmp_path / "simple_cnn.safetensors"
    broken.write_bytes(b"not the weights")
    real_data_file = digits.data_file
    monkeypatch.setattr(
        digits,
        "data_file",
        lambda name: broken if name == "simple_cnn.safetensors" else real_data_file(name),
    )
    with pytest.raises(ValueError, match="SHA-256 mismatch.*train_simple_cnn"):
        load_simple_cnn()


def test_tampered_weights_with_a_matching_record_are_refused(monkeypatch, tmp_path: Path) -> None:
    """Replacing the weights AND the JSON record beside them must not get tampered weights in:
    the digest that is checked is pinned in the code."""
    import json

    from safetensors.torch import load_file, save_file

    import tutorlib.models.digits as digits
    from tutorlib.models.integrity import sha256_of

    weights = load_file(digits.data_file("simple_cnn.safetensors"))
    weights["classifier.weight"][0, 0] = 1.4e38  # one tampered weight
    tampered = tmp_path / "simple_cnn.safetensors"
    save_file(weights, tampered)
    record = dict(simple_cnn_record(), sha256=sha256_of(tampered))
    (tmp_path / "simple_cnn.json").write_text(json.dumps(record))
    monkeypatch.setattr(digits, "data_file", lambda name: tmp_path / name)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        load_simple_cnn()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be positive"),
        ({"seed": -1}, ValueError, "seed must lie in"),
        ({"split": "digits"}, TypeError, "split must be a DigitsSplit"),
    ],
    ids=["no-epochs", "float-batch", "zero-rate", "negative-seed", "not-a-split"],
)
def test_train_simple_cnn_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        train_simple_cnn(**kwargs)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (torch.zeros(2, 8, 8), ValueError, r"images must have shape \(batch, 1, 8, 8\)"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.float64), TypeError, "convert them first"),
        (torch.full((1, 1, 8, 8), float("nan")), ValueError, "images contains NaN"),
    ],
    ids=["no-channel-axis", "float64", "nan"],
)
def test_simple_cnn_refuses_bad_images(images, error, match) -> None:
    with pytest.raises(error, match=match):
        SimpleCNN()(images)


def test_digits_split_bad_arguments() -> None:
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        load_digits_split(test_fraction=1.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        load_digits_split(seed=True)
