"""Lesson 5: how much faster linear layers can make a whole forward pass (Amdahl's law).

amdahl_speedup is the law; linear_free_cap measures the ceiling directly, by timing the model
against a copy whose linear layers do no work.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tutorlib._checks import check_int, check_real
from tutorlib.layers.replace import replace_linear
from tutorlib.perf.timing import median_ms, time_interleaved

if TYPE_CHECKING:  # only for type hints: pandas takes a second to import
    pass

__all__ = ["amdahl_speedup", "LinearFreeCap", "linear_free_cap"]


def amdahl_speedup(parallel_fraction: float, speedup_of_fraction: float) -> float:
    """Amdahl's law: speeding up a fraction f of the time by s speeds the whole up by
    1 / ((1 - f) + f / s). Example: f = 0.8, s = 4 -> 1 / (0.2 + 0.2) = 2.5."""
    parallel_fraction = check_real(parallel_fraction, "parallel_fraction", 0.0, 1.0)
    speedup_of_fraction = check_real(
        speedup_of_fraction, "speedup_of_fraction", 0.0, strict_minimum=True
    )
    return 1 / ((1 - parallel_fraction) + parallel_fraction / speedup_of_fraction)


class _FreeLinear(nn.Module):
    """Stands in for a linear layer and does no work: returns zeros of the output's shape.

    The zeros are made once per (shape, dtype), outside inference mode, and the same tensor is
    returned at every call, untouched: zeroing it again would be work a real layer does not do
    either. A model that changes it in place (MiniLM's in-place GELU maps 0 to 0) changes what
    later calls see, but not which operations run, and so not the time measured.
    """

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self._zeros: dict[tuple[torch.Size, torch.dtype], torch.Tensor] = {}

    @classmethod
    def from_linear(cls, linear: nn.Module) -> "_FreeLinear":
        return cls(linear.out_features)

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        key = (torch.Size((*x.shape[:-1], self.out_features)), x.dtype)
        zeros = self._zeros.get(key)
        if zeros is None:
            with torch.inference_mode(False):
                zeros = self._zeros[key] = torch.zeros(key[0], dtype=key[1])
        return zeros


@dataclass(frozen=True)
class LinearFreeCap:
    """A forward as it is and with linear layers that cost nothing (linear_free_cap)."""

    full_ms: float  # median forward of the model
    rest_ms: float  # median forward of a copy whose linear layers return zeros at no cost

    @property
    def cap(self) -> float:
        """full / rest: what infinitely fast linear layers would give (Amdahl, r -> inf)."""
        return self.full_ms / self.rest_ms

    def linear_budget_ms(self, speedup: float) -> float:
        """The time the linear layers may take for the forward to be `speedup` times faster:
        full / speedup - rest (negative when the rest alone is too slow). Example: full 75 ms,
        rest 15 ms, speedup 2.5 -> 75 / 2.5 - 15 = 15 ms."""
        speedup = check_real(speedup, "speedup", 0.0, strict_minimum=True)
        return self.full_ms / speedup - self.rest_ms


def linear_free_cap(
    model: nn.Module, forward: Callable[[nn.Module], object], repeats: int = 10
) -> LinearFreeCap:
    """Measure the ceiling of any faster linear layers: the forward without their work.

    A copy of `model` gets every nn.Linear replaced by a stand-in that returns zeros of the
    output's shape, made once (`replace_linear`, nothing skipped); `forward(m)` runs a model, and
    the original and the copy are timed interleaved, without autograd, `repeats` times each.
    rest_ms is then everything but the linear layers' work (attention, GELU, LayerNorm,
    additions, embeddings, the Python around them), and full_ms / rest_ms is Amdahl's bound with
    the linear part sped up infinitely: no int8 kernel, however fast, can beat it. Attention's
    cost does not depend on the values it multiplies (zeros here), nor does any other operation
    of a transformer's forward. Example: FP32 MiniLM at batch 32 took ~71 ms on this course's
    machine and ~13.5 ms without the linear layers' work: a cap of ~5.3x.
    """

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(forward):
        raise TypeError(
            f"forward must be a callable taking the model, e.g. lambda m: m(**batch), "
            f"got {type(forward).__name__}"
        )
    repeats = check_int(repeats, "repeats", minimum=1)
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise ValueError("model has no nn.Linear, so there is nothing to take out; pass a model "
                         "with linear layers (the original, not a quantized copy)")  # fmt: skip
    free = replace_linear(copy.deepcopy(model), _FreeLinear, skip=())

    def timed(m: nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():  # as the benchmark times every variant
                return forward(m)

        return run

    samples = time_interleaved(
        {"full": timed(model), "rest": timed(free)}, repeats=repeats, desc="without linear work"
    )
    return LinearFreeCap(full_ms=median_ms(samples["full"]), rest_ms=median_ms(samples["rest"]))
