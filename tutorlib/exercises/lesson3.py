"""Lesson 3 exercises: a model's bytes in a dtype, the rounding of a cast, comparing outputs.

Three predictions (how far a cast to bfloat16 can move a logit, where float16 overflows, what a
cosine of 0.9995 means as a distance) and three derivations (a model's size after a cast, the
smallest cosine similarity between two sets of embeddings, top-1 agreement). The
functions to write are named ``my_...``, so that a notebook's never shadow tutorlib's.

Leaves out: running real models in the checkers; the hidden models are tiny and built on the spot
under a forked random state, so that checking never changes a notebook's random numbers.
"""

import math

import torch
from torch import nn

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


# ---------------------------------------------------------------- l3-model-bytes


def my_model_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of a model after casting it to ``dtype``, without casting it.

    Floating-point parameters and buffers take dtype.itemsize bytes per number; integer buffers
    (batch norm's num_batches_tracked) keep their own dtype; a tensor shared by two modules (tied
    weights) counts once, as ``parameters()`` and ``buffers()`` list it once.
    bytes = sum over tensors of numel * (dtype.itemsize if floating point else own itemsize).
    Example: nn.Linear(3, 2) has 6 + 2 = 8 parameters: 16 bytes in bfloat16.
    """
    tensors = [*model.parameters(), *model.buffers()]
    return sum(
        t.numel() * (dtype.itemsize if t.is_floating_point() else t.itemsize) for t in tensors
    )


class _TiedLM(nn.Module):
    """A tiny language model whose output layer shares the embedding's weight (tied)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight  # tied: one (50, 8) tensor, two modules


def _hidden_models() -> list[tuple[str, nn.Module]]:
    """Small models built under a forked random state (their values do not matter, only sizes)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        return [
            ("a conv + batch-norm model", cnn),
            ("a language model with tied weights", _TiedLM()),
            ("nn.Linear(3, 2)", nn.Linear(3, 2)),
        ]


def _bytes_mistakes(model: nn.Module, dtype: torch.dtype) -> list[tuple[object, str]]:
    parameters, buffers = list(model.parameters()), list(model.buffers())
    size = dtype.itemsize
    return [
        (
            sum(t.numel() * size for t in parameters + buffers),
            "integer buffers (batch norm's num_batches_tracked) keep their dtype in a cast",
        ),
        (
            sum(t.numel() * (size if t.is_floating_point() else t.itemsize) for t in parameters),
            "count the buffers too (batch norm's running mean and variance)",
        ),
        (
            sum(
                t.numel() * (size if t.is_floating_point() else t.itemsize)
                for t in model.state_dict().values()
            ),
            "a tied weight is one tensor: count it once (state_dict lists it twice)",
        ),
        (8 * my_model_bytes(model, dtype), "that is bits, not bytes: divide by 8"),
        (my_model_bytes(model, torch.float32), "that is the size in float32; count in the dtype"),
    ]


def _check_model_bytes(answer: object) -> str:
    function = expect_callable(answer, 'check("l3-model-bytes", my_model_bytes)')
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        for name, model in _hidden_models():
            case = f"{name}, dtype={dtype}"
            got = call(function, model, dtype, case=case)
            if any(p.dtype != torch.float32 for p in model.parameters()):
                raise Wrong(
                    "your function cast the model itself (model.to(dtype) works in place); "
                    "count from numel() or cast a copy.deepcopy(model)"
                )
            if isinstance(got, float) and got == my_model_bytes(model, dtype):
                raise Wrong(f"the right number as a float ({got!r}); return an int")
            got = expect_number(got, "the number of bytes")
            verify(
                got,
                my_model_bytes(model, dtype),
                _bytes_mistakes(model, dtype),
                same_number(),
                case,
            )
    return (
        "right: floating-point tensors at the new dtype's size, integer buffers unchanged, "
        "tied weights once."
    )


register(
    Exercise(
        id="l3-model-bytes",
        lesson=3,
        prompt="Write my_model_bytes(model, dtype) -> int, the model's bytes once cast to dtype.",
        solution=my_model_bytes,
        checker=_check_model_bytes,
    )
)


# ---------------------------------------------------------------- l3-bf16-max-change

# In [8, 16) bfloat16 counts in steps of 2**(3 - 7) = 1/16 (8 significant bits); rounding to
# nearest moves a number by at most half a step: 1/32.
BF16_MAX_CHANGE_8_TO_16 = 2.0 ** (3 - 7) / 2


def _check_bf16_max_change(answer: object) -> str:
    got = expect_number(answer)
    step = 2.0 ** (3 - 7)
    mistakes = [
        (step, "1/16 is the gap between neighbours; rounding to nearest moves at most half of it"),
        (2.0**-7, "2^-7 is the gap above 1 (eps); between 8 and 16 the gaps are 8 times larger"),
        (2.0**-8, "2^-8 is u, a relative bound: multiply it by the size of the numbers"),
        (16 * 2.0**-8, "16 u bounds it but is not reached: numbers below 16 move by half a step"),
    ]
    # Exact: the answer is a power of two, 0.03125, written exactly in decimal.
    verify(got, BF16_MAX_CHANGE_8_TO_16, mistakes, same_number(), "logits between 8 and 16")
    return (
        "1/32 = 0.03125: the step between 8 and 16 is 2^(3 - 7) = 1/16, and rounding moves "
        "half a step."
    )


register(
    Exercise(
        id="l3-bf16-max-change",
        lesson=3,
        prompt="Casting a float32 logit between 8 and 16 to bfloat16 moves it by at most how much?",
        solution=BF16_MAX_CHANGE_8_TO_16,
        checker=_check_bf16_max_change,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l3-min-cosine


def my_min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest cosine similarity between matching rows of two (n, d) embedding matrices.

    cos_i = a_i . b_i / (|a_i| |b_i|), and the result is min over i, as a Python float.
    Example: a = [[1, 0], [0, 1]], b = [[1, 0], [1, 1]]: cosines 1 and 0.7071, min 0.7071.
    """
    return torch.nn.functional.cosine_similarity(a, b, dim=1).min().item()


def _cosine_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(12, 384, generator=generator)
    noise = torch.linspace(0.01, 1.0, 12)[:, None]  # (12, 1): a different noise level per row
    b = a + noise * torch.randn(12, 384, generator=generator)
    square = torch.randn(6, 6, generator=generator)
    tall = torch.randn(3, 7, generator=generator)
    opposite = torch.cat([tall[:2], -tall[2:]])  # the last row points the other way: cosine -1
    return [
        ("(12, 384) embeddings with noise", a, b),
        ("(6, 6) embeddings", square, square + 0.5 * torch.randn(6, 6, generator=generator)),
        ("(3, 7) with one opposite row", tall, opposite),
        ("(12, 384) and their bfloat16 copy", a, a.bfloat16().float()),
    ]


def _cosine_mistakes(a: torch.Tensor, b: torch.Tensor) -> list[tuple[object, str]]:
    cosine = torch.nn.functional.cosine_similarity
    return [
        (
            cosine(a, b, dim=1).mean().item(),
            "that is the mean cosine; the exercise asks for the min",
        ),
        (cosine(a, b, dim=0).min().item(), "compare rows (dim=1), one embedding per row"),
        ((a * b).sum(dim=1).min().item(), "divide each dot product by the two rows' norms"),
        (
            cosine(a.flatten(), b.flatten(), dim=0).item(),
            "compare row by row, not the whole matrix",
        ),
        (
            cosine(a, b, dim=1).max().item(),
            "that is the largest cosine; the exercise asks for the min",
        ),
    ]


def _check_min_cosine(answer: object) -> str:
    function = expect_callable(answer, 'check("l3-min-cosine", my_min_cosine)')
    for case, a, b in _cosine_cases():
        got = expect_number(call(function, a, b, case=case), "the cosine")
        # Three float32 dot products of d terms each err by at most gamma_d = d 2^-24 (relative);
        # 4 d 2^-24 covers them and stays far below every mistake's difference.
        same = same_number(abs_tol=4 * a.shape[1] * 2.0**-24)
        verify(got, my_min_cosine(a, b), _cosine_mistakes(a, b), same, case)
    return "right: the cosine of each pair of rows, then the smallest of them."


register(
    Exercise(
        id="l3-min-cosine",
        lesson=3,
        prompt="Write my_min_cosine(a, b), the smallest cosine similarity between matching rows.",
        solution=my_min_cosine,
        checker=_check_min_cosine,
    )
)


# ---------------------------------------------------------------- l3-top1-agreement


def my_top1_agreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of rows (inputs) whose top-1 class (argmax over the last axis) is the same.

    agreement = mean over rows of [argmax a_i == argmax b_i], a Python float in [0, 1].
    Example: a = [[2, 1], [0, 3]], b = [[1, 2], [0, 4]]: argmax [0, 1] and [1, 1]: 0.5.
    """
    same = logits_a.argmax(dim=-1) == logits_b.argmax(dim=-1)  # (n,)
    return same.double().mean().item()


def _top1_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(4)
    digits = torch.randn(360, 10, generator=generator)
    square = torch.randn(10, 10, generator=generator)
    wide = torch.randn(4, 1000, generator=generator)
    return [
        ("(360, 10) logits", digits, digits + 0.3 * torch.randn(360, 10, generator=generator)),
        ("(10, 10) logits", square, square + 0.5 * torch.randn(10, 10, generator=generator)),
        ("(4, 1000) logits", wide, wide + 0.2 * torch.randn(4, 1000, generator=generator)),
    ]


def _top1_mistakes(a: torch.Tensor, b: torch.Tensor) -> list[tuple[object, str]]:
    right = my_top1_agreement(a, b)
    same_rows = (a.argmax(dim=-1) == b.argmax(dim=-1)).sum().item()
    return [
        (float(same_rows), "that is a count; divide by the number of rows for a fraction"),
        (100 * right, "that is a percentage; return a fraction between 0 and 1"),
        (my_top1_agreement(a.T, b.T), "take the argmax over classes (the last axis), one per row"),
        ((a == b).double().mean().item(), "compare the predicted classes (argmax), not the logits"),
    ]


def _check_top1_agreement(answer: object) -> str:
    function = expect_callable(answer, 'check("l3-top1-agreement", my_top1_agreement)')
    for case, a, b in _top1_cases():
        got = expect_number(call(function, a, b, case=case), "the agreement")
        # k / n computed in any float order is within an ulp of the exact fraction.
        verify(got, my_top1_agreement(a, b), _top1_mistakes(a, b), same_number(rel_tol=1e-9), case)
    return "right: the fraction of inputs whose predicted class is the same in both precisions."


register(
    Exercise(
        id="l3-top1-agreement",
        lesson=3,
        prompt=(
            "Write my_top1_agreement(logits_a, logits_b): the fraction of rows with equal argmax."
        ),
        solution=my_top1_agreement,
        checker=_check_top1_agreement,
    )
)


# ---------------------------------------------------------------- l3-fp16-overflow

# float16's largest finite value is 65,504 = (2 - 2**-10) 2**15; its step there is 2**5 = 32.
# Rounding to nearest sends everything from the midpoint 65,520 up to inf (the tie goes to the
# even significand, which is 2**16's, and that overflows); below, to 65,504.
FP16_OVERFLOW_FROM = 65_504 + 32 // 2  # 65,520


def _check_fp16_overflow(answer: object) -> str:
    got = expect_number(answer)
    mistakes = [
        (65_504.0, "65,504 is float16's largest finite value: it stays 65,504"),
        (65_536.0, "2^16 overflows, but numbers below it already round up to it: from where?"),
        (65_505.0, "rounding is to the nearest: 65,505 is far closer to 65,504 than to 2^16"),
        (65_519.0, "65,519 is still below the midpoint between 65,504 and 2^16"),
        (32_768.0, "2^15 is a normal float16; the largest exponent is 15, not 14"),
    ]
    verify(got, float(FP16_OVERFLOW_FROM), mistakes, same_number(), "a float32 cast to float16")
    return (
        "65,520: above 65,504 the next float16 step would reach 2^16, which does not exist; "
        "rounding to nearest sends every value from the midpoint 65,520 (a tie, to even) to inf."
    )


register(
    Exercise(
        id="l3-fp16-overflow",
        lesson=3,
        prompt="What is the smallest float32 value that becomes inf when cast to float16?",
        solution=FP16_OVERFLOW_FROM,
        checker=_check_fp16_overflow,
        kind="predict",
    )
)


# ---------------------------------------------------------------- l3-cosine-distance

# For a and b of equal length L: |a - b|^2 = 2 L^2 (1 - cos), so |a - b| / L = sqrt(2 (1 - cos)).
COSINE = 0.9995
COSINE_DISTANCE = math.sqrt(2 * (1 - COSINE))  # 0.0316


def _check_cosine_distance(answer: object) -> str:
    got = expect_number(answer)
    deficit = 1 - COSINE
    mistakes = [
        (deficit, "1 - cos is not a distance: |a - b|^2 = 2 L^2 (1 - cos)"),
        (2 * deficit, "that is |a - b|^2 / L^2; take its square root"),
        (math.sqrt(deficit), "the factor 2 is missing: |a - b|^2 = |a|^2 + |b|^2 - 2 a.b"),
    ]
    # Three significant digits are what the prompt's 0.9995 supports.
    verify(got, COSINE_DISTANCE, mistakes, same_number(rel_tol=1e-3), "cos = 0.9995")
    return (
        f"{COSINE_DISTANCE:.4f}, about 3% of the length: |a - b|^2 = 2 L^2 (1 - cos) = 0.001 L^2. "
        "A cosine that looks close to 1 can hide a visible change."
    )


register(
    Exercise(
        id="l3-cosine-distance",
        lesson=3,
        prompt="Two embeddings of equal length L have cosine 0.9995: what is |a - b| / L?",
        solution=COSINE_DISTANCE,
        checker=_check_cosine_distance,
        kind="predict",
    )
)
