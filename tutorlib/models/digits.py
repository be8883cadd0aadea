"""Lesson 3: a small CNN on real data, scikit-learn's 8x8 digits, with its trained weights.

`SimpleCNN` (two 3x3 convolutions, max-pooling, a linear classifier; 6,090 parameters) is
trained by `train_simple_cnn` on a seeded split of the 1,797 digits; the weights it produced
ship with tutorlib as safetensors, pinned by a SHA-256 written here in the code.

Left out on purpose: data augmentation, learning-rate schedules, and any dataset that would
need a download.
"""

import json
from dataclasses import dataclass

import torch
from safetensors.torch import load as load_safetensors
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from tutorlib._checks import check_float_tensor, check_int, check_real
from tutorlib._loading import data_file
from tutorlib.models.integrity import read_verified

__all__ = [
    "SIMPLE_CNN_SHA256",
    "DigitsSplit",
    "load_digits_split",
    "SimpleCNN",
    "train_simple_cnn",
    "simple_cnn_record",
    "load_simple_cnn",
]

# SHA-256 of tutorlib/data/simple_cnn.safetensors, the weights train_simple_cnn() produced with
# its defaults (recorded in simple_cnn.json too, for the reader; this constant is what is checked).
SIMPLE_CNN_SHA256 = "2b350f7b8098874ac3ce030462f2fef88a71a14298dc2013d30872902a42cd7d"


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn's digits as tensors, split into a training set and a held-out test set."""

    train_images: torch.Tensor  # (1437, 1, 8, 8) float32 in [0, 1]
    train_labels: torch.Tensor  # (1437,) int64
    test_images: torch.Tensor  # (360, 1, 8, 8) float32 in [0, 1]
    test_labels: torch.Tensor  # (360,) int64


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> DigitsSplit:
    """The 1,797 digits of scikit-learn, scaled to [0, 1], split stratified by class.

    Pixel values are 0..16 in the data set, so pixel / 16 lies in [0, 1].
    Example: seed 0, test_fraction 0.2 -> 1,437 training and 360 test images.
    """
    seed = check_int(seed, "seed", minimum=0, maximum=2**32 - 1)
    test_fraction = check_real(test_fraction, "test_fraction", 0.0, 1.0, strict_minimum=True)
    if test_fraction == 1.0:
        raise ValueError("test_fraction must lie in (0, 1): 1.0 leaves no training images")
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (n, 1, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.int64)  # (n,)
    train_index, test_index = train_test_split(
        range(len(labels)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return DigitsSplit(
        train_images=images[train_index],
        train_labels=labels[train_index],
        test_images=images[test_index],
        test_labels=labels[test_index],
    )


def _check_images(images: object, dtype: torch.dtype) -> torch.Tensor:
    """A finite (batch, 1, 8, 8) float tensor in the model's dtype."""
    images = check_float_tensor(images, "images")
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(
            f"images must have shape (batch, 1, 8, 8), got {tuple(images.shape)}; "
            "add the batch and channel axes with images.reshape(-1, 1, 8, 8)"
        )
    if images.dtype != dtype:
        raise TypeError(
            f"images are {images.dtype} but the model's weights are {dtype}; "
            f"convert them first with images.to({dtype})"
        )
    return images


class SimpleCNN(nn.Module):
    """Two 3x3 convolutions with ReLU and 2x2 max-pooling, then a linear classifier.

    (1, 8, 8) -> conv 16 -> pool -> (16, 4, 4) -> conv 32 -> pool -> (32, 2, 2) -> 128 -> 10.
    6,090 parameters: 160 + 4,640 in the convolutions, 1,290 in the classifier.
    """

    def __init__(self, num_classes: int = 10) -> None:
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(32 * 2 * 2, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (batch, num_classes) of finite (batch, 1, 8, 8) images in the weights' dtype."""
        _check_images(images, self.conv1.weight.dtype)
        hidden = self.pool(torch.relu(self.conv1(images)))  # (batch, 16, 4, 4)
        hidden = self.pool(torch.relu(self.conv2(hidden)))  # (batch, 32, 2, 2)
        return self.classifier(hidden.flatten(start_dim=1))  # (batch, 10) logits


def train_simple_cnn(
    split: DigitsSplit | None = None,
    epochs: int = 15,
    batch_size: int = 64,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> SimpleCNN:
    """Train a SimpleCNN on the training digits with Adam and cross-entropy, deterministically.

    The seed fixes the initial weights and the order of the mini-batches (the global torch
    generator is left as it was). A tqdm bar counts epochs. Takes a few seconds on 2 cores;
    with the defaults the held-out accuracy is about 0.97.
    """
    if split is not None and not isinstance(split, DigitsSplit):
        raise TypeError(f"split must be a DigitsSplit (from load_digits_split), got {split!r:.40}")
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    learning_rate = check_real(learning_rate, "learning_rate", 0.0, strict_minimum=True)
    seed = check_int(seed, "seed", minimum=0)
    split = load_digits_split() if split is None else split
    threads = torch.get_num_threads()
    # One thread while training, restored afterwards: 8x8 images are too small to split across
    # threads (on a shared CPU extra threads only wait), and the result does not depend on the
    # machine's core count.
    torch.set_num_threads(1)
    try:
        return _train(split, epochs, batch_size, learning_rate, seed)
    finally:
        torch.set_num_threads(threads)


def _train(
    split: DigitsSplit, epochs: int, batch_size: int, learning_rate: float, seed: int
) -> SimpleCNN:
    """The training loop of train_simple_cnn (seeded, Adam, cross-entropy, tqdm over epochs)."""
    n_train = len(split.train_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SimpleCNN()
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        model.train()
        for _epoch in tqdm(range(epochs), desc="training SimpleCNN", unit="epoch"):
            for batch in torch.randperm(n_train, generator=order).split(batch_size):
                loss = nn.functional.cross_entropy(
                    model(split.train_images[batch]), split.train_labels[batch]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def simple_cnn_record() -> dict:
    """What was recorded when the shipped SimpleCNN weights were trained (simple_cnn.json).

    Keys: "sha256" of simple_cnn.safetensors, "test_accuracy" on the held-out digits, and the
    training settings ("seed", "epochs", "batch_size", "learning_rate", "test_fraction").
    """
    return json.loads(data_file("simple_cnn.json").read_text(encoding="utf-8"))


def load_simple_cnn() -> SimpleCNN:
    """The SimpleCNN trained by train_simple_cnn() with its defaults, as shipped in tutorlib/data.

    The bytes of the safetensors file must have the SHA-256 SIMPLE_CNN_SHA256, pinned in this
    module (not read from a file next to the weights, which could be replaced with them).
    """
    weights_path = data_file("simple_cnn.safetensors")
    how_to_fix = (
        "Reinstall tutorlib (pip install -e .) or regenerate the weights with train_simple_cnn()."
    )
    data = read_verified(weights_path, SIMPLE_CNN_SHA256, how_to_fix)
    model = SimpleCNN()
    model.load_state_dict(load_safetensors(data))
    return model.eval()
