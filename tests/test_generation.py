"""Tests of tutorlib.models.generation (Lesson 7): greedy decoding with the key-value cache.

The independent reference is transformers' own `generate(do_sample=False)` on a tiny random
llama: greedy decoding is a deterministic function of the weights, so both must write the same
tokens. Without the cache (the whole text run again at every step) the tokens are the same too.
"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tutorlib.models.generation import Decoding, decode_step, greedy_generate, start_decoding


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def prompt(n: int = 5, batch: int | None = None, seed: int = 0) -> torch.Tensor:
    shape = (n,) if batch is None else (batch, n)
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_equals_transformers_generate(tiny_llama, seed) -> None:
    # generate() stops at, or (with min_new_tokens) suppresses, the end-of-text token; greedy
    # decoding here never stops, so the reference is asked to ignore that token altogether.
    ids = prompt(seed=seed)
    ours = greedy_generate(tiny_llama, ids, max_new_tokens=12)
    theirs = tiny_llama.generate(
        ids[None], max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert ours.shape == (1, 12)
    assert torch.equal(ours[0], theirs[0, len(ids) :])


def test_the_cache_changes_nothing(tiny_llama) -> None:
    ids = prompt(seed=3)
    text = ids.clone()
    for _ in range(8):  # no cache: the whole text again at every step
        with torch.no_grad():
            next_id = tiny_llama(text[None]).logits[0, -1].argmax()
        text = torch.cat([text, next_id[None]])
    assert torch.equal(greedy_generate(tiny_llama, ids, 8)[0], text[len(ids) :])


def test_a_batch_of_prompts_decodes_each_one(tiny_llama) -> None:
    batch = prompt(n=4, batch=3, seed=4)
    together = greedy_generate(tiny_llama, batch, 6)
    assert together.shape == (3, 6)
    for row, ids in enumerate(batch):
        assert torch.equal(together[row], greedy_generate(tiny_llama, ids, 6)[0])


def test_decode_step_advances_the_decoding(tiny_llama) -> None:
    decoding = start_decoding(tiny_llama, prompt(seed=5))
    assert isinstance(decoding, Decoding) and decoding.next_logits.shape == (1, 50)
    first = decoding.next_logits.argmax(-1)
    assert torch.equal(decode_step(decoding), first)
    assert decoding.cache.get_seq_length() == 6  # the prompt's 5 and the token just written


def test_bad_inputs_are_refused(tiny_llama) -> None:
    with pytest.raises(TypeError, match="causal LM"):
        greedy_generate("model", prompt())
    with pytest.raises(TypeError, match="integer tensor"):
        greedy_generate(tiny_llama, torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty"):
        greedy_generate(tiny_llama, torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="positive int"):
        greedy_generate(tiny_llama, prompt(), max_new_tokens=0)
    with pytest.raises(TypeError, match="start_decoding"):
        decode_step("decoding")
    tiny_llama.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            greedy_generate(tiny_llama, prompt())
    finally:
        tiny_llama.eval()
