"""Argument checks shared by every module, and the one dtype-name helper.

Each public function of tutorlib checks its arguments once, at the top, with one short call to
a function here; the formula below the check then stays as plain as the lesson's equation. A
check raises TypeError (wrong kind of value) or ValueError (right kind, unusable value) with a
message that names the argument and says what to pass instead.

Left out on purpose: checks that only one function needs (they stay next to it), and any
silent repair of bad input (no clamping, no casting behind the caller's back).
"""

import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "dtype_name",
    "check_tensor",
    "check_float_tensor",
    "check_integer_tensor",
    "check_int",
    "check_real",
    "check_bool",
    "check_choice",
    "check_axis",
    "check_names",
]


def dtype_name(dtype: torch.dtype) -> str:
    """The dtype's name without the ``torch.`` prefix, e.g. ``torch.bfloat16 -> "bfloat16"``."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"dtype must be a torch.dtype such as torch.bfloat16, got {type(dtype).__name__}"
        )
    return str(dtype).removeprefix("torch.")


def check_tensor(value: object, name: str) -> torch.Tensor:
    """Raise TypeError unless `value` is a torch.Tensor; return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            f"wrap it first, e.g. torch.tensor({name})"
        )
    return value


def check_float_tensor(
    value: object, name: str, *, allow_empty: bool = False, finite: bool = True
) -> torch.Tensor:
    """A real floating-point tensor: not complex, not integer or bool, non-empty, finite.

    Example: check_float_tensor(torch.tensor([1, 2]), "r") raises TypeError naming r and
    suggesting r.float().
    """
    tensor = check_tensor(value, name)
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name} must be a real floating-point tensor, got {tensor.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if tensor.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}): give at least one value")
    if finite and not bool(torch.isfinite(tensor.detach()).all()):
        raise ValueError(
            f"{name} contains NaN or inf; remove or replace those values first "
            "(e.g. with torch.nan_to_num)"
        )
    return tensor


def check_integer_tensor(value: object, name: str) -> torch.Tensor:
    """An integer tensor (not bool, not float): the integers of a quantized tensor."""
    tensor = check_tensor(value, name)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor (int8, uint8, int32, ...), got {tensor.dtype}"
        )
    return tensor


def check_int(
    value: object, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An int (not a bool, not a float such as 2.0 or 2.5) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum == 1 and maximum is None and value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


def check_real(
    value: object,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_minimum: bool = False,
) -> float:
    """A finite real number (int or float, not bool, not NaN or inf) within the given bounds.

    With strict_minimum=True the minimum itself is refused (for "must be positive").
    Example: check_real(0.0, "seconds", 0.0, strict_minimum=True) raises ValueError.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    below = minimum is not None and (number <= minimum if strict_minimum else number < minimum)
    if below or (maximum is not None and number > maximum):
        if strict_minimum and minimum == 0 and maximum is None:
            raise ValueError(f"{name} must be positive (> 0), got {number}")
        relation = ">" if strict_minimum else ">="
        bounds = [f"{relation} {minimum}"] if minimum is not None else []
        bounds += [f"<= {maximum}"] if maximum is not None else []
        raise ValueError(f"{name} must be {' and '.join(bounds)}, got {number}")
    return number


def check_bool(value: object, name: str) -> bool:
    """True or False, nothing else (a string such as "no" is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_choice(value: object, name: str, choices: Sequence[object]) -> object:
    """One of `choices` (compared with ==), e.g. an accumulation mode."""
    if isinstance(value, list | dict | set) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_axis(value: object, name: str, ndim: int) -> int:
    """An axis of a tensor with `ndim` dimensions, returned non-negative."""
    axis = check_int(value, name)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{name}={axis} is out of range for a tensor with {ndim} dimensions; "
            f"use an axis in [-{ndim}, {ndim - 1}]"
        )
    return axis % ndim


def check_names(value: object, name: str) -> tuple[str, ...]:
    """A sequence of strings, and not a single string (which would iterate as letters)."""
    if isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of names, e.g. ({value!r},), not one string")
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} must be a sequence of strings, got {value!r}")
    return tuple(value)


def check_bits(bits: object, allowed: Sequence[int], name: str = "bits") -> int:
    """A bit width from `allowed`, as an int (NumPy integers accepted; bools and floats not)."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {bits!r}")
    return int(bits)


def check_group_size(group_size: object, features: int, name: str = "group_size") -> int | None:
    """None (one group spans all `features`), or a positive int that divides `features`."""
    if group_size is None:
        return None
    size = check_int(group_size, name, minimum=1)
    if features < 1 or features % size != 0:
        raise ValueError(
            f"{name}={size} does not divide the {features} features it groups; choose a "
            f"divisor of {features}, or None for one group per row"
        )
    return size


def linear_slots(model: nn.Module) -> list[tuple[nn.Module, str, str, nn.Linear]]:
    """Every (parent, attribute, dotted name, linear) of a model: a Linear reachable under
    several names (shared or tied) appears once under each of them."""
    return [
        (parent, child_name, f"{parent_name}.{child_name}".lstrip("."), child)
        for parent_name, parent in model.named_modules(remove_duplicate=False)
        for child_name, child in parent._modules.items()  # named_children() drops repeats
        if isinstance(child, nn.Linear)
    ]


def iter_linears(model: nn.Module, skip: Sequence[str] = ()) -> list[tuple[str, nn.Linear]]:
    """The model's nn.Linear layers in definition order, each once, under its first name.

    A Linear is left out when its attribute name (e.g. "lm_head") or any dotted name of it is in
    `skip`, and when it is a child of an nn.MultiheadAttention (which reads `out_proj.weight`
    directly instead of calling it).
    """
    skip = set(check_names(tuple(skip) if isinstance(skip, list | set) else skip, "skip"))
    slots = linear_slots(model)
    kept = {
        id(linear)
        for parent, attribute, name, linear in slots
        if isinstance(parent, nn.MultiheadAttention) or attribute in skip or name in skip
    }
    found: dict[int, tuple[str, nn.Linear]] = {}
    for _, _, name, linear in slots:
        if id(linear) not in kept:
            found.setdefault(id(linear), (name, linear))
    return list(found.values())
