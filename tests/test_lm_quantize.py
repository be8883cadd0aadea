"""Tests of tutorlib.models.lm_quantize (Lesson 7): recipes, a causal LM re-quantized, its size.

Bits per weight by hand for each form; a tiny random llama (tied embeddings, like SmolLM2)
quantized by RTN (every weight equals the recipe's own quantizer, the embedding untouched)
and by GPTQ block by block, checked against the independent whole-model driver of Lesson 6
(tutorlib.layers.calibrated, which re-runs the whole model for every layer): both feed each
layer the same inputs, so the weights must agree bit for bit. Sizes are counted by hand.
"""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tutorlib.formats.gguf import F32, Q8_0
from tutorlib.layers.calibrated import fake_quantize_linear_weights
from tutorlib.models.lm_quantize import WeightRecipe, lm_storage, quantize_lm_weights
from tutorlib.quant.awq import AWQQuantized, activation_scales
from tutorlib.quant.block_rtn import OffsetQuantizedTensor
from tutorlib.quant.rtn import rtn_quantize

_LLAMA_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # fmt: skip


@pytest.fixture
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize(
    ("recipe", "in_features", "expected"),
    [
        (WeightRecipe("rtn", "offset", 4, 32), 576, 5.0),  # GGUF Q4_1: 4 + (16 + 16) / 32
        (WeightRecipe("rtn", "zero_point", 4, 32), 576, 4.75),  # 4 + (16 + 8) / 32
        (WeightRecipe("gptq", "zero_point", 3, 128), 1536, 3.1875),  # 3 + 24 / 128
        (WeightRecipe("rtn", "symmetric", 4, 32), 576, 4.5),  # Q4_0-like: 4 + 16 / 32
        (WeightRecipe("rtn", "symmetric", 8, None), 576, 8 + 32 / 576),  # float32 per row
    ],
    ids=["q4_1", "zero-point", "gptq-g128", "symmetric", "int8-per-channel"],
)
def test_bits_per_weight_by_hand(recipe, in_features, expected) -> None:
    assert recipe.bits_per_weight(in_features) == pytest.approx(expected, rel=1e-15)


def test_recipe_labels() -> None:
    assert WeightRecipe("rtn", "offset", 4).label == "RTN 4-bit offset g32"
    assert WeightRecipe("gptq", "zero_point", 3).label == "GPTQ 3-bit zero-point g32"
    assert WeightRecipe("rtn", "symmetric", 8, None).label == "RTN 8-bit symmetric per channel"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "hqq"}, "method must be one of"),
        ({"method": "awq", "form": "symmetric"}, "zero-point grid"),
        ({"form": "nf4"}, "form must be one of"),
        ({"bits": 1}, "bits must be one of"),
        ({"method": "gptq", "form": "offset"}, "zero-point grid"),
        ({"group_size": None}, "offset form is a block format"),
        ({"group_size": 0}, "positive int"),
    ],
)
def test_bad_recipes_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        WeightRecipe(**({"method": "rtn", "form": "offset", "bits": 4} | kwargs))


@pytest.mark.parametrize(
    "recipe",
    [
        WeightRecipe("rtn", "offset", 4, 32),
        WeightRecipe("rtn", "zero_point", 3, 32),
        WeightRecipe("rtn", "symmetric", 8, None),
    ],
    ids=["offset", "zero-point", "symmetric-per-channel"],
)
def test_rtn_writes_each_recipes_grid_and_leaves_the_embedding(tiny_llama, recipe) -> None:
    original = copy.deepcopy(tiny_llama)
    results = quantize_lm_weights(tiny_llama, recipe)
    assert len(results) == 14  # 2 layers x (q, k, v, o, gate, up, down); lm_head skipped
    for name, quantized in results.items():
        before = original.get_submodule(name).weight.detach()
        assert torch.equal(quantized.dequantize(), recipe.quantize(before).dequantize())
        assert torch.equal(tiny_llama.get_submodule(name).weight, quantized.dequantize())
    embedding = tiny_llama.model.embed_tokens.weight
    assert torch.equal(embedding, original.model.embed_tokens.weight)
    assert tiny_llama.lm_head.weight is embedding  # still tied


def test_offset_recipe_returns_offset_grids(tiny_llama) -> None:
    results = quantize_lm_weights(tiny_llama, WeightRecipe("rtn", "offset", 4, 32))
    assert all(isinstance(q, OffsetQuantizedTensor) for q in results.values())


def test_without_skip_the_tied_head_would_requantize_the_embedding(tiny_llama) -> None:
    before = tiny_llama.model.embed_tokens.weight.detach().clone()
    quantize_lm_weights(tiny_llama, WeightRecipe("rtn", "zero_point", 2, 32), skip=())
    assert not torch.equal(tiny_llama.model.embed_tokens.weight, before)  # why skip exists


@pytest.mark.parametrize("bits", [4, 3])
def test_gptq_block_by_block_equals_the_whole_model_driver(tiny_llama, bits) -> None:
    ids = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(tiny_llama)
    ours = quantize_lm_weights(tiny_llama, WeightRecipe("gptq", "zero_point", bits, 32), ids)
    theirs = fake_quantize_linear_weights(
        reference, "gptq", bits, 32, run=lambda: reference(ids), skip=("lm_head",)
    )
    assert list(ours) == list(theirs)  # same layers, same calling order
    for name in ours:
        assert torch.equal(ours[name].q, theirs[name].quantized.q), name
        ours_weight, their_weight = (m.get_submodule(name).weight for m in (tiny_llama, reference))
        assert torch.equal(ours_weight, their_weight)


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calibrated_method_beats_rtn_on_the_calibration_text(tiny_llama, method) -> None:
    ids = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(2))
    rtn, calibrated = copy.deepcopy(tiny_llama), copy.deepcopy(tiny_llama)
    quantize_lm_weights(rtn, WeightRecipe("rtn", "zero_point", 2, 32))
    quantize_lm_weights(calibrated, WeightRecipe(method, "zero_point", 2, 32), ids)
    with torch.no_grad():
        target = tiny_llama(ids).logits
        errors = [(m(ids).logits - target).norm().item() for m in (rtn, calibrated)]
    assert errors[1] < errors[0]


def test_awq_scales_each_input_group_once_and_rounds_o_proj(tiny_llama) -> None:
    ids = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(3))
    original = copy.deepcopy(tiny_llama)
    results = quantize_lm_weights(tiny_llama, WeightRecipe("awq", "zero_point", 3, 32), ids)
    assert len(results) == 14  # 7 linears in each of 2 layers, the tied head skipped
    for index in range(2):
        prefix = f"model.layers.{index}"
        o_proj = results[f"{prefix}.self_attn.o_proj"]  # 1/s could not fold: rounded to nearest
        original_o = original.get_submodule(f"{prefix}.self_attn.o_proj").weight
        assert torch.equal(o_proj.q, rtn_quantize(original_o, 3, 32).q)
        for group in (_LLAMA_LINEARS[:3], _LLAMA_LINEARS[4:6]):  # q, k, v; gate, up
            found = [results[f"{prefix}.{name}"] for name in group]
            assert all(isinstance(q, AWQQuantized) for q in found)
        down = results[f"{prefix}.mlp.down_proj"]
        weight = tiny_llama.get_submodule(f"{prefix}.mlp.down_proj").weight
        assert torch.equal(weight, down.dequantize())  # the model holds W_hat = Q(W s) / s
    first = results["model.layers.0.self_attn.q_proj"]
    with torch.no_grad():  # layer 0's q, k, v read the embedding after the input norm
        x = original.model.layers[0].input_layernorm(original.model.embed_tokens(ids))
    assert torch.allclose(first.scales, activation_scales(x.reshape(-1, 64), first.alpha))


def test_awq_scales_fold_into_the_layers_before_at_no_cost(tiny_llama) -> None:
    # A deployed AWQ model stores Q(W diag(s)) and divides the inputs by s inside the layer
    # before: the norms' weights (query, key, value; gate, up) and up_proj's rows (down). That
    # model must compute what the fake-quantized one (W_hat = Q(W s) / s in place) computes.
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(4))
    fake = copy.deepcopy(tiny_llama)
    results = quantize_lm_weights(fake, WeightRecipe("awq", "zero_point", 4, 32), ids)
    folded = copy.deepcopy(fake)
    with torch.no_grad():
        for index, layer in enumerate(folded.model.layers):
            got = {n: results[f"model.layers.{index}.{n}"] for n in _LLAMA_LINEARS}
            layer.input_layernorm.weight /= got["self_attn.q_proj"].scales
            layer.post_attention_layernorm.weight /= got["mlp.gate_proj"].scales
            for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):  # fmt: skip
                stored = got[name].quantized.dequantize()  # Q(W diag(s)), what a file holds
                if name == "mlp.up_proj":  # its row j feeds down's input j: it takes down's 1/s
                    stored = stored / got["mlp.down_proj"].scales[:, None]
                layer.get_submodule(name).weight.copy_(stored)
        expected, actual = fake(ids).logits, folded(ids).logits
    scaled = [q.alpha for q in results.values() if isinstance(q, AWQQuantized) and q.alpha > 0]
    assert scaled  # some s differs from 1, so the folding is really tested
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_gptq_needs_calibration_and_a_llama_layout(tiny_llama) -> None:
    recipe = WeightRecipe("gptq", "zero_point", 4, 32)
    with pytest.raises(ValueError, match="GPTQ needs calibration_ids"):
        quantize_lm_weights(tiny_llama, recipe)
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        quantize_lm_weights(tiny_llama, recipe, torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        quantize_lm_weights(tiny_llama, recipe, torch.zeros(1, 5))
    mlp = torch.nn.Sequential(torch.nn.Linear(32, 32))
    with pytest.raises(ValueError, match="model.model.layers"):
        quantize_lm_weights(mlp, recipe, torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="GPTQ needs a layer's inputs"):
        recipe.quantize(torch.randn(4, 32))
    with pytest.raises(ValueError, match="AWQ needs calibration_ids"):
        quantize_lm_weights(tiny_llama, WeightRecipe("awq", "zero_point", 4, 32))


def test_bad_arguments_are_refused(tiny_llama) -> None:
    recipe = WeightRecipe("rtn", "offset", 4, 32)
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_lm_weights("model", recipe)
    with pytest.raises(TypeError, match="WeightRecipe"):
        quantize_lm_weights(tiny_llama, "q4_1")
    with pytest.raises(TypeError, match="sequence of names"):
        quantize_lm_weights(tiny_llama, recipe, skip="lm_head")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_lm_weights(torch.nn.Sequential(torch.nn.ReLU()), recipe)


def test_storage_by_hand(tiny_llama) -> None:
    # Linear weights per layer: q, o 64 x 64; k, v 32 x 64; gate, up 128 x 64; down 64 x 128.
    linear = 2 * (2 * 4096 + 2 * 2048 + 3 * 8192)
    embedding, norms = 64 * 64, 2 * 2 * 64 + 64  # 2 norms per layer, and the final one
    storage = lm_storage(tiny_llama, WeightRecipe("rtn", "offset", 4, 32))
    assert storage.linear_weights == linear == 73_728
    assert storage.bits_per_weight == 5.0
    assert storage.n_bytes == linear * 5 // 8 + embedding * 34 // 32 + 4 * norms
    fp32 = lm_storage(tiny_llama, None, embedding=F32)
    assert fp32.bits_per_weight == 32.0
    assert fp32.n_bytes == 4 * (linear + embedding + norms)  # RoPE's buffer is not stored
    assert lm_storage(tiny_llama, None, embedding=Q8_0).n_bytes < fp32.n_bytes


def test_storage_refuses_bad_arguments(tiny_llama) -> None:
    with pytest.raises(TypeError, match="WeightRecipe or None"):
        lm_storage(tiny_llama, "q4_1")
    with pytest.raises(TypeError, match="BlockFormat"):
        lm_storage(tiny_llama, None, embedding="Q8_0")
    with pytest.raises(ValueError, match="no nn.Linear outside skip"):
        lm_storage(torch.nn.Sequential(torch.nn.Linear(4, 4)), None, skip=("0",))
