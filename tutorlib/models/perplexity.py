"""Lesson 7: how well a language model predicts a text: perplexity, scored in windows.

Perplexity is the exponential of the mean negative log-likelihood of each token given the
tokens before it, PPL = exp(-(1/N) sum_t log p(x_t | x_<t)): a model that spreads its bets
evenly over V tokens has PPL = V, one that is always sure and right has PPL = 1.

A long text is scored in windows of `window` tokens that start every `stride` tokens (by
default stride = window: no overlap), Hugging Face's strided-perplexity convention
(`sliding_windows`): a token is scored once, in the first window that holds it with at least
one token before it. The ids are scored as given: no BOS token is added (a caller who wants
one prepends it, e.g. torch.cat([torch.tensor([bos_id]), ids])), and with stride == window the
first token of each window is not scored (it has no context inside its window). Logits are
turned into log probabilities in their own precision, float32 at least (a float32 model's logits
hold no more than float32's 24 bits, and float64 would take three times as long on a 49,152-token
vocabulary), and summed over tokens in float64. tutorlib.models.lm_eval compares two models on
the same windows.

Left out on purpose: batching windows (measured here on one CPU thread, four 512-token windows
of SmolLM2 take as long one at a time as in one batch, and a batch multiplies the memory of the
logits), padding and attention masks, GPU placement, and task-based benchmarks.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_int, check_integer_tensor

__all__ = ["Window", "sliding_windows", "PerplexityResult", "TokenAverage", "perplexity"]

LanguageModel = Callable[[torch.Tensor], object]  # ids (1, tokens) -> .logits or a tensor


# ---------------------------------------------------------------- which tokens each window scores


@dataclass(frozen=True)
class Window:
    """Tokens [begin, end) go into the model; tokens [first_scored, end) are scored."""

    begin: int
    end: int
    first_scored: int

    @property
    def n_scored(self) -> int:
        return self.end - self.first_scored


def _check_window_and_stride(window: object, stride: object) -> tuple[int, int]:
    """window >= 2 and 1 <= stride <= window; stride None means stride = window."""
    window = check_int(window, "window", minimum=2)
    stride = window if stride is None else check_int(stride, "stride", minimum=1)
    if stride > window:
        raise ValueError(
            f"stride={stride} is larger than window={window}: tokens between windows would "
            "never be scored; use stride <= window (stride == window: no overlap)"
        )
    return window, stride


def sliding_windows(
    n_tokens: int, window: int = 512, stride: int | None = None
) -> tuple[Window, ...]:
    """The windows that score a text of n_tokens: one starts every `stride` tokens.

    stride=None means stride = window. A window scores its tokens from max(previous window's
    end, its own first token + 1) on, so every token is scored at most once, always with at
    least one token of context; windows that would score nothing are dropped.
    stride == window: every token except each window's first; stride < window: every token but
    the text's first, each window's last `stride` scored with window - stride tokens of
    context or more.
    Example: 10 tokens, window 4, stride 4: [0, 4) scores 1..3, [4, 8) scores 5..7, [8, 10)
    scores 9 (7 tokens); stride 2: [0, 4) 1..3, [2, 6) 4..5, [4, 8) 6..7, [6, 10) 8..9 (9).
    """
    n_tokens = check_int(n_tokens, "n_tokens", minimum=2)
    window, stride = _check_window_and_stride(window, stride)
    windows, previous_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        first_scored = max(previous_end, begin + 1)
        if end > first_scored:
            windows.append(Window(begin, end, first_scored))
        previous_end = end
        if end == n_tokens:
            break
    return tuple(windows)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity with what it came from: each window's summed NLL (nats) and scored tokens.

    value = exp(sum(nll_sums) / sum(token_counts)): token-weighted, not a mean over windows.
    """

    value: float
    nll_sums: tuple[float, ...]
    token_counts: tuple[int, ...]
    window: int
    stride: int

    @property
    def mean_nll(self) -> float:
        """Mean negative log-likelihood per scored token, in nats: log(value)."""
        return math.fsum(self.nll_sums) / sum(self.token_counts)


@dataclass(frozen=True)
class TokenAverage:
    """A per-token mean (KL divergence, agreement) with each window's sum and scored tokens."""

    value: float
    sums: tuple[float, ...]
    token_counts: tuple[int, ...]
    window: int
    stride: int


def _perplexity_result(
    nll_sums: Sequence[float], counts: Sequence[int], window: int, stride: int
) -> PerplexityResult:
    value = math.exp(math.fsum(nll_sums) / sum(counts))
    return PerplexityResult(value, tuple(nll_sums), tuple(counts), window, stride)


def _token_average(
    sums: Sequence[float], counts: Sequence[int], window: int, stride: int
) -> TokenAverage:
    return TokenAverage(math.fsum(sums) / sum(counts), tuple(sums), tuple(counts), window, stride)


# ---------------------------------------------------------------- running a model on a window


def _check_model(model: object, name: str) -> LanguageModel:
    if not callable(model):
        raise TypeError(f"{name} must be callable as {name}(input_ids), got {type(model).__name__}")
    if isinstance(model, nn.Module) and model.training:
        raise ValueError(
            f"{name} is in training mode (dropout would make scores random); call {name}.eval()"
        )
    return model


def _vocab_size(model: LanguageModel) -> int | None:
    """The number of rows of the model's input embedding, where the model says (transformers)."""
    try:
        embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # a plain callable, or a model without one
        return None
    return getattr(embedding, "num_embeddings", None)


def _check_token_ids(token_ids: object, models: dict[str, LanguageModel]) -> torch.Tensor:
    """A 1-D integer tensor of at least 2 ids in [0, vocabulary size), as int64."""
    ids = check_integer_tensor(token_ids, "token_ids")
    if ids.dim() != 1 or ids.numel() < 2:
        raise ValueError(
            f"token_ids must be 1-D with at least 2 ids (the first only gives context), got "
            f"shape {tuple(ids.shape)}; pass tokenizer(text, return_tensors='pt').input_ids[0]"
        )
    if int(ids.min()) < 0:
        raise ValueError(f"token_ids holds a negative id, {int(ids.min())}; ids start at 0")
    for name, model in models.items():
        vocab = _vocab_size(model)
        if vocab is not None and int(ids.max()) >= vocab:
            raise ValueError(
                f"token_ids holds id {int(ids.max())}, but {name}'s vocabulary has {vocab} ids "
                "(0 to vocabulary size - 1); tokenize with the model's own tokenizer"
            )
    return ids.long()


def _scored_logits(model: LanguageModel, token_ids: torch.Tensor, w: Window) -> torch.Tensor:
    """Logits that predict tokens w.first_scored .. w.end - 1: (n_scored, vocab).

    Row t of the window's logits predicts token t + 1, so token k is predicted by row k - 1.
    """
    output = model(token_ids[w.begin : w.end].unsqueeze(0))  # (1, tokens)
    logits = getattr(output, "logits", output)
    expected = (1, w.end - w.begin)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != expected:
        raise ValueError(
            "the model must return logits of shape (1, tokens, vocabulary), or an object with "
            f".logits of that shape; got {getattr(logits, 'shape', type(logits).__name__)}"
        )
    if int(token_ids[w.first_scored : w.end].max()) >= logits.shape[-1]:
        raise ValueError(f"token_ids holds ids beyond the {logits.shape[-1]} logits per token")
    if bool(torch.isnan(logits).any()):
        raise ValueError("the model returned NaN logits; its weights or activations overflowed")
    return logits[0, w.first_scored - 1 - w.begin : w.end - 1 - w.begin]  # (n_scored, vocab)


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the vocabulary in the logits' precision, float32 at least: (n, vocab)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)


def _nll_sum(log_probs: torch.Tensor, targets: torch.Tensor) -> float:
    """-sum_t log p(target_t), summed in float64: log_probs (n, vocab), targets (n,)."""
    return -float(log_probs.gather(1, targets.unsqueeze(1)).double().sum())


# ---------------------------------------------------------------- perplexity


def perplexity(
    model: LanguageModel, token_ids: torch.Tensor, window: int = 512, stride: int | None = None
) -> PerplexityResult:
    """Perplexity of a causal LM on token_ids: PPL = exp(sum_t NLL_t / N) over the scored tokens.

    NLL_t = -log p(x_t | tokens before t in its window), from log_softmax of the logits (float32
    at least, summed in float64); N is the number of scored tokens (see `sliding_windows`).
    The ids are scored as given (no BOS added). `model(ids)` takes a (1, tokens) LongTensor and
    returns logits (1, tokens, vocab) or an object with .logits (a transformers model in eval
    mode).
    Example: vocabulary of 2, ids [0, 1], a model whose logits at position 0 are [0, ln 3]:
    p(1) = 3/4, NLL = 0.2877 nats, PPL = 4/3 = 1.3333. Logits all equal give PPL = V.
    """
    model = _check_model(model, "model")
    token_ids = _check_token_ids(token_ids, {"model": model})
    window, stride = _check_window_and_stride(window, stride)
    windows = sliding_windows(len(token_ids), window, stride)
    nll_sums = []
    with torch.no_grad():
        for w in windows:
            log_probs = _log_probs(_scored_logits(model, token_ids, w))
            nll_sums.append(_nll_sum(log_probs, token_ids[w.first_scored : w.end]))
    return _perplexity_result(nll_sums, [w.n_scored for w in windows], window, stride)
