"""Lesson 7 exercises: the references agree with tutorlib; each common mistake is named."""

import math

import pytest
import torch

from tutorlib.exercises import EXERCISES, check
from tutorlib.exercises.lesson7 import (
    AWQ_ALPHA,
    AWQ_LARGE_SCALE,
    AWQ_MEAN_SIZES,
    NOISE_ANSWER,
    Q4_1_BITS_PER_WEIGHT,
    UNIFORM_PERPLEXITY,
    VOCABULARY,
    my_kl_per_token,
)
from tutorlib.formats.gguf import Q4_1
from tutorlib.models.lm_eval import kl_divergence
from tutorlib.models.perplexity import perplexity
from tutorlib.quant.awq import activation_scales


def test_every_solution_passes_its_own_check():
    for exercise_id in (
        "l7-q4-1-bits",
        "l7-uniform-perplexity",
        "l7-kl",
        "l7-noise",
        "l7-awq-scale",
    ):
        feedback = check(exercise_id, EXERCISES[exercise_id].solution)
        assert feedback.passed, feedback.message


def test_q4_1_bits_is_the_block_formats():
    assert Q4_1_BITS_PER_WEIGHT == Q4_1.bits_per_weight == 5.0


class _Uniform(torch.nn.Module):
    """A causal LM that gives every token of its vocabulary the same logit."""

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, VOCABULARY)
        return type("Output", (), {"logits": logits})()


def test_awq_scale_is_what_tutorlib_computes():
    x = torch.tensor([AWQ_MEAN_SIZES, [-m for m in AWQ_MEAN_SIZES]])  # mean |x| = (1, 16)
    scales = activation_scales(x, AWQ_ALPHA)
    assert scales.tolist() == [0.5, AWQ_LARGE_SCALE]


def test_uniform_perplexity_is_what_the_harness_measures():
    ids = torch.arange(40) % VOCABULARY
    measured = perplexity(_Uniform().eval(), ids, window=8, stride=8)
    value = getattr(measured, "value", measured)
    # The harness takes log_softmax in float32: ln V = 10.8 carries an error of a few 2**-24
    # relative, which exp turns into ~1e-6 of the perplexity.
    assert value == pytest.approx(UNIFORM_PERPLEXITY, rel=2e-6) and UNIFORM_PERPLEXITY == 49_152


def test_kl_agrees_with_the_harness():
    # The harness scores every position of a window but the first: a window of 7 ids whose
    # logits at positions 0..5 are the exercise's 6 rows (float64: exact arithmetic).
    g = torch.Generator().manual_seed(0)
    reference_rows, rows = torch.randn(2, 6, 9, generator=g, dtype=torch.float64)
    ids = torch.zeros(7, dtype=torch.long)

    def fixed(table):
        return lambda x: torch.cat([table, table[:1]])[: x.shape[1]].unsqueeze(0)

    harness = kl_divergence(fixed(rows), fixed(reference_rows), ids, window=7).value
    assert my_kl_per_token(reference_rows, rows) == pytest.approx(harness, rel=1e-12)


def test_the_worked_example():
    reference = torch.tensor([[0.0, math.log(3.0)]])
    assert my_kl_per_token(reference, torch.zeros(1, 2)) == pytest.approx(0.130812, abs=1e-6)


def _reversed_kl(reference_logits, logits):
    log_r, log_p = reference_logits.log_softmax(-1), logits.log_softmax(-1)
    return float((log_p.exp() * (log_p - log_r)).sum(-1).mean())


def _kl_in_bits(reference_logits, logits):
    return my_kl_per_token(reference_logits, logits) / math.log(2)


def _summed_kl(reference_logits, logits):
    return my_kl_per_token(reference_logits, logits) * reference_logits.shape[0]


def _unnormalised(reference_logits, logits):
    p_r = reference_logits.double().softmax(-1)
    return float((p_r * (reference_logits - logits).double()).sum(-1).mean())


WRONG = [
    ("l7-q4-1-bits", 4, "the block's parameters are stored too"),
    ("l7-q4-1-bits", 4.5, "two float16 parameters per block"),
    ("l7-q4-1-bits", 6.0, "not float32"),
    ("l7-q4-1-bits", 4.75, "not a uint8 zero point"),
    ("l7-q4-1-bits", 20, "bytes of a block"),
    ("l7-q4-1-bits", 7.25, "the right result is 5"),
    ("l7-uniform-perplexity", math.log(49_152), "its exp"),
    ("l7-uniform-perplexity", math.log2(49_152), "the NLL in bits"),
    ("l7-uniform-perplexity", 1, "always sure and right"),
    ("l7-kl", _reversed_kl, "that is KL(P || P_ref)"),
    ("l7-kl", _kl_in_bits, "that is in bits"),
    ("l7-kl", _summed_kl, "mean over tokens, not the sum"),
    ("l7-kl", _unnormalised, "normalise the logits first"),
    ("l7-kl", lambda r, p: 0.0, "the right result is 0.130812"),
    ("l7-kl", 0.13, "asks for a function"),
    ("l7-awq-scale", 4.0, "before centring"),
    ("l7-awq-scale", 16, "the mean size itself"),
    ("l7-awq-scale", 8, "centre m**a, not m"),
    ("l7-awq-scale", 0.5, "the small feature's scale"),
    ("l7-awq-scale", 1, "a = 0.5 is not a = 0"),
    ("l7-awq-scale", 3.0, "the right result is 2"),
    ("l7-noise", "B", "B is really worse"),
    ("l7-noise", "both", "B's interval excludes 1"),
    ("l7-noise", "neither", "A's interval [0.997, 1.012] contains 1"),
    ("l7-noise", "C", 'answer "A", "B", "both" or "neither"'),
    ("l7-noise", 1, "a letter in quotes"),
]


@pytest.mark.parametrize(
    "exercise_id, answer, message", WRONG, ids=[f"{w[0]}-{w[2][:25]}" for w in WRONG]
)
def test_wrong_answers_get_their_own_message(exercise_id, answer, message):
    feedback = check(exercise_id, answer)
    assert not feedback.passed
    assert message in feedback.message


def test_answers_are_read_generously():
    assert check("l7-noise", " a ").passed
    assert NOISE_ANSWER == "A"
    assert check("l7-q4-1-bits", torch.tensor(5.0)).passed


def test_stubs_are_not_solved_yet():
    assert "not solved yet" in check("l7-kl", lambda r, p: None).message
    assert "not solved yet" in check("l7-q4-1-bits", ...).message
    assert "not solved yet" in check("l7-noise", None).message
