"""Lesson 4: what one outlier does to a per-tensor grid.

one_outlier adds a single large value to a tensor and measures the error of the rest before and
after, per tensor and per channel. Left out on purpose: outlier-aware methods (LLM.int8(),
SmoothQuant), which Lesson 5 describes.
"""

from dataclasses import dataclass

import torch

from tutorlib._checks import check_float_tensor, check_real
from tutorlib.quant.affine import fake_quantize
from tutorlib.quant.clipping import ClippingChoice, best_clipping, clipped_fake_quantize
from tutorlib.quant.error import quantization_error

__all__ = ["OutlierExperiment", "one_outlier"]


@dataclass(frozen=True)
class OutlierExperiment:
    """What one outlier does to the others' SQNR (see `one_outlier`)."""

    sqnr_others_db: dict[str, float]  # SQNR of every value but the outlier, by treatment
    clipping: ClippingChoice  # the best clipping of the tensor with the outlier
    outlier_kept: float  # r_hat / r at the outlier after that clipping (1.0: kept whole)


def one_outlier(
    r: torch.Tensor, factor: float = 10.0, bits: int = 8, n_thresholds: int = 100
) -> OutlierExperiment:
    """Set r's first value to factor * max|r| and measure the other values' SQNR four ways.

    Symmetric quantization of: r itself ("no outlier, per-tensor"); r with the outlier, one
    scale ("outlier, per-tensor"), one scale per index of dim 0 ("outlier, per-channel"), and
    one scale clipped at the best threshold of `clipping_sweep` ("outlier, per-tensor,
    clipped"). The SQNRs leave the outlier out: they measure what it does to everyone else.
    Example: with a 384 x 384 weight at 8 bits and factor 10, the per-tensor SQNR of the
    others drops by about 20 dB (a ten times larger step), and per-channel gets it back.
    """
    check_float_tensor(r, "r")
    factor = check_real(factor, "factor", 1.0)
    if r.ndim == 0 or r.numel() < 2:
        raise ValueError(f"r needs at least two values (one becomes the outlier), got {r.shape}")
    with_outlier = r.detach().clone()
    with_outlier.view(-1)[0] = factor * r.detach().abs().max()
    if not torch.isfinite(with_outlier.view(-1)[0]):
        raise ValueError(
            f"factor * max|r| overflows {r.dtype}: use a smaller factor or cast r to float64"
        )
    others = torch.ones_like(r, dtype=torch.bool)
    others.view(-1)[0] = False  # every value but the outlier
    clipping = best_clipping(with_outlier, bits, n_thresholds)
    clipped = (
        clipped_fake_quantize(with_outlier, clipping.threshold, bits)
        if clipping.threshold
        else with_outlier
    )
    r_hats = {
        "no outlier, per-tensor": (r.detach(), fake_quantize(r.detach(), bits, symmetric=True)),
        "outlier, per-tensor": (with_outlier, fake_quantize(with_outlier, bits, symmetric=True)),
        "outlier, per-channel": (with_outlier, fake_quantize(with_outlier, bits, True, dim=0)),
        "outlier, per-tensor, clipped": (with_outlier, clipped),
    }
    sqnr_others_db = {
        name: quantization_error(values[others], r_hat[others]).sqnr_db
        for name, (values, r_hat) in r_hats.items()
    }
    outlier = with_outlier.view(-1)[0].item()
    kept = clipped.reshape(-1)[0].item() / outlier if outlier else 1.0
    return OutlierExperiment(sqnr_others_db, clipping, kept)
