"""Lesson 7: is the difference between two models on one text larger than the text's own noise?

Two models scored on the same windows of a text give one pair of sums per window (negative
log-likelihoods, KL divergences); `paired_bootstrap` resamples the windows with replacement and
reads a confidence interval for the per-token difference off the resamples, and
`compare_perplexity` turns it into an interval for the ratio of two perplexities. Pairing
removes what the text does to both models: a hard passage is hard for both.

Left out on purpose: tests that assume independent tokens (neighbouring tokens of one text are
not independent, windows far apart nearly are), and multiple-comparison corrections.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tutorlib._checks import check_int, check_real
from tutorlib.models.perplexity import PerplexityResult

__all__ = ["PairedDifference", "paired_bootstrap", "PerplexityRatio", "compare_perplexity"]


@dataclass(frozen=True)
class PairedDifference:
    """Per-token difference b - a with a bootstrap confidence interval [low, high]."""

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        """True when 0 lies outside the interval: the difference is larger than the noise."""
        return self.low > 0 or self.high < 0


def _check_sums(values: object, name: str) -> torch.Tensor:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers (one per window), got {values!r}")
    numbers = [check_real(v, name) for v in values]
    return torch.tensor(numbers, dtype=torch.float64)


def _check_paired(sums_a: object, sums_b: object, token_counts: object) -> tuple:
    a, b = _check_sums(sums_a, "sums_a"), _check_sums(sums_b, "sums_b")
    if isinstance(token_counts, str) or not isinstance(token_counts, Sequence):
        raise TypeError(f"token_counts must be a sequence of ints, got {token_counts!r}")
    n = torch.tensor([check_int(c, "token_counts", minimum=1) for c in token_counts])
    if not len(a) == len(b) == len(n):
        raise ValueError(
            f"sums_a, sums_b and token_counts must have one entry per window each, got "
            f"{len(a)}, {len(b)} and {len(n)}"
        )
    if len(n) < 2:
        raise ValueError("a bootstrap over windows needs at least 2 windows; use more text")
    return a, b, n.double()


def paired_bootstrap(
    sums_a: Sequence[float],
    sums_b: Sequence[float],
    token_counts: Sequence[int],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Per-token mean of b - a over windows, with a paired percentile-bootstrap interval.

    difference = sum_w (b_w - a_w) / sum_w n_w, for per-window sums a_w, b_w (NLL, KL, ...)
    of two models on the same windows of n_w tokens. Each resample draws as many windows as
    there are, with replacement (a seeded torch.Generator), and recomputes the ratio; the
    interval is the (1 - confidence)/2 and (1 + confidence)/2 quantiles of the resamples.
    Pairing removes what the text does to both models (a hard passage is hard for both).
    Windows of one text are not independent, so the interval is a guide, not a proof.
    Example: NLL sums a = (300, 320, 310), b = (303, 321, 318), 100 tokens each: difference
    = 12 / 300 = 0.04 nats per token (perplexity x1.041); 0 inside the interval means noise.
    """
    a, b, n = _check_paired(sums_a, sums_b, token_counts)
    resamples = check_int(resamples, "resamples", minimum=1)
    confidence = check_real(confidence, "confidence", 0.0, 1.0, strict_minimum=True)
    seed = check_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    if confidence == 1.0:
        raise ValueError("confidence must lie in (0, 1), e.g. 0.95; 1.0 has no finite interval")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(n), (resamples, len(n)), generator=generator)  # (resamples, windows)
    resampled = (b - a)[picks].sum(dim=1) / n[picks].sum(dim=1)  # (resamples,)
    tails = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    low, high = torch.quantile(resampled, tails).tolist()
    difference = float((b - a).sum() / n.sum())
    return PairedDifference(difference, low, high, confidence, resamples)


@dataclass(frozen=True)
class PerplexityRatio:
    """candidate / baseline perplexity with its bootstrap interval [low, high]."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int

    @property
    def excludes_one(self) -> bool:
        """True when 1 lies outside the interval: the two perplexities really differ."""
        return self.low > 1 or self.high < 1


def compare_perplexity(
    baseline: PerplexityResult,
    candidate: PerplexityResult,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PerplexityRatio:
    """How much higher the candidate's perplexity is than the baseline's, and is it noise?

    ratio = PPL_candidate / PPL_baseline = exp(mean NLL_candidate - mean NLL_baseline), with the
    interval exp(low), exp(high) of `paired_bootstrap` on the two results' per-window NLL sums.
    Both results must come from the same tokens and windows.
    Example: PPL 12.8 (float) against 13.4 (4-bit) gives ratio 1.047; an interval such as
    [1.031, 1.063] excludes 1, so the 4-bit model is really worse on this text.
    """
    for name, result in (("baseline", baseline), ("candidate", candidate)):
        if not isinstance(result, PerplexityResult):
            raise TypeError(f"{name} must be a PerplexityResult from perplexity()")
    same = (baseline.token_counts, baseline.window, baseline.stride)
    if same != (candidate.token_counts, candidate.window, candidate.stride):
        raise ValueError(
            "baseline and candidate were scored on different windows; score both models on "
            "the same token_ids with the same window and stride"
        )
    d = paired_bootstrap(
        baseline.nll_sums, candidate.nll_sums, baseline.token_counts, resamples, confidence, seed
    )
    return PerplexityRatio(
        math.exp(d.difference), math.exp(d.low), math.exp(d.high), confidence, d.resamples
    )
