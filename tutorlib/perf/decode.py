"""Lesson 7: how fast a language model writes, one token at a time, and how fast it reads a batch.

Decoding at batch 1 runs every weight matrix on a single token, one multiply-add per weight, so
each step streams all the weights from memory: a step cannot be faster than weight bytes /
memory bandwidth, and fewer bytes per weight can only help if the kernel reads the small
integers and widens them in registers. `time_decode` measures milliseconds per generated token
(after the prompt's prefill, which is not timed) and the weight bytes read per second that this
implies. Decoding a batch of sequences at once reuses each weight for every sequence of the
batch, so at batch 32 the arithmetic rate decides instead.

Variants are interleaved (round r runs each in an order rotated by r), as in
tutorlib.perf.timing, so that load from other programs on this shared CPU hits all of them.
Left out on purpose: the time to the first token (the prefill), speculative decoding, GPUs.
"""

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_int
from tutorlib.models.generation import _check_prompt, decode_step, start_decoding
from tutorlib.models.size import model_size_bytes

__all__ = ["DecodeSpeed", "time_decode"]


@dataclass(frozen=True)
class DecodeSpeed:
    """Median milliseconds per decode step of a batch, and the weight bytes one step reads."""

    ms_per_step: float
    batch_size: int
    weight_bytes: int

    @property
    def tokens_per_second(self) -> float:
        """Tokens written per second by the whole batch: batch_size * 1000 / ms_per_step."""
        return self.batch_size * 1e3 / self.ms_per_step

    @property
    def gigabytes_per_second(self) -> float:
        """weight_bytes read per step / seconds per step, in GB/s (1e9 bytes)."""
        return self.weight_bytes / (self.ms_per_step * 1e-3) / 1e9


def _check_models(models: object) -> Mapping[str, nn.Module]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty dict {name: causal LM}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be an nn.Module, got {type(model).__name__}")
    return models


def _step_seconds(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int) -> float:
    """Seconds per decode step: prefill untimed, then new_tokens timed steps."""
    decoding = start_decoding(model, prompt_ids)
    start = time.perf_counter()
    for _ in range(new_tokens):
        decode_step(decoding)
    return (time.perf_counter() - start) / new_tokens


def time_decode(
    models: Mapping[str, nn.Module],
    prompt_ids: torch.Tensor,
    new_tokens: int = 8,
    repeats: int = 3,
) -> dict[str, DecodeSpeed]:
    """Greedy decoding speed of each model, interleaved: {name: DecodeSpeed}.

    prompt_ids (tokens,) decodes at batch 1, (batch, tokens) decodes `batch` sequences at once.
    Each round runs, for every model in a rotated order, a prefill of prompt_ids (untimed)
    and new_tokens decode steps (timed); ms_per_step is the median over `repeats` rounds of
    the round's time / new_tokens. weight_bytes = model_size_bytes(model): every weight is
    read once per step (the output head reads the whole tied embedding), so GB/s =
    weight_bytes / time per step. One untimed warm-up step per model comes first.
    Example: a 538 MB float32 SmolLM2 at 40 ms per step at batch 1 writes 25 tokens/s and
    reads 13.5 GB/s of weights; at batch 32 a step writes 32 tokens.
    """
    models = _check_models(models)
    new_tokens = check_int(new_tokens, "new_tokens", minimum=1)
    repeats = check_int(repeats, "repeats", minimum=1)
    prompt_ids = _check_prompt(prompt_ids)  # (batch, tokens)
    batch_size = prompt_ids.shape[0]
    for model in models.values():
        _step_seconds(model, prompt_ids, 1)  # warm-up: lazy packing, allocator, caches
    names, samples = list(models), {name: [] for name in models}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(_step_seconds(models[name], prompt_ids, new_tokens))
    return {
        name: DecodeSpeed(
            1e3 * statistics.median(seconds), batch_size, model_size_bytes(models[name])
        )
        for name, seconds in samples.items()
    }
