"""The attack test: every public function of tutorlib, fed bad input one argument at a time.

tutorlib promises that bad input gets a clear ValueError or TypeError raised by tutorlib
itself, naming the argument; never a silent NaN, a wrong result, or a traceback from deep
inside torch or Python. This file checks that promise without knowing the API in advance:

1. Discovery. Every module of tutorlib (subpackages too, found with pkgutil) is imported and
   every name of its ``__all__`` taken: functions; classes whose constructor checks its input
   (nn.Modules and dataclasses with a ``__post_init__``); and their public methods and
   classmethods (``W8A8Linear.from_linear``, ``W8A8Linear.forward``).
2. Valid calls. Each parameter gets a valid example from the tables of tests/attack_cases.py
   (by parameter name, by the class in its annotation, or a per-function override).
3. Attacks. One parameter at a time gets a value from a family of bad inputs chosen by the
   kind of its valid example (tensor, int, float, dtype, sequence, module, ...), while the
   others stay valid. Each family says what must happen:
   - "refuse": a ValueError/TypeError raised by a `raise` statement in tutorlib's own code,
     whose message names the parameter;
   - "either": that, or a result judged correct by an oracle (a float64 reference for the
     functions in ORACLES; finite and of the right type for the others);
   - "work": valid edge cases (non-contiguous, requiring grad, tiny, constant data) must give a
     correct result.
4. What is skipped or accepted is listed by name with its reason (SKIPPED, CHEAP_ARGUMENTS,
   ACCEPTED in attack_cases.py), and a test keeps those lists short.

Run ``python tests/test_attack.py /tmp/attack_report.md`` for a report of every failure.
"""

import dataclasses
import importlib
import inspect
import math
import re
import sys
import tempfile
import traceback
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from attack_cases import (  # noqa: E402
    ACCEPTED,
    CHEAP_ARGUMENTS,
    FLOAT_RANGE,
    INSTANCES,
    INT_MINIMUM,
    NONFINITE_RESULTS,
    ORACLES,
    OVERRIDES,
    PLOT_PREFIX,
    Q_FOR,
    SKIPPED,
    SKIPPED_MODULES,
    VALID_BY_ANNOTATION,
    VALID_BY_NAME,
    api,
    public_modules,
    small_linear,
)
from torch import nn  # noqa: E402

import tutorlib  # noqa: E402

PACKAGE_DIR = Path(tutorlib.__file__).resolve().parent
# Parameters holding the data a function works on: tiny, constant and all-zero values are
# valid data there and must work (elsewhere, e.g. a scale, they may be refused).
DATA_PARAMS = {"r", "x", "y", "terms", "weights", "rows", "logits", "images", "inputs"}
LARGE_INT_NAMES = {"bits", "dim", "group_size", "k", "sign", "biased_exponent", "mantissa"}

# ---------------------------------------------------------------------------------------------
# 1. Discovery


@dataclasses.dataclass(frozen=True)
class Target:
    module: str  # where it is defined, without "tutorlib."
    qualname: str  # "fake_quantize", "W8A8Linear.from_linear", "QuantParams"
    obj: object  # the function, class, or the class's attribute
    kind: str  # "function", "constructor", "classmethod", "method"


def attack_constructor(cls: type) -> bool:
    """nn.Modules and dataclasses that check themselves; plain records are not attacked."""
    post_init = dataclasses.is_dataclass(cls) and "__post_init__" in vars(cls)
    return issubclass(cls, nn.Module) or post_init


def discover() -> list[Target]:
    targets, seen = [], set()
    for module_name in public_modules():
        try:
            module = importlib.import_module(module_name)
        except Exception:
            continue
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if id(obj) in seen or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", "").split(".")[0] != "tutorlib":
                continue  # a re-exported torch or transformers name
            seen.add(id(obj))
            where = obj.__module__.removeprefix("tutorlib.")
            if inspect.isfunction(obj):
                targets.append(Target(where, obj.__qualname__, obj, "function"))
                continue
            if attack_constructor(obj):
                targets.append(Target(where, obj.__qualname__, obj, "constructor"))
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                kind = {classmethod: "classmethod", staticmethod: "classmethod"}.get(
                    type(value), "method" if inspect.isfunction(value) else None
                )
                func = getattr(value, "__func__", value)
                if kind and len(parameters(func, skip_first=kind != "classmethod")) > 0:
                    targets.append(Target(where, f"{obj.__qualname__}.{attr}", value, kind))
    return targets


def underlying(target: Target):
    if target.kind == "constructor":
        return target.obj.__init__
    return getattr(target.obj, "__func__", target.obj)


def parameters(func, skip_first: bool = False) -> list[inspect.Parameter]:
    params = list(inspect.signature(func).parameters.values())
    if skip_first or (params and params[0].name in ("self", "cls")):
        params = params[1:]
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def hints(func) -> dict[str, str]:
    """Each parameter's annotation as text ("torch.Tensor | None"), forward refs included."""
    try:
        resolved = typing.get_type_hints(func)
    except Exception:
        resolved = {}
    out = {}
    for p in inspect.signature(func).parameters.values():
        annotation = resolved.get(p.name, p.annotation)
        out[p.name] = "" if annotation is inspect.Parameter.empty else str(annotation)
    return out


# ---------------------------------------------------------------------------------------------
# 2. Valid calls


def for_target(table: Mapping, target: Target, default=None):
    """A table's entry for target, by its qualname."""
    return table.get(target.qualname, default)


def valid_kwargs(target: Target, tmp: Path) -> dict:
    func = underlying(target)
    annotations = hints(func)
    override = for_target(OVERRIDES, target, lambda tmp: {})(tmp)
    q_for = for_target(Q_FOR, target)
    kwargs = {}
    for p in parameters(func, skip_first=target.kind in ("method", "constructor")):
        if p.name in override:
            kwargs[p.name] = override[p.name]
        elif p.name == "q" and q_for is not None:
            kwargs[p.name] = q_for()
        elif by_class := [k for k in VALID_BY_ANNOTATION if k in annotations[p.name]]:
            kwargs[p.name] = VALID_BY_ANNOTATION[by_class[0]]()
        elif p.name in VALID_BY_NAME:
            kwargs[p.name] = VALID_BY_NAME[p.name]()
        elif p.default is not inspect.Parameter.empty:
            continue  # its default is a valid example
        else:
            raise LookupError(
                f"no valid example for parameter {p.name!r} of {target.qualname}: add one to "
                "VALID_BY_NAME or OVERRIDES in tests/attack_cases.py"
            )
    return kwargs


def bound_callable(target: Target) -> Callable:
    if target.kind in ("function", "constructor"):
        return target.obj
    cls_name, attr = target.qualname.rsplit(".", 1)
    if target.kind == "classmethod":
        return getattr(api(cls_name), attr)
    if cls_name not in INSTANCES:
        raise LookupError(f"no instance of {cls_name} to call .{attr} on: add it to INSTANCES")
    return getattr(INSTANCES[cls_name](), attr)


# ---------------------------------------------------------------------------------------------
# 3. Families of bad input, by the kind of the valid example


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[object], object]  # valid example -> bad value
    expect: str  # "refuse", "either" or "work"


def strided(v: torch.Tensor) -> torch.Tensor:
    """The same values, not contiguous in memory (as a transposed tensor is)."""
    big = torch.zeros(*v.shape, 2, dtype=v.dtype)
    big[..., 0] = v
    return big[..., 0]


def with_value(v: torch.Tensor, value: float) -> torch.Tensor:
    out = v.clone()
    out.view(-1)[-1] = value
    return out


def scaled_to(v: torch.Tensor, peak: float, dtype=None) -> torch.Tensor:
    v = v.double()
    return (v / v.abs().max() * peak).to(dtype or torch.float32)


def other_shape(v: torch.Tensor) -> torch.Tensor:
    return v.flatten() if v.ndim > 1 else v[None]


def tensor_families(name: str, v: torch.Tensor) -> list[Family]:
    work = "work" if name in DATA_PARAMS else "either"
    common = [
        Family("list", lambda v: v.tolist(), "either"),
        Family("numpy", lambda v: v.numpy(), "either"),
        Family("str", lambda v: "1.0", "refuse"),
        Family("complex", lambda v: v.to(torch.complex64), "refuse"),
        Family("bool", lambda v: v > 0, "either"),
        Family("empty", lambda v: v[:0] if v.ndim else v.new_empty(0), "either"),
        Family("0-d", lambda v: v.flatten()[0].clone() if v.numel() else v.sum(), "either"),
        Family("wrong-shape", other_shape, "either"),
        Family("strided", strided, "work"),
    ]
    if not v.is_floating_point():
        return common + [
            Family("float", lambda v: v.float() + 0.5, "either"),
            Family("out-of-range", lambda v: v.long() + 1000, "either"),
            Family("negative", lambda v: -v.long() - 1, "either"),
        ]
    return common + [
        Family("int64", lambda v: v.round().long(), "either"),
        Family("float64", lambda v: v.double(), "either"),
        Family("float16", lambda v: v.half(), "either"),
        Family("nan", lambda v: with_value(v, math.nan), "refuse"),
        Family("inf", lambda v: with_value(v, math.inf), "refuse"),
        Family("huge-3e38", lambda v: scaled_to(v, 3e38), "either"),
        Family("float16-huge-6e4", lambda v: scaled_to(v, 6e4, torch.float16), "either"),
        Family("tiny-1e-41", lambda v: scaled_to(v, 1e-41), work),
        Family("constant", lambda v: torch.full_like(v, 0.75), work),
        Family("zeros", torch.zeros_like, work),
        Family("requires-grad", lambda v: v.clone().requires_grad_(), "work"),
    ]


def int_families(name: str, v: int) -> list[Family]:
    minimum = INT_MINIMUM.get(name, 1)
    below = lambda n: "refuse" if n < minimum else "either"  # noqa: E731
    out = [
        Family("zero", lambda v: 0, below(0)),
        Family("negative", lambda v: -1, below(-1)),
        Family("bool", lambda v: True, "refuse"),
        Family("float-2.5", lambda v: 2.5, "refuse"),
        Family("str", lambda v: "x", "refuse"),
        # NumPy's scalars are numbers like Python's: accepted wherever an int is
        Family("numpy-int64", lambda v: np.int64(v), "work"),
    ]
    if name in LARGE_INT_NAMES:
        out.append(Family("large-99", lambda v: 99, "either"))
    return out


def float_families(name: str, v: float) -> list[Family]:
    lo, hi = FLOAT_RANGE.get(name, (-math.inf, math.inf))
    inside = lambda x: "either" if lo <= x <= hi else "refuse"  # noqa: E731
    return [
        Family("nan", lambda v: math.nan, "refuse"),
        Family("inf", lambda v: math.inf, "refuse" if hi < math.inf else "either"),
        Family("zero", lambda v: 0.0, inside(0.0)),
        Family("negative", lambda v: -1.0, inside(-1.0)),
        Family("str", lambda v: "0.5", "refuse"),
        Family("tensor", lambda v: torch.tensor(v), "either"),
        Family("numpy-float64", lambda v: np.float64(v), "work"),
    ]


def families_for(name: str, v: object, annotation: str) -> list[Family]:
    optional = "None" in annotation
    none = [] if optional else [Family("none", lambda v: None, "refuse")]
    if torch.is_tensor(v):
        return none + tensor_families(name, v)
    if isinstance(v, bool):
        return none + [
            Family("str", lambda v: "no", "refuse"),
            Family("int-2", lambda v: 2, "refuse"),
        ]
    if isinstance(v, int):
        return none + int_families(name, v)
    if isinstance(v, float):
        return none + float_families(name, v)
    if isinstance(v, torch.dtype):
        str_ok = "str" in annotation
        return none + [
            Family("str", lambda v: "float16", "either" if str_ok else "refuse"),
            Family("bad-str", lambda v: "float17", "refuse"),
            Family("python-float", lambda v: float, "refuse"),
            Family("int8", lambda v: torch.int8, "either"),
            Family("complex64", lambda v: torch.complex64, "either"),
        ]
    if isinstance(v, str):
        return none + [
            Family("int", lambda v: 3, "refuse"),
            Family("empty", lambda v: "", "either"),
            Family("unknown", lambda v: "no-such-name", "either"),
        ]
    if isinstance(v, Path):
        return none + [
            # not a small int: open() takes one as a file descriptor, and would close it
            Family("int", lambda v: 987_654, "refuse"),
            Family("missing", lambda v: v.parent / "missing.file", "either"),
            Family("folder", lambda v: v.parent, "either"),
        ]
    if isinstance(v, Mapping):
        return none + [
            Family("list", lambda v: list(v), "refuse"),
            Family("empty", lambda v: {}, "either"),
            Family("str", lambda v: "abc", "refuse"),
        ]
    if isinstance(v, list | tuple):
        out = none + [
            Family("str", lambda v: "randn", "refuse"),
            Family("empty", lambda v: type(v)(), "either"),
            Family("with-None", lambda v: type(v)([*v[:-1], None]), "refuse"),
        ]
        if v and all(isinstance(e, int) and not isinstance(e, bool) for e in v):
            out += [
                Family("float-element", lambda v: type(v)([*v[:-1], 2.5]), "refuse"),
                Family("negative-element", lambda v: type(v)([*v[:-1], -1]), "either"),
            ]
        if v and all(isinstance(e, float) for e in v):
            out += [
                Family("nan-element", lambda v: type(v)([*v[:-1], math.nan]), "refuse"),
                Family("inf-element", lambda v: type(v)([*v[:-1], math.inf]), "either"),
            ]
        return out
    if isinstance(v, nn.Module):
        return none + [
            Family("str", lambda v: "model", "refuse"),
            Family("conv-module", lambda v: nn.Conv2d(1, 1, 1), "either"),
        ]
    if isinstance(v, type):
        return none + [Family("not-a-class", lambda v: "W8A16Linear", "refuse")]
    if callable(v):
        return none + [Family("not-callable", lambda v: 3, "refuse")]
    if dataclasses.is_dataclass(v):
        return none + [
            Family("str", lambda v: "params", "refuse"),
            Family("tuple", lambda v: dataclasses.astuple(v)[:2], "refuse"),
        ]
    return none


# ---------------------------------------------------------------------------------------------
# 4. Cases


@dataclasses.dataclass(frozen=True)
class Case:
    target: Target
    param: str  # "" for the valid call and for extra cases
    family: Family | None
    id: str
    extra: Callable[[dict], dict] | None = None  # extra cases: changes to the valid kwargs
    why: str = ""  # extra cases: what is being checked

    @property
    def expect(self) -> str:
        return self.family.expect if self.family else "work"


def targets_by_qualname() -> dict[str, Target]:
    return {t.qualname: t for t in discover()}


# Hand-written cases from the earlier audit that the families do not produce on their own.
EXTRA_CASES = [
    ("fake_quantize", "range-overflows", lambda kw: {"r": torch.tensor([-3e38, 3e38])}, "either"),
    (
        "W8A8Linear.from_linear",
        "140000-inputs",
        lambda kw: {"linear": small_linear(140_000, 1)},
        "either",
    ),
    (
        "W8A16Linear.forward",
        "int-input",
        lambda kw: {"x": torch.randint(-3, 4, (3, 8))},
        "either",
    ),
    ("accuracy", "labels-n-by-1", lambda kw: {"labels": kw["labels"][:, None]}, "either"),
    (
        "verify_sha256",
        "upper-case-digest",
        lambda kw: {"expected": kw["expected"].upper()},
        "work",
    ),
    ("bytes_for_parameters", "uint4", lambda kw: {"dtype": torch.uint4}, "either"),
    ("write_json", "nan-setting", lambda kw: {"settings": {"clip": math.nan}}, "either"),
    ("dot", "both-require-grad", lambda kw: {k: kw[k].requires_grad_() for k in "xy"}, "work"),
]


def build_cases() -> list[Case]:
    cases = []
    tmp = Path(tempfile.mkdtemp(prefix="attack-"))
    for target in discover():
        if target.qualname in SKIPPED or target.qualname.split(".")[0] in SKIPPED:
            continue
        if target.module in SKIPPED_MODULES:
            continue
        base = f"{target.module}.{target.qualname}"
        cheap = CHEAP_ARGUMENTS.get(target.qualname)
        if cheap is None:
            cases.append(Case(target, "", None, f"{base}-valid"))
        try:
            kwargs = valid_kwargs(target, tmp)
            annotations = hints(underlying(target))
        except Exception:
            continue  # the valid case reports why
        for name, value in kwargs.items():
            if cheap is not None and name not in cheap:
                continue
            for family in families_for(name, value, annotations.get(name, "")):
                cases.append(Case(target, name, family, f"{base}-{name}-{family.name}"))
    by_name = {c.target.qualname: c.target for c in cases}
    for qualname, label, change, expect in EXTRA_CASES:
        if qualname in by_name:
            target = by_name[qualname]
            family = Family(label, lambda v: v, expect)
            cases.append(
                Case(target, "", family, f"{target.module}.{qualname}-{label}", extra=change)
            )
    return cases


# ---------------------------------------------------------------------------------------------
# 5. Judging


def show(value: object) -> str:
    """A short, exact-enough text of an argument for the report."""
    if torch.is_tensor(value):
        grad = ", requires_grad=True" if value.requires_grad else ""
        if value.numel() <= 8:
            return f"torch.tensor({value.tolist()!r}, dtype={value.dtype}{grad})"
        contiguous = "" if value.is_contiguous() else ", non-contiguous"
        return f"<{value.dtype} tensor of shape {tuple(value.shape)}{contiguous}{grad}>"
    if isinstance(value, np.ndarray):
        return f"np.array({value.tolist()!r})"
    if isinstance(value, nn.Module):
        return repr(value).replace("\n", " ")[:80]
    if isinstance(value, list | tuple) and len(value) > 4:
        return f"[{show(value[0])}, ... {len(value)} items]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{type(value).__name__}(...)"
    if inspect.isfunction(value):
        return "lambda: ..."
    if inspect.isclass(value):
        return value.__name__
    return repr(value)[:100]


def call_text(case: Case, kwargs: dict) -> str:
    args = ", ".join(f"{k}={show(v)}" for k, v in kwargs.items())
    name = case.target.qualname
    if case.target.kind == "method":
        name = "<instance>." + name.rsplit(".", 1)[1]
    return f"{name}({args})"


def raising_frame(error: BaseException) -> traceback.FrameSummary:
    return traceback.extract_tb(error.__traceback__)[-1]


def in_tutorlib(filename: str) -> bool:
    return PACKAGE_DIR in Path(filename).resolve().parents


def last_tutorlib_frame(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if in_tutorlib(f.filename)]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{Path(f.filename).relative_to(PACKAGE_DIR.parent)}:{f.lineno}"


def where(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    for root in (PACKAGE_DIR.parent, Path(torch.__file__).parent.parent):
        if root in path.resolve().parents:
            path = path.resolve().relative_to(root)
            break
    return f"{path}:{frame.lineno} in {frame.name}"


def nonfinite(value: object, depth: int = 0) -> str | None:
    """Where a result holds NaN or inf (tensors, floats, dataclasses, dicts, lists)."""
    if depth > 4:
        return None
    if torch.is_tensor(value):
        if value.is_floating_point() or value.is_complex():
            if not bool(torch.isfinite(value.detach()).all()):
                return f"tensor with NaN/inf: {show(value.detach())}"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if found := nonfinite(item, depth + 1):
                return f"{key}: {found}"
    if isinstance(value, list | tuple):
        for item in value:
            if found := nonfinite(item, depth + 1):
                return found
    return None


def mentions(message: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


@dataclasses.dataclass
class Verdict:
    ok: bool
    call: str
    what: str = ""  # what happened
    fix: str = ""  # a one-line suggestion


def judge(case: Case, tmp: Path) -> Verdict:
    target = case.target
    try:
        kwargs = valid_kwargs(target, tmp)
        call = bound_callable(target)
    except Exception as error:
        what = f"could not build a valid call: {type(error).__name__}: {error}"
        return Verdict(False, target.qualname, what, "fix tests/attack_cases.py")
    if case.extra is not None:
        kwargs.update(case.extra(kwargs))
    elif case.family is not None:
        kwargs[case.param] = case.family.make(kwargs[case.param])
    text = call_text(case, kwargs)
    family = case.family.name if case.family else "valid"
    accepted = for_target({k[0]: ACCEPTED for k in ACCEPTED}, target, {})
    accepted = (target.qualname, case.param, family) in accepted
    try:
        result = call(**kwargs)
    except Exception as error:
        plt.close("all")
        return judge_error(case, text, error)
    try:
        return judge_result(case, text, kwargs, result, accepted)
    finally:
        plt.close("all")


def judge_error(case: Case, text: str, error: Exception) -> Verdict:
    frame = raising_frame(error)
    message = str(error).splitlines()[0][:160] if str(error) else ""
    what = f"{type(error).__name__}: {message}  [raised at {where(frame)}]"
    if case.expect == "work" or case.family is None:
        return Verdict(False, text, f"valid input refused: {what}", "accept this valid input")
    own = in_tutorlib(frame.filename) and (frame.line or "").lstrip().startswith("raise")
    param = case.param or "the argument"
    if not isinstance(error, ValueError | TypeError) or not own:
        caller = last_tutorlib_frame(error)
        fix = f"check `{param}` at the top (a _checks helper) and raise a ValueError/TypeError"
        return Verdict(False, text, f"{what}; tutorlib frame {caller}", fix)
    if case.param and not mentions(str(error), case.param):
        return Verdict(False, text, f"message does not name `{case.param}`: {what}",
                       f"name `{case.param}` in the message")  # fmt: skip
    return Verdict(True, text)


def judge_result(case: Case, text: str, kwargs: dict, result: object, accepted: bool) -> Verdict:
    qualname = case.target.qualname
    shown = show(result) if not isinstance(result, dict) else f"dict of {len(result)}"
    if accepted:
        return Verdict(True, text)
    if case.expect == "refuse":
        fix = f"refuse this `{case.param}` ({case.family.name}) with an error naming it"
        return Verdict(False, text, f"returned {shown} instead of refusing", fix)
    problem = None
    if for_target(dict.fromkeys(NONFINITE_RESULTS, True), case.target) is None:
        problem = nonfinite(result)
        problem = problem and f"silent non-finite result: {problem}"
    oracle = for_target(ORACLES, case.target)
    if problem is None and oracle is not None:
        try:
            problem = oracle(kwargs, result)
        except Exception as error:  # the reference itself finds the input meaningless
            problem = f"no correct answer exists ({type(error).__name__}: {error}), yet it returned"
    if problem is None and qualname.split(".")[-1].startswith(PLOT_PREFIX):
        problem = None if type(result).__name__ == "Figure" else f"returned {shown}"
    if problem is None:
        return Verdict(True, text)
    family = case.family.name if case.family else "valid"
    fixes = {
        "huge-3e38": "compute ranges and products in float64 (or refuse what overflows)",
        "float16-huge-6e4": "compute in float32 at least, whatever the input dtype",
        "int64": "cast integer input to the float dtype first (or refuse it)",
        "tiny-1e-41": "floor the scale at a normal number (torch.finfo(dtype).tiny)",
        "constant": "give a constant input a positive scale (floor it)",
        "zeros": "give an all-zero input a positive scale (floor it)",
    }
    fix = fixes.get(family, f"refuse this `{case.param or 'input'}` or compute it correctly")
    return Verdict(False, text, f"wrong result: {problem}", fix)


# ---------------------------------------------------------------------------------------------
# 6. The tests

CASES = build_cases()


def test_every_module_imports():
    broken = []
    for name in public_modules():
        try:
            importlib.import_module(name)
        except Exception as error:
            broken.append(f"{name}: {type(error).__name__}: {error}")
    assert broken == []


def test_the_lists_of_exceptions_stay_short_and_named():
    known = set(targets_by_qualname())
    assert len(SKIPPED) <= 8 and len(CHEAP_ARGUMENTS) <= 4 and len(ACCEPTED) <= 12
    assert len(SKIPPED_MODULES) <= 3
    stale = [name for name in [*SKIPPED, *CHEAP_ARGUMENTS, *{q for q, _, _ in ACCEPTED}]
             if name not in known]  # fmt: skip
    assert stale == [], f"{stale}: these names are no longer public: update tests/attack_cases.py"
    assert all(reason.strip() for reason in [*SKIPPED.values(), *ACCEPTED.values()])


def test_the_api_was_found():
    assert len({c.target.qualname for c in CASES}) >= 40
    assert len(CASES) >= 500


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_attack(case, tmp_path):
    torch.manual_seed(0)
    verdict = judge(case, tmp_path)
    if not verdict.ok:  # pytest.fail: a plain message, without pytest's slow introspection
        pytest.fail(f"{verdict.call}\n  -> {verdict.what}\n  fix: {verdict.fix}", pytrace=False)


# ---------------------------------------------------------------------------------------------
# 7. The report: python tests/test_attack.py /tmp/attack_report.md


def write_report(path: Path) -> None:
    import collections
    import time

    start = time.perf_counter()
    failures = collections.defaultdict(list)
    n_ok = 0
    for case in CASES:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            verdict = judge(case, Path(tmp))
        if verdict.ok:
            n_ok += 1
        else:
            failures[(case.target.module, case.target.qualname)].append((case, verdict))
    seconds = time.perf_counter() - start
    modules = sorted({c.target.module for c in CASES})
    n_failed = sum(len(v) for v in failures.values())
    lines = [
        "# Attack report: bad input against tutorlib's public API",
        "",
        f"Generated by `python tests/test_attack.py` in {seconds:.0f} s: {len(CASES)} cases, "
        f"{n_ok} passed, {n_failed} failed.",
        "",
        f"Modules found: {', '.join(modules)}.",
        f"Skipped with a reason: {', '.join(f'{k} ({v})' for k, v in SKIPPED.items())}.",
        "",
        "| module | failing cases | deep error | not named | silent wrong / accepted bad |",
        "|---|---|---|---|---|",
    ]
    per_module = collections.Counter()
    kinds = collections.defaultdict(collections.Counter)
    for (module, _), items in failures.items():
        for _, verdict in items:
            per_module[module] += 1
            kinds[module][category(verdict)] += 1
    for module in sorted(per_module):
        k = kinds[module]
        lines.append(
            f"| {module} | {per_module[module]} | {k['deep']} | {k['name']} | "
            f"{k['wrong'] + k['accepted']} |"
        )
    lines.append("")
    for (module, qualname), items in sorted(failures.items()):
        lines += [f"## {module}.{qualname} ({len(items)})", ""]
        for case, verdict in items:
            lines.append(f"- `{case.id}` ({case.expect}): `{verdict.call}`")
            lines.append(f"  - {verdict.what}")
            lines.append(f"  - fix: {verdict.fix}")
        lines.append("")
    path.write_text("\n".join(lines))
    print(f"{len(CASES)} cases, {n_failed} failed, {seconds:.0f} s; report in {path}")


def category(verdict: Verdict) -> str:
    if verdict.what.startswith("wrong result"):
        return "wrong"
    if verdict.what.startswith("returned"):
        return "accepted"
    if verdict.what.startswith("message does not name"):
        return "name"
    return "deep"


if __name__ == "__main__":
    write_report(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/attack_report.md"))
