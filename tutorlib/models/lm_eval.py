"""Lesson 7: how far a quantized language model strays from its reference, token by token.

Perplexity (tutorlib.models.perplexity) says how well one model predicts a text. Against a
reference model (the float one), the KL divergence KL(P_ref || P) per token (llama.cpp's "KLD")
and the top-1 agreement say how far a quantized model's *predictions* moved, which perplexity
alone hides: two models can have the same perplexity and disagree on many tokens. Both are
averaged over the same scored tokens as the perplexity (`sliding_windows`, no BOS added), from
log_softmax of the logits in their own precision (float32 at least).

A reference is compared with many variants, so its log-probabilities can be computed once
(`reference_log_probs`, kept by the caller in a `ReferenceLogProbs`) and every variant then costs
one forward pass instead of two (`compare_to_log_probs`). This module also re-exports
`perplexity` and the bootstrap (tutorlib.models.bootstrap): the lesson's harness is one import.

Left out on purpose: log-probabilities kept in less than float32 (a reference's for 4,096 tokens
of a 49,152-token vocabulary take 805 MB), and task benchmarks.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tutorlib.models.bootstrap import (
    PairedDifference,
    PerplexityRatio,
    compare_perplexity,
    paired_bootstrap,
)
from tutorlib.models.perplexity import (
    LanguageModel,
    PerplexityResult,
    TokenAverage,
    Window,
    _check_model,
    _check_token_ids,
    _check_window_and_stride,
    _log_probs,
    _nll_sum,
    _perplexity_result,
    _scored_logits,
    _token_average,
    perplexity,
    sliding_windows,
)

__all__ = [
    "ReferenceComparison",
    "compare_to_reference",
    "kl_divergence",
    "top1_agreement",
    "ReferenceLogProbs",
    "reference_log_probs",
    "compare_to_log_probs",
    # re-exported: the whole harness from one module
    "Window",
    "sliding_windows",
    "PerplexityResult",
    "TokenAverage",
    "perplexity",
    "PairedDifference",
    "paired_bootstrap",
    "PerplexityRatio",
    "compare_perplexity",
]


@dataclass(frozen=True)
class ReferenceComparison:
    """Both perplexities, KL(reference || model) and top-1 agreement, on the same tokens."""

    perplexity: PerplexityResult
    reference_perplexity: PerplexityResult
    kl_divergence: TokenAverage
    top1_agreement: TokenAverage


def _scores(
    log_p: torch.Tensor, log_r: torch.Tensor, targets: torch.Tensor
) -> tuple[float, float, float, float]:
    """One window: NLL sums of model and reference, KL sum, number of argmax agreements.

    KL_t = sum_v p_ref(v) (log p_ref(v) - log p(v)), with 0 * log 0 = 0; log-probs (n, vocab).
    """
    common = torch.promote_types(log_p.dtype, log_r.dtype)  # a float64 model vs a float32 one
    log_p, log_r = log_p.to(common), log_r.to(common)
    kl = float(F.kl_div(log_p, log_r, reduction="sum", log_target=True))  # one fused pass
    if not math.isfinite(kl):  # p_ref(v) = 0 somewhere: exp(-inf) * (-inf - log p) is NaN
        p_r = log_r.exp()
        kl = float(torch.where(p_r > 0, p_r * (log_r - log_p), 0.0).double().sum())
    agree = float((log_p.argmax(-1) == log_r.argmax(-1)).sum())
    return _nll_sum(log_p, targets), _nll_sum(log_r, targets), kl, agree


def _comparison(
    scores: list[tuple[float, float, float, float]], windows: tuple[Window, ...], window, stride
) -> ReferenceComparison:
    """The per-window scores summed into perplexities and per-token averages."""
    nll, reference_nll, kl, agree = (list(column) for column in zip(*scores, strict=True))
    counts = [w.n_scored for w in windows]
    return ReferenceComparison(
        perplexity=_perplexity_result(nll, counts, window, stride),
        reference_perplexity=_perplexity_result(reference_nll, counts, window, stride),
        kl_divergence=_token_average(kl, counts, window, stride),
        top1_agreement=_token_average(agree, counts, window, stride),
    )


def compare_to_reference(
    model: LanguageModel,
    reference: LanguageModel,
    token_ids: torch.Tensor,
    window: int = 512,
    stride: int | None = None,
) -> ReferenceComparison:
    """Perplexity of both, KL(reference || model) and top-1 agreement, in one pass over windows.

    Per scored token t: KL_t = sum_v p_ref(v) (log p_ref(v) - log p(v)) in nats (log_softmax in
    float32 at least), agree_t = [argmax_v p(v) == argmax_v p_ref(v)]; both are averaged over the
    scored tokens, like the perplexity (`sliding_windows`, no BOS added). Two forward passes per
    window; `kl_divergence` and `top1_agreement` return one part of this.
    Example: p_ref = (1/4, 3/4), p = (1/2, 1/2) at the one scored token: KL = 1/4 ln(1/2) +
    3/4 ln(3/2) = 0.1308 nats, agreement 0 (argmax 1 against a tie resolved to 0).
    """
    models = {
        "model": _check_model(model, "model"),
        "reference": _check_model(reference, "reference"),
    }
    token_ids = _check_token_ids(token_ids, models)
    window, stride = _check_window_and_stride(window, stride)
    windows = sliding_windows(len(token_ids), window, stride)
    scores = []
    with torch.no_grad():
        for w in windows:
            log_p, log_r = (_log_probs(_scored_logits(m, token_ids, w)) for m in models.values())
            scores.append(_scores(log_p, log_r, token_ids[w.first_scored : w.end]))
    return _comparison(scores, windows, window, stride)


def kl_divergence(
    model: LanguageModel,
    reference: LanguageModel,
    token_ids: torch.Tensor,
    window: int = 512,
    stride: int | None = None,
) -> TokenAverage:
    """Mean KL(reference || model) per scored token, in nats (llama.cpp's KLD).

    KL_t = sum_v p_ref(v) (log p_ref(v) - log p(v)), from log_softmax (float32 at least); 0
    exactly for a model compared with itself.
    Example: p_ref = (1/4, 3/4), p = (1/2, 1/2): 0.1308 nats.
    """
    return compare_to_reference(model, reference, token_ids, window, stride).kl_divergence


def top1_agreement(
    model: LanguageModel,
    reference: LanguageModel,
    token_ids: torch.Tensor,
    window: int = 512,
    stride: int | None = None,
) -> TokenAverage:
    """Fraction of scored positions where the model's most likely next token is the reference's.

    agreement = (1/N) sum_t [argmax p_t == argmax p_ref,t]; 1.0 for a model compared with itself.
    Example: argmaxes (5, 9, 9, 2) against the reference's (5, 9, 3, 2): 3 of 4, 0.75.
    """
    return compare_to_reference(model, reference, token_ids, window, stride).top1_agreement


# ---------------------------------------------------------------- one reference, many variants


@dataclass(frozen=True)
class ReferenceLogProbs:
    """A reference model's log-probabilities on every window of one text, computed once to
    compare many models with it: `log_probs[i]` is (windows[i].n_scored, vocab), float32 for a
    float32 model."""

    token_ids: torch.Tensor  # (n_tokens,) int64
    windows: tuple[Window, ...]
    log_probs: tuple[torch.Tensor, ...]
    window: int
    stride: int

    @property
    def nbytes(self) -> int:
        """Bytes of the kept log-probabilities: 4 * scored tokens * vocabulary in float32."""
        return sum(t.nbytes for t in self.log_probs)

    def perplexity(self) -> PerplexityResult:
        """The reference's own perplexity on these windows, from the kept log-probabilities:
        the same value as perplexity(reference, token_ids, window, stride)."""
        targets = [self.token_ids[w.first_scored : w.end] for w in self.windows]
        nll = [_nll_sum(lp, t) for lp, t in zip(self.log_probs, targets, strict=True)]
        counts = [w.n_scored for w in self.windows]
        return _perplexity_result(nll, counts, self.window, self.stride)


def reference_log_probs(
    reference: LanguageModel, token_ids: torch.Tensor, window: int = 512, stride: int | None = None
) -> ReferenceLogProbs:
    """Run the reference once over the windows of token_ids and keep its log-probabilities.

    The windows are `sliding_windows(len(token_ids), window, stride)`; each keeps log_softmax of
    the logits that predict its scored tokens. Memory: 4 * N * V bytes for N scored tokens and
    a vocabulary of V, e.g. 805 MB for 4,096 tokens of SmolLM2 (V = 49,152).
    Example: reference_log_probs(model, ids[:4105]) keeps 9 windows, 4,096 rows in all.
    """
    reference = _check_model(reference, "reference")
    token_ids = _check_token_ids(token_ids, {"reference": reference})
    window, stride = _check_window_and_stride(window, stride)
    windows = sliding_windows(len(token_ids), window, stride)
    with torch.no_grad():
        log_probs = tuple(_log_probs(_scored_logits(reference, token_ids, w)) for w in windows)
    return ReferenceLogProbs(token_ids, windows, log_probs, window, stride)


def compare_to_log_probs(model: LanguageModel, reference: ReferenceLogProbs) -> ReferenceComparison:
    """`compare_to_reference` against log-probabilities kept by `reference_log_probs`: one
    forward pass per window instead of two.

    Same windows, same formulas, same numbers as compare_to_reference(model, the reference
    model, token_ids, window, stride), bit for bit: the kept log-probabilities are the ones that
    function computes from the reference's logits.
    Example: a model compared with its own ReferenceLogProbs has KL 0.0 and agreement 1.0.
    """
    if not isinstance(reference, ReferenceLogProbs):
        raise TypeError(
            f"reference must be a ReferenceLogProbs from reference_log_probs(), got "
            f"{type(reference).__name__}; to compare with a model, use compare_to_reference"
        )
    model = _check_model(model, "model")
    token_ids = _check_token_ids(reference.token_ids, {"model": model})
    scores = []
    with torch.no_grad():
        for w, log_r in zip(reference.windows, reference.log_probs, strict=True):
            log_p = _log_probs(_scored_logits(model, token_ids, w))
            if log_p.shape != log_r.shape:
                raise ValueError(
                    f"model gives {log_p.shape[-1]} logits per token, the reference "
                    f"{log_r.shape[-1]}: compare models with the same vocabulary"
                )
            scores.append(_scores(log_p, log_r, token_ids[w.first_scored : w.end]))
    return _comparison(scores, reference.windows, reference.window, reference.stride)
