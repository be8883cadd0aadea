"""Lesson 7 exercises: a GGUF block's bits per weight, a uniform model's perplexity, the KL
divergence per token, telling a real difference between two models from the noise of the text,
and an AWQ scale.

Each asks for one piece of the lesson, in the order it teaches them: predict what a Q4_1 weight
costs once its block's parameters are counted, and the perplexity of a model that knows nothing;
derive the metric that compares a quantized model's predictions with the reference's; reason
from a bootstrap interval; predict the scale AWQ gives a column whose inputs are large. The
reference solution of the KL is written here with plain torch, independent of
tutorlib.models.lm_eval, and named ``my_...`` like the learner's, so that a notebook's never
shadows tutorlib's.

Leaves out: perplexity as a function (one exp of a mean, shown in the lesson) and the bootstrap's
resampling (tutorlib.models.bootstrap).
"""

import math

import torch

from tutorlib.exercises.core import (
    Exercise,
    Wrong,
    call,
    expect_callable,
    expect_number,
    register,
    same_number,
    verify,
)

__all__: list[str] = []  # reference solutions are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l7-q4-1-bits

# GGUF's Q4_1 block (ggml-common.h, block_q4_1): a float16 d, a float16 m, 32 4-bit codes.
_BLOCK, _CODE_BITS, _HALF_BITS = 32, 4, 16
Q4_1_BITS_PER_WEIGHT = (2 * _HALF_BITS + _BLOCK * _CODE_BITS) / _BLOCK  # 5.0


def _check_q4_1_bits(answer: object) -> str:
    got = expect_number(answer, "the bits per weight")
    mistakes = [
        (4.0, "the block's parameters are stored too: d and m, 16 bits each, shared by 32 weights"),
        (4.5, "Q4_1 stores two float16 parameters per block, d and m: 4 + 32 / 32"),
        (6.0, "d and m are float16 (16 bits each), not float32"),
        (4.75, "m is a float16 minimum, not a uint8 zero point: (16 + 16) / 32 bits"),
        (20.0, "that is the bytes of a block; per weight it is 8 * 20 / 32 bits"),
        (160.0, "that is the bits of a whole block; divide by its 32 weights"),
        (36.0, "the parameters are shared by the 32 weights: 4 + 32 / 32, not 4 + 32"),
    ]
    verify(got, Q4_1_BITS_PER_WEIGHT, mistakes, same_number(abs_tol=1e-9), "Q4_1's block")
    return (
        "5.0 bits: each block of 32 weights holds 16 bytes of 4-bit codes and a float16 d and m "
        "(4 bytes), 20 bytes in all, 8 * 20 / 32 = 5 bits per weight."
    )


register(
    Exercise(
        id="l7-q4-1-bits",
        lesson=7,
        prompt="How many bits does one weight of a Q4_1 tensor take, its block's d and m included?",
        solution=Q4_1_BITS_PER_WEIGHT,
        checker=_check_q4_1_bits,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l7-uniform-perplexity

# A model that gives each of SmolLM2's 49,152 tokens probability 1/V has a negative
# log-likelihood of ln V nats at every position, and a perplexity of exp(ln V) = V.
VOCABULARY = 49_152
UNIFORM_PERPLEXITY = VOCABULARY


def _check_uniform_perplexity(answer: object) -> str:
    got = expect_number(answer, "the perplexity")
    mistakes = [
        (math.log(VOCABULARY), "that is the NLL per token, ln V nats; perplexity is its exp"),
        (math.log2(VOCABULARY), "that is the NLL in bits, log2 V; perplexity is 2 to that power"),
        (1 / VOCABULARY, "that is the probability of each token; perplexity is 1 / p here"),
        (1.0, "1 is a model always sure and right; a uniform model is as unsure as it gets"),
    ]
    verify(got, float(UNIFORM_PERPLEXITY), mistakes, same_number(rel_tol=1e-9), "V = 49,152")
    return (
        "49,152: every token costs -ln(1/V) = ln V nats, and exp(ln V) = V. A perplexity reads as "
        "'as unsure as a uniform choice among that many tokens'."
    )


register(
    Exercise(
        id="l7-uniform-perplexity",
        lesson=7,
        prompt="A model gives all 49,152 tokens of its vocabulary equal probability: perplexity?",
        solution=UNIFORM_PERPLEXITY,
        checker=_check_uniform_perplexity,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l7-kl


def my_kl_per_token(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean KL(P_ref || P) per token, in nats, from two (tokens, vocab) tensors of logits.

    KL_t = sum_v p_ref(v) * (log p_ref(v) - log p(v)), with log p = log_softmax(logits);
    the result is the mean of KL_t over the tokens. 0 when the two are the same.
    Example: p_ref = (1/4, 3/4), p = (1/2, 1/2) for one token: 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308.
    """
    log_r = reference_logits.double().log_softmax(-1)
    log_p = logits.double().log_softmax(-1)
    return float((log_r.exp() * (log_r - log_p)).sum(-1).mean())


def _kl_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(71)
    reference = torch.randn(6, 10, generator=g) * 2
    return [
        (
            "p_ref = (1/4, 3/4), p = (1/2, 1/2), one token",
            torch.tensor([[0.0, math.log(3.0)]]),
            torch.tensor([[0.0, 0.0]]),
        ),
        ("6 tokens, 10-token vocabulary", reference, reference + torch.randn(6, 10, generator=g)),
        ("a model against itself", reference, reference.clone()),
        ("logits shifted by a constant", reference, reference + 5.0),
    ]


def _kl_mistakes(reference_logits: torch.Tensor, logits: torch.Tensor) -> list:
    log_r = reference_logits.double().log_softmax(-1)
    log_p = logits.double().log_softmax(-1)
    p_r, p = log_r.exp(), log_p.exp()
    per_token = (p_r * (log_r - log_p)).sum(-1)
    return [
        (float((p * (log_p - log_r)).sum(-1).mean()), "that is KL(P || P_ref): weight by p_ref"),
        (float(per_token.sum()), "take the mean over tokens, not the sum"),
        (float(per_token.mean() / math.log(2)), "that is in bits; use the natural log (nats)"),
        (float((log_r - log_p).sum(-1).mean()), "weight each log ratio by p_ref(v)"),
        (float((p_r * (p_r - p)).sum(-1).mean()), "use log probabilities, not probabilities"),
        (
            float((p_r * (reference_logits - logits).double()).sum(-1).mean()),
            "normalise the logits first: log p = log_softmax(logits)",
        ),
    ]


def _check_kl(answer: object) -> str:
    function = expect_callable(answer, 'check("l7-kl", my_kl_per_token)')
    for case, reference_logits, logits in _kl_cases():
        got = expect_number(call(function, reference_logits, logits, case=case), "the KL")
        # a float32 log_softmax of logits of size ~10 errs by ~1e-6: allow for it
        verify(
            got,
            my_kl_per_token(reference_logits, logits),
            _kl_mistakes(reference_logits, logits),
            same_number(rel_tol=1e-4, abs_tol=1e-6),
            case,
        )
    return "right: KL_t = sum_v p_ref (log p_ref - log p), averaged over tokens; 0 for itself."


register(
    Exercise(
        id="l7-kl",
        lesson=7,
        prompt="Write my_kl_per_token(reference_logits, logits): the mean KL(P_ref || P) in nats.",
        solution=my_kl_per_token,
        checker=_check_kl,
    )
)


# ---------------------------------------------------------------- l7-noise

# Two variants against the same reference on the same windows (paired bootstrap, 95%):
# A: perplexity ratio 1.004, interval [0.997, 1.012]; B: ratio 1.021, interval [1.008, 1.035].
NOISE_ANSWER = "A"


def _check_noise(answer: object) -> str:
    if not isinstance(answer, str):
        raise Wrong(
            f'answer with a letter in quotes, "A", "B", "both" or "neither"; got {answer!r}'
        )
    choice = answer.strip().lower()
    messages = {
        "b": "B's interval [1.008, 1.035] lies above 1: B is really worse. Which one contains 1?",
        "both": "B's interval excludes 1, so B's difference is larger than the noise",
        "a and b": "B's interval excludes 1, so B's difference is larger than the noise",
        "neither": "A's interval [0.997, 1.012] contains 1: its difference could be noise",
    }
    if choice in messages:
        raise Wrong(messages[choice])
    if choice != "a":
        raise Wrong(f'answer "A", "B", "both" or "neither"; got {answer!r}')
    return (
        "A: its interval contains 1 (no change), so on this text its 0.4% is within the noise "
        "of which windows were drawn; B's interval lies wholly above 1."
    )


register(
    Exercise(
        id="l7-noise",
        lesson=7,
        prompt="Which perplexity difference could be noise: A, B, both or neither?",
        solution=NOISE_ANSWER,
        checker=_check_noise,
        kind="reason",
    )
)


# ---------------------------------------------------------------- l7-awq-scale

# Two input features with mean sizes m = (1, 16) and a = 0.5: m**a = (1, 4); centring divides by
# sqrt(max * min) = sqrt(4 * 1) = 2, so s = (0.5, 2.0) (tutorlib.quant.awq.activation_scales).
AWQ_MEAN_SIZES, AWQ_ALPHA = (1.0, 16.0), 0.5
AWQ_LARGE_SCALE = 2.0


def _check_awq_scale(answer: object) -> str:
    got = expect_number(answer, "the scale")
    mistakes = [
        (4.0, "that is m**a before centring: divide by sqrt(max s * min s) = sqrt(4 * 1)"),
        (16.0, "that is the mean size itself: raise it to a = 0.5 first, then centre"),
        (8.0, "centre m**a, not m: (16 ** 0.5) / sqrt(4 * 1)"),
        (0.5, "that is the small feature's scale; the large one gets the larger s"),
        (0.25, "s grows with the input's size: the large feature's column is scaled up"),
        (1.0, "a = 0.5 is not a = 0: the scales differ between the two features"),
    ]
    verify(got, AWQ_LARGE_SCALE, mistakes, same_number(abs_tol=1e-9), "m = (1, 16), a = 0.5")
    return (
        "2.0: m**a = (1, 4), centred by sqrt(4 * 1) = 2, so s = (0.5, 2). The column that meets "
        "the large inputs is doubled before rounding and halved after, so its rounding error is "
        "halved (while its group's step does not grow), and the large inputs amplify less."
    )


register(
    Exercise(
        id="l7-awq-scale",
        lesson=7,
        prompt="AWQ with a = 0.5, features of mean size 1 and 16: the large feature's scale?",
        solution=AWQ_LARGE_SCALE,
        checker=_check_awq_scale,
        kind="predict",
    )
)
