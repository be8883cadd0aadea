"""Tests of tutorlib.models.lm_eval (Lesson 7): perplexity, KL divergence, agreement, bootstrap.

Textbook cases computed by hand (a uniform model's perplexity is the vocabulary size; a
two-token text; KL of two known distributions), properties over random windows and texts
(hypothesis), and Hugging Face's documented strided-perplexity loop (labels with -100) on a
tiny random llama as the independent reference. Log probabilities are float64 here, so the
hand cases hold to float64 roundoff (rel 1e-12 leaves 4 orders of magnitude of slack over
2**-52 times the few dozen operations involved).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from tutorlib.models.lm_eval import (
    PerplexityResult,
    Window,
    compare_perplexity,
    compare_to_log_probs,
    compare_to_reference,
    kl_divergence,
    paired_bootstrap,
    perplexity,
    reference_log_probs,
    sliding_windows,
    top1_agreement,
)


class Uniform:
    """Logits all equal: every token has probability 1 / vocab (float64: exact cases)."""

    def __init__(self, vocab: int, dtype: torch.dtype = torch.float64) -> None:
        self.vocab, self.dtype = vocab, dtype

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*ids.shape, self.vocab, dtype=self.dtype)


class Bigram:
    """Logits depend on the current token only: table[ids], (batch, tokens, vocab)."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


def fixed(rows: list[list[float]]):
    """A model whose logits at position t are rows[t], whatever the ids (float64: exact cases)."""
    logits = torch.tensor(rows, dtype=torch.float64)
    return lambda ids: logits[: ids.shape[1]].unsqueeze(0)


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256)  # fmt: skip
    return LlamaForCausalLM(config).eval()


# ---------------------------------------------------------------- the windows


def test_sliding_windows_by_hand() -> None:
    assert sliding_windows(10, 4, 4) == (Window(0, 4, 1), Window(4, 8, 5), Window(8, 10, 9))
    assert sliding_windows(10, 4, 2) == (
        Window(0, 4, 1), Window(2, 6, 4), Window(4, 8, 6), Window(6, 10, 8),
    )  # fmt: skip
    assert sliding_windows(9, 4) == (Window(0, 4, 1), Window(4, 8, 5))  # [8, 9) scores nothing
    assert [w.n_scored for w in sliding_windows(10, 4, 2)] == [3, 2, 2, 2]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 300), window=st.integers(2, 64), data=st.data())
def test_every_token_is_scored_once_with_context(n: int, window: int, data) -> None:
    stride = data.draw(st.integers(1, window))
    windows = sliding_windows(n, window, stride)
    scored = [t for w in windows for t in range(w.first_scored, w.end)]
    assert len(scored) == len(set(scored))  # at most once
    for w in windows:
        assert w.end - w.begin <= window and w.begin < w.first_scored < w.end <= n
    if stride < window:
        assert scored == list(range(1, n))  # every token but the first
    else:
        assert set(scored) == set(range(1, n)) - set(range(0, n, window))  # not window starts


# ---------------------------------------------------------------- perplexity by hand


@pytest.mark.parametrize("vocab", [2, 7, 49152])
@pytest.mark.parametrize(("window", "stride"), [(8, 8), (8, 3), (64, None)])
def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary(vocab, window, stride) -> None:
    ids = torch.arange(40) % vocab
    result = perplexity(Uniform(vocab), ids, window, stride)
    assert result.value == pytest.approx(vocab, rel=1e-12)
    assert result.mean_nll == pytest.approx(math.log(vocab), rel=1e-12)


@pytest.mark.parametrize("vocab", [2, 7, 49152])
def test_float32_logits_are_scored_in_float32(vocab) -> None:
    # log_softmax in float32: each NLL = lse - x carries a few units of float32's eps relative
    # to ln V, so the perplexity's relative error is at most a few eps * ln V (4 allows slack).
    ids = torch.arange(40) % vocab
    result = perplexity(Uniform(vocab, torch.float32), ids, window=8)
    eps = torch.finfo(torch.float32).eps
    assert result.value == pytest.approx(vocab, rel=4 * eps * math.log(vocab))


def test_two_tokens_by_hand() -> None:
    # Position 0 predicts token 1 with p = 3/4: NLL = ln(4/3) = 0.2877, PPL = 4/3.
    model = fixed([[0.0, math.log(3.0)], [5.0, 0.0]])
    result = perplexity(model, torch.tensor([0, 1]), window=2)
    assert result.nll_sums == pytest.approx((math.log(4 / 3),), rel=1e-12)
    assert result.token_counts == (1,)
    assert result.value == pytest.approx(4 / 3, rel=1e-12)
    assert (result.window, result.stride) == (2, 2)


def test_perplexity_is_token_weighted() -> None:
    # Windows of 3 scored tokens (NLL ln 2 each) and 1 token (NLL ln 8): exp((3 ln 2 + ln 8)
    # / 4) = exp(6 ln 2 / 4) = 2**1.5, not the mean of the windows' perplexities.
    probabilities = [[0.5, 0.5, 0.0, 0.0], [1 / 8, 1 / 8, 3 / 8, 3 / 8]]
    table = torch.log(torch.tensor(probabilities, dtype=torch.float64))
    ids = torch.tensor([0, 0, 0, 0, 1, 0])  # windows [0, 4) and [4, 6) of window 4
    result = perplexity(Bigram(table), ids, window=4)
    assert result.token_counts == (3, 1)
    assert result.value == pytest.approx(2**1.5, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 80),
    window=st.integers(2, 24),
    data=st.data(),
)
def test_windows_change_which_tokens_count_not_their_scores(seed, n, window, data) -> None:
    # A bigram model ignores context, so any windowing gives each scored token the NLL that
    # one pass over the whole text gives it.
    stride = data.draw(st.integers(1, window))
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(6, 6, generator=generator)
    ids = torch.randint(0, 6, (n,), generator=generator)
    nll = -table.double().log_softmax(-1)[ids[:-1], ids[1:]]  # nll[t - 1] scores token t
    scored = [t for w in sliding_windows(n, window, stride) for t in range(w.first_scored, w.end)]
    expected = math.exp(nll[[t - 1 for t in scored]].mean())
    # float32 logits are scored in float32: a token's NLL (|x - lse| < 10 here) errs by a few
    # eps * 10 at most, and the perplexity's relative error is the mean NLL's absolute error.
    rel = 16 * torch.finfo(torch.float32).eps * 10
    assert perplexity(Bigram(table), ids, window, stride).value == pytest.approx(expected, rel=rel)


def test_agrees_with_hugging_face_strided_loop(tiny_llama: LlamaForCausalLM) -> None:
    # The loop of transformers' "Perplexity of fixed-length models" guide: labels are the ids
    # with all but the last trg_len set to -100, and the model's loss is the mean NLL of the
    # labels it shifts by one. transformers computes that loss in float32 (rel. error ~1e-7
    # per token); 1e-5 allows for summing 64 of them.
    ids = torch.randint(0, 50, (200,), generator=torch.Generator().manual_seed(1))
    window, stride = 64, 24
    sums, previous_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        target = ids[begin:end].clone().unsqueeze(0)
        target[:, : -(end - previous_end)] = -100
        n_scored = int((target[:, 1:] != -100).sum())
        with torch.no_grad():
            sums.append(
                float(tiny_llama(ids[begin:end].unsqueeze(0), labels=target).loss) * n_scored
            )
        previous_end = end
        if end == len(ids):
            break
    result = perplexity(tiny_llama, ids, window, stride)
    assert result.nll_sums == pytest.approx(sums, rel=1e-5)
    assert sum(result.token_counts) == len(ids) - 1


# ---------------------------------------------------------------- a model against its reference


def test_kl_and_agreement_by_hand() -> None:
    # p_ref = (1/4, 3/4), p = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812.
    reference = fixed([[0.0, math.log(3.0)], [0.0, 0.0]])
    model = fixed([[0.0, 0.0], [0.0, 0.0]])
    ids = torch.tensor([0, 1])
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_divergence(model, reference, ids, window=2).value == pytest.approx(expected, 1e-12)
    assert expected == pytest.approx(0.130812, abs=1e-6)
    assert top1_agreement(model, reference, ids, window=2).value == 0.0  # argmax 0 (a tie) vs 1


def test_a_model_against_itself(tiny_llama: LlamaForCausalLM) -> None:
    ids = torch.randint(0, 50, (100,), generator=torch.Generator().manual_seed(2))
    comparison = compare_to_reference(tiny_llama, tiny_llama, ids, window=32, stride=16)
    assert comparison.kl_divergence.value == 0.0  # log p_ref - log p is exactly 0
    assert comparison.top1_agreement.value == 1.0
    assert comparison.perplexity == comparison.reference_perplexity
    assert comparison.perplexity == perplexity(tiny_llama, ids, window=32, stride=16)


def test_kl_counts_and_parts_agree_with_the_one_pass(tiny_llama: LlamaForCausalLM) -> None:
    ids = torch.randint(0, 50, (90,), generator=torch.Generator().manual_seed(3))
    uniform = Uniform(50)
    comparison = compare_to_reference(uniform, tiny_llama, ids, window=40)
    assert comparison.kl_divergence == kl_divergence(uniform, tiny_llama, ids, window=40)
    assert comparison.top1_agreement == top1_agreement(uniform, tiny_llama, ids, window=40)
    assert comparison.kl_divergence.token_counts == (39, 39, 9)
    assert comparison.perplexity.value == pytest.approx(50, rel=1e-12)
    # KL(ref || uniform) = ln V - H(ref) lies in [0, ln V].
    assert 0 < comparison.kl_divergence.value < math.log(50)
    agreements = comparison.top1_agreement.sums
    assert all(
        float(a).is_integer() and 0 <= a <= n for a, n in zip(agreements, (39, 39, 9), strict=True)
    )


# ---------------------------------------------------------------- the bootstrap


def test_paired_bootstrap_by_hand() -> None:
    result = paired_bootstrap([300, 320, 310], [303, 321, 318], [100, 100, 100])
    assert result.difference == pytest.approx(0.04, rel=1e-12)  # 12 nats over 300 tokens
    assert result.low <= result.difference <= result.high
    assert (result.confidence, result.resamples) == (0.95, 1000)


def test_a_constant_per_token_shift_has_no_spread() -> None:
    counts = [10, 50, 20, 70]
    a = [1.0 * n for n in counts]
    b = [1.5 * n for n in counts]  # 0.5 nats more on every token
    result = paired_bootstrap(a, b, counts)
    assert result.low == pytest.approx(0.5, rel=1e-12)
    assert result.high == pytest.approx(0.5, rel=1e-12)
    assert result.excludes_zero


def test_identical_models_differ_by_exactly_zero() -> None:
    result = paired_bootstrap([3.0, 4.0, 5.0], [3.0, 4.0, 5.0], [2, 2, 2])
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)
    assert not result.excludes_zero


def test_noise_is_recognised_as_noise() -> None:
    # Differences of +-1 nat per window around 0: the interval must contain 0.
    a = [100.0] * 20
    b = [100.0 + (1 if i % 2 else -1) for i in range(20)]
    result = paired_bootstrap(a, b, [50] * 20)
    assert result.difference == 0.0
    assert result.low < 0 < result.high and not result.excludes_zero


def test_the_bootstrap_is_seeded() -> None:
    a = [float(x) for x in range(12)]
    b = [x + 0.1 * x**2 - 3 for x in a]  # differences spread over windows
    n = [10] * 12
    assert paired_bootstrap(a, b, n, seed=7) == paired_bootstrap(a, b, n, seed=7)
    assert paired_bootstrap(a, b, n, seed=7) != paired_bootstrap(a, b, n, seed=8)
    wider = paired_bootstrap(a, b, n, confidence=0.99)
    narrower = paired_bootstrap(a, b, n, confidence=0.5)
    assert wider.low <= narrower.low <= narrower.high <= wider.high


def test_compare_perplexity_is_the_ratio(tiny_llama: LlamaForCausalLM) -> None:
    ids = torch.randint(0, 50, (120,), generator=torch.Generator().manual_seed(4))
    baseline = perplexity(tiny_llama, ids, window=30)
    candidate = perplexity(Uniform(50), ids, window=30)
    ratio = compare_perplexity(baseline, candidate)
    assert ratio.ratio == pytest.approx(candidate.value / baseline.value, rel=1e-12)
    assert ratio.low <= ratio.ratio <= ratio.high
    same = compare_perplexity(baseline, baseline)
    assert (same.ratio, same.low, same.high) == (1.0, 1.0, 1.0) and not same.excludes_one
    other_windows = perplexity(tiny_llama, ids, window=40)
    with pytest.raises(ValueError, match="scored on different windows"):
        compare_perplexity(baseline, other_windows)
    with pytest.raises(TypeError, match="candidate must be a PerplexityResult"):
        compare_perplexity(baseline, 12.3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("ids", "error", "message"),
    [
        (torch.tensor([], dtype=torch.long), ValueError, "at least 2 ids"),
        (torch.tensor([3]), ValueError, "at least 2 ids"),
        (torch.zeros(2, 5, dtype=torch.long), ValueError, r"must be 1-D .* shape \(2, 5\)"),
        (torch.tensor([1.0, 2.0]), TypeError, "token_ids must be an integer tensor"),
        (torch.tensor([True, False]), TypeError, "token_ids must be an integer tensor"),
        ([1, 2, 3], TypeError, "token_ids must be a torch.Tensor"),
        (torch.tensor([1, -1]), ValueError, "negative id, -1"),
        (torch.tensor([1, 7]), ValueError, "ids beyond the 7 logits per token"),
    ],
    ids=["empty", "one-id", "2-D", "float", "bool", "list", "negative", "beyond-logits"],
)
def test_bad_token_ids_are_refused(ids, error, message) -> None:
    with pytest.raises(error, match=message):
        perplexity(Uniform(7), ids, window=4)


def test_ids_beyond_the_embedding_are_refused_before_the_model_runs(tiny_llama) -> None:
    with pytest.raises(ValueError, match="id 50, but reference's vocabulary has 50 ids"):
        kl_divergence(Uniform(60), tiny_llama, torch.tensor([1, 2, 50]), window=4)


@pytest.mark.parametrize(
    ("window", "stride", "error", "message"),
    [
        (1, 1, ValueError, r"window must lie in \[2, inf\], got 1"),
        (8, 9, ValueError, "stride=9 is larger than window=8"),
        (8, 0, ValueError, "stride must be a positive int"),
        (8.0, 8, TypeError, "window must be an int"),
        (8, "4", TypeError, "stride must be an int"),
    ],
    ids=["window-1", "stride-over-window", "stride-0", "float-window", "str-stride"],
)
def test_bad_windows_are_refused(window, stride, error, message) -> None:
    with pytest.raises(error, match=message):
        perplexity(Uniform(5), torch.tensor([1, 2, 3]), window, stride)


def test_bad_models_are_refused(tiny_llama: LlamaForCausalLM) -> None:
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="model must be callable"):
        perplexity("gpt2", ids)  # type: ignore[arg-type]
    tiny_llama.train()
    try:
        with pytest.raises(ValueError, match=r"reference is in training mode.*reference.eval\(\)"):
            kl_divergence(Uniform(50), tiny_llama, ids)
    finally:
        tiny_llama.eval()
    with pytest.raises(ValueError, match=r"logits of shape \(1, tokens, vocabulary\)"):
        perplexity(lambda x: torch.zeros(x.shape[1], 5), ids)
    with pytest.raises(ValueError, match="NaN logits"):
        perplexity(lambda x: torch.full((1, x.shape[1], 5), float("nan")), ids)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (([1.0, 2.0], [1.0], [1, 1]), {}, ValueError, "one entry per window each, got 2, 1 and 2"),
        (([1.0], [1.0], [1]), {}, ValueError, "at least 2 windows"),
        (([1.0, 2.0], [1.0, 2.0], [1, 0]), {}, ValueError, "token_counts must be a positive"),
        ((["a", 2.0], [1.0, 2.0], [1, 1]), {}, TypeError, "sums_a must be a real number"),
        (("12", [1.0, 2.0], [1, 1]), {}, TypeError, "sums_a must be a sequence"),
        (([1.0, 2.0], [1.0, 2.0], [1, 1]), {"confidence": 1.0}, ValueError, "1.0 has no finite"),
        (([1.0, 2.0], [1.0, 2.0], [1, 1]), {"resamples": 0}, ValueError, "resamples must be"),
        (([1.0, 2.0], [1.0, float("nan")], [1, 1]), {}, ValueError, "sums_b must be finite"),
    ],
    ids=[
        "lengths",
        "one-window",
        "zero-count",
        "str-sum",
        "str",
        "confidence-1",
        "resamples-0",
        "nan",
    ],  # fmt: skip
)
def test_bad_bootstrap_inputs_are_refused(args, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        paired_bootstrap(*args, **kwargs)


def test_results_are_frozen() -> None:
    result = perplexity(Uniform(3), torch.tensor([0, 1, 2]), window=3)
    assert isinstance(result, PerplexityResult)
    with pytest.raises(AttributeError):
        result.value = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- one reference, many variants


def test_kept_log_probs_give_the_same_numbers_bit_for_bit(tiny_llama) -> None:
    ids = torch.randint(0, 50, (90,), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    other = LlamaForCausalLM(tiny_llama.config).eval()
    kept = reference_log_probs(tiny_llama, ids, window=32, stride=32)
    assert kept.nbytes == 4 * 87 * 50  # 3 windows scoring 31, 31 and 25 tokens, float32
    assert compare_to_log_probs(other, kept) == compare_to_reference(other, tiny_llama, ids, 32, 32)
    assert kept.perplexity() == perplexity(tiny_llama, ids, window=32, stride=32)


def test_a_model_against_its_own_kept_log_probs(tiny_llama) -> None:
    ids = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(6))
    comparison = compare_to_log_probs(tiny_llama, reference_log_probs(tiny_llama, ids, 16))
    assert comparison.kl_divergence.value == 0.0
    assert comparison.top1_agreement.value == 1.0


def test_kept_log_probs_refuse_what_does_not_match(tiny_llama) -> None:
    ids = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(7))
    with pytest.raises(TypeError, match="ReferenceLogProbs"):
        compare_to_log_probs(tiny_llama, tiny_llama)
    kept = reference_log_probs(tiny_llama, ids, 16)
    with pytest.raises(ValueError, match="same vocabulary"):
        compare_to_log_probs(Uniform(60), kept)
    with pytest.raises(ValueError, match="training mode"):
        compare_to_log_probs(tiny_llama.train(), kept)
    tiny_llama.eval()


def test_kl_with_an_impossible_token_is_handled() -> None:
    # p_ref(v) = 0 for one token (a logit of -inf): its term is 0 * log 0 = 0, not NaN.
    reference = fixed([[0.0, float("-inf"), 0.0], [0.0, 0.0, 0.0]])
    model = fixed([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = 2 * 0.5 * math.log(0.5 / (1 / 3))  # p_ref = (1/2, 0, 1/2), p uniform
    value = kl_divergence(model, reference, torch.tensor([0, 2]), window=2).value
    assert value == pytest.approx(expected, rel=1e-12)
