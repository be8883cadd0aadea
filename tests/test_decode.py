"""Tests of tutorlib.perf.decode (Lesson 7): decoding speed and the weight bytes it reads.

DecodeSpeed's arithmetic by hand; time_decode on a tiny llama: every model timed, times
positive, the batch size and the weight bytes (tutorlib.models.size) reported, and a model that
does twice the work per step measured slower.
"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tutorlib.models.size import model_size_bytes
from tutorlib.perf.decode import DecodeSpeed, time_decode


def tiny_llama(layers: int = 1) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_decode_speed_by_hand() -> None:
    # 538 MB per step in 40 ms: 25 tokens/s at batch 1, 800 at batch 32; 13.45 GB/s either way.
    one, many = DecodeSpeed(40.0, 1, 538_000_000), DecodeSpeed(40.0, 32, 538_000_000)
    assert one.tokens_per_second == 25.0 and many.tokens_per_second == 800.0
    assert one.gigabytes_per_second == pytest.approx(13.45) == many.gigabytes_per_second


def test_time_decode_reports_every_model() -> None:
    models = {"one layer": tiny_llama(1), "eight layers": tiny_llama(8)}
    ids = torch.arange(6)
    speeds = time_decode(models, ids, new_tokens=4, repeats=3)
    assert list(speeds) == ["one layer", "eight layers"]
    for name, speed in speeds.items():
        assert speed.batch_size == 1 and speed.ms_per_step > 0
        assert speed.weight_bytes == model_size_bytes(models[name])
    assert speeds["eight layers"].ms_per_step > speeds["one layer"].ms_per_step


def test_a_batch_of_prompts_counts_its_tokens() -> None:
    speeds = time_decode({"m": tiny_llama()}, torch.zeros(4, 3, dtype=torch.long), 2, 1)
    assert speeds["m"].batch_size == 4
    assert speeds["m"].tokens_per_second == pytest.approx(4e3 / speeds["m"].ms_per_step)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(TypeError, match="non-empty dict"):
        time_decode({}, torch.arange(3))
    with pytest.raises(TypeError, match="nn.Module"):
        time_decode({"m": "model"}, torch.arange(3))
    with pytest.raises(ValueError, match="positive int"):
        time_decode({"m": tiny_llama()}, torch.arange(3), new_tokens=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        time_decode({"m": tiny_llama()}, [1, 2, 3])
    with pytest.raises(TypeError, match="integer tensor"):
        time_decode({"m": tiny_llama()}, torch.zeros(3))
