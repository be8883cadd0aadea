"""Lesson 7: greedy decoding, one token at a time, with the model's key-value cache.

A causal language model writes text by predicting one token, appending it, and predicting
again. Greedy decoding takes the most likely token each time (argmax of the logits), so the
continuation of a prompt is a deterministic function of the model's weights: two variants of a
model that write the same tokens agree on every one of those argmaxes. The key-value cache keeps
each layer's keys and values of the tokens seen so far, so a step runs the model on one new
token instead of the whole text.

Left out on purpose: sampling (temperature, top-k, top-p), stopping at an end-of-text token
(every call writes exactly max_new_tokens tokens), batching prompts of different lengths, and
chat templates.
"""

from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_int, check_integer_tensor

__all__ = ["Decoding", "start_decoding", "decode_step", "greedy_generate"]


@dataclass
class Decoding:
    """A decoding in progress: the cache (keys and values so far) and the logits of the last
    position, (batch, vocab). Mutable on purpose: each decode_step advances it."""

    model: nn.Module
    cache: object
    next_logits: torch.Tensor


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "forward", None)):
        raise TypeError(f"model must be a causal LM (an nn.Module), got {type(model).__name__}")
    if model.training:
        raise ValueError(
            "model is in training mode (dropout would change the tokens); call .eval()"
        )
    return model


def _check_prompt(prompt_ids: object) -> torch.Tensor:
    """(batch, tokens) int64 ids, a 1-D prompt taken as a batch of one."""
    ids = check_integer_tensor(prompt_ids, "prompt_ids")
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] == 0 or int(ids.min()) < 0:
        raise ValueError(
            "prompt_ids must be 1-D (one prompt) or (batch, tokens), non-empty and >= 0, got "
            f"shape {tuple(ids.shape)}"
        )
    return ids.long()


def _check_vocabulary(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """ids below the model's vocabulary size, where the model says it (transformers)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(embedding, "num_embeddings", None)
    if vocab is not None and int(ids.max()) >= vocab:
        raise ValueError(
            f"prompt_ids holds id {int(ids.max())}, but the model's vocabulary has {vocab} ids; "
            "tokenize with the model's own tokenizer"
        )
    return ids


def start_decoding(model: nn.Module, prompt_ids: torch.Tensor) -> Decoding:
    """Run the prompt through the model once (the prefill) and keep its cache.

    prompt_ids: (tokens,) or (batch, tokens). Only the last position's logits are computed
    (logits_to_keep=1): the others would predict tokens the prompt already has.
    Example: start_decoding(model, ids).next_logits.shape == (1, 49152) for SmolLM2.
    """
    model = _check_model(model)
    ids = _check_vocabulary(model, _check_prompt(prompt_ids))
    with torch.inference_mode():
        output = model(ids, use_cache=True, logits_to_keep=1)
    return Decoding(model, output.cache, output.logits[:, -1])


def decode_step(decoding: Decoding) -> torch.Tensor:
    """Append the most likely next token of each sequence and run the model on it alone.

    next = argmax_v logits[v] (the lowest id wins a tie); the model sees only the new token and
    reads the earlier ones from the cache. Returns next, (batch,) int64; `decoding` advances.
    """
    if not isinstance(decoding, Decoding):
        raise TypeError(f"decoding must come from start_decoding, got {type(decoding).__name__}")
    next_ids = decoding.next_logits.argmax(dim=-1)  # (batch,)
    with torch.inference_mode():
        output = decoding.model(next_ids[:, None], cache=decoding.cache, use_cache=True)
    decoding.cache, decoding.next_logits = output.cache, output.logits[:, -1]
    return next_ids


def greedy_generate(
    model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int = 24
) -> torch.Tensor:
    """The greedy continuation of a prompt: exactly max_new_tokens tokens, (batch, new) int64.

    x_{t+1} = argmax_v p(v | x_1 .. x_t), repeated; nothing stops it early.
    Example: SmolLM2-135M continues "The capital of France is" with " Paris" first.
    """
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    decoding = start_decoding(model, prompt_ids)
    new = [decode_step(decoding) for _ in range(max_new_tokens)]
    return torch.stack(new, dim=1)
