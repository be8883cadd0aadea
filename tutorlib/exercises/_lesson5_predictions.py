"""Lesson 5 exercises, the three predictions: an int32 sum's headroom, the largest activation
code a saturating int16 pair can take, and the speedup a profile allows (Amdahl's law).

``lesson5`` holds the derivations (per-token scales, the int32 product, the rescale) and imports
this module at its end, so that loading the lesson registers these too.
"""

import torch

from tutorlib.exercises.core import (
    Exercise,
    expect_number,
    register,
    same_number,
    verify,
)
from tutorlib.perf.amdahl import amdahl_speedup

__all__: list[str] = []  # reference answers are reached through EXERCISES[id].solution


# ---------------------------------------------------------------- l5-int32-headroom

# The largest product of two int8 values is (-128) x (-128) = 2**14; int32 holds up to 2**31 - 1,
# so floor((2**31 - 1) / 2**14) = 2**17 - 1 such products always fit.
INT32_HEADROOM = torch.iinfo(torch.int32).max // (-128) ** 2  # 131,071


def _check_int32_headroom(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (float((2**31 - 1) // 127**2), "the largest product is (-128)^2 = 16,384, not 127^2"),
        (float(2**31 // 2**14), "int32's largest value is 2^31 - 1, not 2^31: one product less"),
        (float((2**32 - 1) // 2**14), "int32 is signed: its largest value is 2^31 - 1"),
        (float((2**31 - 1) // 255**2), "both inputs are signed int8: the largest product is 2^14"),
        ((2**31 - 1) / 2**14, "a count of products is a whole number: round down"),
    ]
    verify(got, float(INT32_HEADROOM), mistakes, same_number(), "int8 x int8 into int32")
    return (
        "131,071: (2^31 - 1) // 2^14. A dot product over MiniLM's 1,536 inputs uses about 1% "
        "of int32's room, so the int32 sum is exact (where the kernel sums in int32: Lesson 5)."
    )


register(
    Exercise(
        id="l5-int32-headroom",
        lesson=5,
        prompt="How many worst-case int8 x int8 products can an int32 sum always hold?",
        solution=INT32_HEADROOM,
        checker=_check_int32_headroom,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l5-int16-pairs

# Without VNNI, vpmaddubsw multiplies u8 activations by s8 weights and adds each pair of products
# into a saturating int16: 2 a 127 <= 32,767 holds for a <= 32,767 // 254 = 129.
INT16_PAIR_MAX_CODE = torch.iinfo(torch.int16).max // (2 * 127)  # 129


def _check_int16_pairs(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (255.0, "2 x 255 x 127 = 64,770: that pair saturates at 32,767"),
        (127.0, "127 is safe (the 7-bit grid uses it), but not the largest: try 129"),
        (128.0, "128 is safe, but not the largest: 2 x 129 x 127 = 32,766 still fits"),
        (258.0, "two products are added: 2 a 127 <= 32,767, not a 127 <= 32,767"),
        (130.0, "2 x 130 x 127 = 33,020 > 32,767: it saturates"),
    ]
    verify(got, float(INT16_PAIR_MAX_CODE), mistakes, same_number(), "u8 x s8 pairs in int16")
    return (
        "129: 2 x 129 x 127 = 32,766 <= 32,767. Codes up to 255 overflow the int16, which is why "
        "a CPU without VNNI runs 7-bit activations (codes 0 to 127) and stays exact."
    )


register(
    Exercise(
        id="l5-int16-pairs",
        lesson=5,
        prompt="No VNNI: pairs a*w + a'*w' (w <= 127) go into an int16. Largest safe u8 code a?",
        solution=INT16_PAIR_MAX_CODE,
        checker=_check_int16_pairs,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l5-amdahl

# The profile of the exercise (like Lesson 5's MiniLM at batch 32): a 93 ms forward of which the
# linear layers take 80 ms, and int8 runs those 4.5 times faster.
_TOTAL_MS, _LINEAR_MS, _INT8_SPEEDUP = 93.0, 80.0, 4.5
_FRACTION = _LINEAR_MS / _TOTAL_MS
AMDAHL_SPEEDUP = amdahl_speedup(_FRACTION, _INT8_SPEEDUP)  # 3.0216


def _check_amdahl(answer: object) -> str:
    got = expect_number(answer)
    f, s = _FRACTION, _INT8_SPEEDUP
    mistakes = [
        (s, "4.5 is the speedup of the linear layers only; the other 13 ms stay as they are"),
        (1 / (1 - f), "that is the limit for infinitely fast linear layers: 1 / (1 - f)"),
        (1 / ((1 - f) + f * s), "divide the sped-up fraction by s: f / s, not f s"),
        ((1 - f) + f * s, "speedup = 1 / ((1 - f) + f / s): the time shrinks, then invert it"),
        (s / f, "speedup = 1 / ((1 - f) + f / s) with f = 80 / 93"),
        (1 / (f / s), "keep the part that is not sped up: 1 / ((1 - f) + f / s)"),
    ]
    # 0.005: half a unit in the second decimal, so an answer rounded to 3.02 is accepted.
    verify(
        got, AMDAHL_SPEEDUP, mistakes, same_number(abs_tol=0.005), "the profile 80 of 93 ms, 4.5x"
    )
    return (
        f"{AMDAHL_SPEEDUP:.2f}x: f = 80/93 = {f:.3f}, 1 / ((1 - f) + f / 4.5) = "
        f"93 / (13 + 80 / 4.5) ms; even infinitely fast linear layers would give only "
        f"{1 / (1 - f):.2f}x."
    )


register(
    Exercise(
        id="l5-amdahl",
        lesson=5,
        prompt="Linear layers take 80 of 93 ms and int8 makes them 4.5x faster: the whole speedup?",
        solution=AMDAHL_SPEEDUP,
        checker=_check_amdahl,
        kind="predict",
    )
)
