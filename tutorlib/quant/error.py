"""Lesson 4: the error quantization leaves, measured and predicted.

quantization_error measures it (MSE, max error, SQNR in decibels: 10 log10 of signal power over
noise power); predicted_sqnr_db predicts it from the step alone (uniform noise of power
s**2 / 12); sqnr_by_bits and db_per_bit tabulate the 6-dB-per-bit rule.
Left out on purpose: error propagation through a network (Lessons 5 to 7 measure it).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tutorlib._checks import check_bool, check_float_tensor, check_group_size, check_int
from tutorlib.quant.affine import fake_quantize
from tutorlib.quant.params import (
    SUPPORTED_BITS,
    QuantParams,
    _check_fits,
    _check_params,
    _grouped,
    get_scale_and_zero_point,
)

__all__ = [
    "QuantizationError",
    "quantization_error",
    "predicted_sqnr_db",
    "sqnr_by_bits",
    "db_per_bit",
]


@dataclass(frozen=True)
class QuantizationError:
    """Mean squared error and signal-to-quantization-noise ratio of r_hat against r.

    sqnr_db = 10 * log10(sum(r**2) / sum((r - r_hat)**2)); each extra bit of a uniform grid
    adds about 6.02 dB (Analog Devices MT-001), since the step halves and noise power quarters.
    """

    mse: float
    sqnr_db: float


def quantization_error(r: torch.Tensor, r_hat: torch.Tensor) -> QuantizationError:
    """MSE = mean((r - r_hat)**2) and SQNR in dB, computed in float64.

    SQNR is +inf when r_hat == r exactly. Both are computed on r / m and r_hat / m with
    m = max(|r|, |r_hat|), so that squares of values near float64's limit (1e200) do not
    overflow; the MSE is scaled back by m**2 (and is inf only if the true MSE exceeds float64).
    Example: r = [1.0, -1.0], r_hat = [0.9, -1.1]: MSE = 0.01,
    SQNR = 10 * log10(2 / 0.02) = 20.0 dB.
    """
    check_float_tensor(r, "r")
    check_float_tensor(r_hat, "r_hat")
    if r.shape != r_hat.shape:
        raise ValueError(f"r and r_hat must have the same shape: {r.shape} vs {r_hat.shape}")
    r64, r_hat64 = r.detach().double(), r_hat.detach().double()
    m = max(r64.abs().max().item(), r_hat64.abs().max().item()) or 1.0  # 1.0 for all zeros
    noise_power = (((r64 - r_hat64) / m) ** 2).sum().item()  # in units of m**2
    signal_power = ((r64 / m) ** 2).sum().item()
    mse = noise_power / r.numel() * m * m if noise_power else 0.0
    if noise_power == 0:
        sqnr_db = float("inf")
    elif signal_power == 0:
        sqnr_db = float("-inf")  # all signal is noise: r is all zeros, r_hat is not
    else:
        sqnr_db = 10 * math.log10(signal_power / noise_power)
    return QuantizationError(mse=mse, sqnr_db=sqnr_db)


def predicted_sqnr_db(r: torch.Tensor, params: QuantParams) -> float:
    """The SQNR that uniform rounding noise predicts: 10 log10(mean(r**2) / mean(s**2 / 12)).

    Rounding to a grid of step s leaves an error spread evenly over [-s/2, s/2], whose mean
    square is s**2 / 12 (Analog Devices MT-001); with one s per channel or group, the noise is
    the mean of s**2 / 12 over all values. The model assumes no clipping and values that fall
    anywhere between two levels, which holds once the step is small next to the data's spread.

    Example: r = [-1.0, 0.5, 3.0], 8 bits, asymmetric: s = 4 / 255, mean(r**2) = 10.25 / 3,
    12 * 3.4167 / (4 / 255)**2 = 166,627, so 52.22 dB. -inf for an all-zero r (no signal).
    """
    check_float_tensor(r, "r")
    _check_params(params, QuantParams)
    _check_fits(r, params.scale, params.dim, params.group_size, "r")
    r64 = _grouped(r.detach(), params.group_size).double()  # (..., n // g, g) per group
    step_squared = (params.scale.double() ** 2).expand_as(r64)  # each value's s**2
    signal_power = (r64**2).mean().item()
    noise_power = step_squared.mean().item() / 12
    return 10 * math.log10(signal_power / noise_power) if signal_power else -math.inf


def _check_bit_widths(bits: object) -> list[int]:
    if isinstance(bits, str | bytes) or not hasattr(bits, "__iter__"):
        raise TypeError(f"bits must be a sequence of bit widths such as [2, 4, 8], got {bits!r}")
    widths = list(bits)
    if not widths:
        raise ValueError("bits is empty: give at least one bit width, e.g. [2, 4, 8]")
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int) or width not in SUPPORTED_BITS:
            raise ValueError(f"every entry of bits must be one of {SUPPORTED_BITS}, got {width!r}")
    return widths


def sqnr_by_bits(
    r: torch.Tensor,
    bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    group_size: int = 64,
    predicted: bool = False,
) -> pd.DataFrame:
    """SQNR (dB) of zero-point quantization of r at each bit width, for three granularities.

    Columns: "per-tensor" (one scale), "per-channel" (one scale per index of dim 0, e.g. per
    output row of a weight) and "per-group (g)" (one scale per g consecutive values of the last
    axis). Measured: quantization_error(r, fake_quantize(r, k, ...)).sqnr_db; with
    predicted=True, predicted_sqnr_db from the step alone, 10 log10(mean r**2 * 12 / s**2).

    Example: r = [[-1.0, 0.5, 3.0, 2.0], [0.25, -0.75, 1.5, -2.0]], bits [8], group_size 2:
    per-tensor 49.44 dB, per-channel 51.22 dB, per-group (2) 58.11 dB.
    Returns a DataFrame indexed by bits.
    """
    check_float_tensor(r, "r")
    if r.ndim == 0:
        raise ValueError("r must have at least one dimension (channels and groups need an axis)")
    widths = _check_bit_widths(bits)
    check_group_size(check_int(group_size, "group_size", minimum=1), r.shape[-1] if r.ndim else 0)
    check_bool(predicted, "predicted")
    granularities = {"per-tensor": {}, "per-channel": {"dim": 0}}
    granularities[f"per-group ({group_size})"] = {"group_size": group_size}

    def sqnr(k: int, kwargs: dict) -> float:
        if predicted:
            return predicted_sqnr_db(r, get_scale_and_zero_point(r, k, **kwargs))
        return quantization_error(r, fake_quantize(r, k, **kwargs)).sqnr_db

    table = {name: [sqnr(k, kw) for k in widths] for name, kw in granularities.items()}
    return pd.DataFrame(table, index=pd.Index(widths, name="bits"))


def db_per_bit(table: pd.DataFrame, min_bits: int = 4) -> pd.Series:
    """Slope of each column of an SQNR table (see `sqnr_by_bits`), in dB per bit.

    The least-squares line through (k, SQNR_k) for every k >= min_bits (below about 4 bits the
    grid is too coarse for the uniform-noise picture). The rule 20 log10(2) = 6.02 dB per bit
    holds if one more bit halves s; with s = range / (2**k - 1) it shrinks by slightly more,
    (2**k - 1) / (2**(k+1) - 1), so a range-set grid gains 6.15 dB per bit from 4 to 8 bits.
    Example: SQNR [10.0, 16.0, 22.0] at bits [4, 5, 6] -> 6.0 dB per bit.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame from sqnr_by_bits, got {table!r}")
    min_bits = check_int(min_bits, "min_bits", minimum=1)
    rows = table[table.index >= min_bits].astype(float)
    if len(rows) < 2 or not np.isfinite(rows.to_numpy()).all():
        raise ValueError(
            f"table needs finite SQNRs at two or more bit widths >= min_bits={min_bits}; "
            f"it has bit widths {list(table.index)}"
        )
    bits = rows.index.to_numpy(dtype=float)
    return rows.apply(lambda column: np.polyfit(bits, column.to_numpy(), 1)[0]).rename("dB per bit")
