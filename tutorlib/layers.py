"""Quantized linear layers and the function that swaps them into a model (Lessons 4 and 5).

A quantized layer stores integer weights and per-output-channel scales as buffers and calls the
primitives of `tutorlib.quantization` in a few lines of `forward`; `replace_linear` walks a model
and swaps every `nn.Linear` (except the ones named in `skip`) for such a layer. `W8A8Linear`
(Lesson 5) multiplies int8 by int8 on a weight that oneDNN prepacked once, reuses its
temporaries, so that a call allocates no more than nn.Linear does, and quantizes an input that
several layers read (query, key, value) once, when it can prove the input unchanged.
Left out on purpose: tensor-subclass dispatch (optimum-quanto's machinery), packed sub-8-bit
weights, quantized convolutions and embeddings, training through quantized weights, GPUs, and
thread safety of W8A8Linear's scratch buffers.
"""

import math
import weakref
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib._checks import (
    check_bool,
    check_float_tensor,
    check_int,
    check_names,
    check_tensor,
)
from tutorlib.int8_kernel import Int8Kernel, select_int8_kernel
from tutorlib.quantization import (
    QuantizedTensor,
    QuantParams,
    integer_range,
    linear_dequantize,
    quantize_tensor,
)

__all__ = ["quantize_weight_per_channel", "W8A16Linear", "W8A8Linear", "replace_linear"]

# Integer range of both layers' weights (and W8A8's activations): symmetric int8, [-127, 127].
_INT8_MAX = integer_range(8, symmetric=True)[1]
# Largest in_features whose int32 sums cannot overflow: |acc| <= in_features * 127**2 < 2**31.
_MAX_IN_FEATURES = torch.iinfo(torch.int32).max // _INT8_MAX**2  # 133,144
# Floor of an activation scale, so that a row of zeros does not divide 0 by 0 (as Lesson 4).
_SCALE_FLOOR = torch.finfo(torch.float32).eps


def _check_features(value: object, name: str, maximum: int | None = None) -> int:
    """A layer size: a positive int, at most `maximum` (W8A8's int32 limit) when given."""
    size = check_int(value, name, minimum=1)
    if maximum is not None and size > maximum:
        raise ValueError(
            f"{name} must be at most {maximum:,} so that the int32 sums of int8 products "
            f"(|acc| <= {name} * 127**2) cannot overflow, got {size:,}; split the layer along "
            "its input or keep it in float"
        )
    return size


def _check_linear(linear: object) -> nn.Linear:
    """An nn.Linear on the CPU with finite weights (what from_linear quantizes)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    check_float_tensor(linear.weight.detach(), "linear.weight")
    return linear


def _check_input(x: object, in_features: int) -> torch.Tensor:
    """x: a float tensor of shape (..., in_features); NaN is checked by each layer."""
    check_tensor(x, "x")
    if not x.is_floating_point():
        raise TypeError(f"x must hold float activations, got {x.dtype}; cast with x.float()")
    if x.ndim == 0 or x.shape[-1] != in_features:
        raise ValueError(f"x must have shape (..., {in_features}), got {tuple(x.shape)}")
    return x


def quantize_weight_per_channel(weight: torch.Tensor) -> QuantizedTensor:
    """The weight quantizer both layers share: symmetric int8, one scale per output channel.

    s[o] = max_i |W[o, i]| / 127,  W_q[o, i] = clamp(round(W[o, i] / s[o]), -127, 127),
    which is optimum-quanto's qint8 weight scheme. Example: a row [0.5, -1.27, 0.1] gets
    s = 1.27 / 127 = 0.01 and the integers [50, -127, 10].
    Returns a QuantizedTensor: q int8 (out_features, in_features), scale (out_features, 1).
    """
    check_float_tensor(check_tensor(weight, "weight").detach(), "weight")
    if weight.ndim != 2:
        raise ValueError(
            f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    return quantize_tensor(weight.detach(), bits=8, symmetric=True, dim=0)


class W8A16Linear(nn.Module):
    """Linear layer with int8 weights and float activations (weight-only quantization).

    Weights are quantized symmetrically per output channel, s_o = max_i |W[o, i]| / 127 and
    W_q = clamp(round(W / s), -127, 127), as optimum-quanto's qint8 weights. `forward`
    dequantizes, W ~ s * W_q, in the activation's dtype and runs an ordinary float matmul:
        y = x @ (s * W_q)^T + b
    Memory shrinks (1 byte per weight plus one scale per row); the matmul is the float one.

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features, 1) in the
    original weight's dtype; bias (out_features,) or None, kept in float.

    Example: a 4 x 3 weight whose row 0 is [0.5, -1.27, 0.1] gets s_0 = 1.27 / 127 = 0.01 and
    int8 row [50, -127, 10].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = _check_features(in_features, "in_features")
        self.out_features = _check_features(out_features, "out_features")
        check_bool(bias, "bias")
        _check_float_dtype(dtype)
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )  # (out_features, in_features)
        self.register_buffer("scales", torch.ones(out_features, 1, dtype=dtype))  # (out, 1)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A16Linear":
        """Quantize an nn.Linear's weight (symmetric, per output channel) into a new layer."""
        weight = _check_linear(linear).weight.detach()  # (out_features, in_features)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, weight.dtype)
        quantized = quantize_weight_per_channel(weight)
        layer.int8_weight.copy_(quantized.q)  # (out_features, in_features) int8
        layer.scales.copy_(quantized.params.scale)  # (out_features, 1)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer.to(weight.device)

    def weight_params(self, dtype: torch.dtype) -> QuantParams:
        """The weight's QuantParams (symmetric int8, per output channel), scales in `dtype`."""
        scale = self.scales.to(_check_float_dtype(dtype))  # (out_features, 1)
        return QuantParams(scale, torch.zeros_like(scale, dtype=torch.int32), 8, True, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor(_check_input(x, self.in_features).detach(), "x", allow_empty=True)
        weight = linear_dequantize(self.int8_weight, self.weight_params(x.dtype))  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights=int8"


def _check_float_dtype(dtype: object) -> torch.dtype:
    """A floating-point torch.dtype (float16, bfloat16, float32, float64)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype, e.g. torch.float32, got {dtype!r}"
        )
    return dtype


def replace_linear(
    model: nn.Module, layer_cls: type[nn.Module], skip: Iterable[str] = ("lm_head",)
) -> nn.Module:
    """Replace every nn.Linear in `model` by `layer_cls.from_linear(linear)`, in place.

    A Linear is kept when its attribute name (e.g. "lm_head") or its full dotted name
    (e.g. "encoder.layer.0.output.dense") is in `skip`, and when it is a child of an
    nn.MultiheadAttention, which reads `out_proj.weight` directly instead of calling it. A Linear
    reachable under several names (shared, or tied) becomes ONE new layer under all of them,
    unless one of its names is skipped. Any class with a `from_linear` classmethod works
    (W8A16Linear, W8A8Linear). The model is modified in place and also returned, so
    `q = replace_linear(copy.deepcopy(m), W8A16Linear)` keeps m.

    Example: a BERT encoder of 6 layers has 36 Linear layers; all 36 become W8A16Linear.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear):
        raise TypeError("model is itself an nn.Linear: call layer_cls.from_linear(model) instead")
    if not isinstance(layer_cls, type) or not hasattr(layer_cls, "from_linear"):
        raise TypeError(
            f"layer_cls must be a class with a from_linear classmethod, got {layer_cls!r}"
        )
    skip = set(check_names(tuple(skip) if isinstance(skip, list | set) else skip, "skip"))
    # every (parent, attribute) that holds a Linear, shared modules under each of their names
    slots = [
        (parent, child_name, child, f"{parent_name}.{child_name}".lstrip("."))
        for parent_name, parent in model.named_modules(remove_duplicate=False)
        for child_name, child in parent._modules.items()  # named_children() drops repeats
        if isinstance(child, nn.Linear)
    ]
    kept = {
        id(child)
        for parent, child_name, child, name in slots
        if isinstance(parent, nn.MultiheadAttention) or child_name in skip or name in skip
    }
    new_layers: dict[int, nn.Module] = {}  # one new layer per Linear, however many names it has
    for parent, child_name, child, _ in slots:
        if id(child) not in kept:
            if id(child) not in new_layers:
                new_layers[id(child)] = layer_cls.from_linear(child)
            setattr(parent, child_name, new_layers[id(child)])
    return model


# ---------------------------------------------------------------- W8A8Linear (Lesson 5)


# From this many multiply-adds per call (tokens x in_features x out_features) on, oneDNN's
# prepacked kernel beat torch._int_mm on an Intel Xeon with AMX; below, its fixed cost (~40 us a
# call) lost. Where torch._int_mm is not exact (no VNNI), oneDNN runs every call. Measured in
# microseconds, oneDNN vs torch._int_mm: 384 -> 384 at 64 tokens (9.4M) 49 vs 41;
# 384 -> 1536 at 18 tokens (10.6M) 55 vs 70; 1536 -> 384 at 18 tokens 47 vs 46, at 32 tokens
# 53 vs 57. Other CPUs move the crossover.
_ONEDNN_MIN_MACS = 10_000_000
# From this many activations per call on, the rows' largest |x| is found as max(max x, -min x),
# two reductions that read x, instead of |x| written to scratch and then reduced: fewer bytes
# moved, but one more call, which costs more on small inputs. Measured: 704 x 1536 245 vs
# 341 us, 704 x 384 43 vs 50 us, 128 x 384 12.7 vs 9.9 us. Both give the same number.
_MINMAX_MIN_NUMEL = 2**17


class _Scratch:
    """Grow-only scratch tensors, one per (name, dtype), shared by every W8A8Linear.

    `get` returns a view of the first numel(shape) elements; the memory is reused by the next
    call, so a view must never leave forward. Created with inference mode off, so that a first
    call inside torch.inference_mode() does not make them inference tensors (which an in-place
    write outside inference mode would refuse).
    """

    def __init__(self) -> None:
        self._flat: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._views: dict[tuple[str, torch.dtype, torch.Size], torch.Tensor] = {}

    def get(self, name: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        view = self._views.get((name, dtype, shape))  # the common case: a shape seen before
        if view is not None:
            return view
        numel = math.prod(shape)
        flat = self._flat.get((name, dtype))
        if flat is None or flat.numel() < numel:
            with torch.inference_mode(False):
                flat = torch.empty(numel, dtype=dtype)
            self._flat[(name, dtype)] = flat
            self._views = {k: v for k, v in self._views.items() if k[:2] != (name, dtype)}
        view = flat[:numel].view(shape)
        self._views[(name, dtype, shape)] = view
        return view


_SCRATCH = _Scratch()


class _LastQuantized:
    """The activations W8A8Linear quantized last, reused while provably unchanged.

    In a transformer, query, key and value read the same tensor one after the other; quantizing
    it once instead of three times saves two passes over it. A result is reused only for the
    very same tensor object (a weak reference: a new tensor at the same address does not match),
    with the same data pointer, shape and strides (`x.data = other` swaps the data without a
    version change) and the same version counter, which every in-place operation on the tensor
    or on a view of it advances. Tensors made under torch.inference_mode carry no version
    counter, so there nothing is reused (never a stale result). In-place writes through `.data`
    or a NumPy view bypass the counter and are not seen: PyTorch's autograd has the same blind
    spot. One slot for every layer: any other quantization overwrites the scratch x_q, so
    _quantize forgets it first.
    """

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._input: weakref.ref | None = None
        self._key: tuple = ()
        self._result: tuple[torch.Tensor, torch.Tensor, float, int] | None = None

    @staticmethod
    def _key_of(x: torch.Tensor) -> tuple:
        return (x._version, x.data_ptr(), x.shape, x.stride())

    def find(
        self, x: torch.Tensor, dtype: torch.dtype, q_max: int
    ) -> tuple[torch.Tensor, torch.Tensor, float, int] | None:
        """(x_q, s_x, max|x|, q_max) if x is the tensor quantized last, unchanged, into the same
        encoding (dtype: int8 for torch._int_mm, uint8 for oneDNN) and grid (q_max), else None."""
        if self._input is None or self._input() is not x or x.is_inference():
            return None
        if self._key_of(x) != self._key or self._result is None:
            return None
        x_q, _, _, result_q_max = self._result
        return self._result if (x_q.dtype, result_q_max) == (dtype, q_max) else None

    def remember(
        self, x: torch.Tensor, result: tuple[torch.Tensor, torch.Tensor, float, int]
    ) -> None:
        if not x.is_inference():  # no version counter, nothing to prove unchanged by
            self._input, self._key, self._result = weakref.ref(x), self._key_of(x), result


_LAST = _LastQuantized()


class W8A8Linear(nn.Module):
    """Linear layer with int8 weights AND int8 activations: the matmul runs on integer units.

    Weights: symmetric per output channel, as W8A16Linear, s_w[o] = max_i |W[o, i]| / 127.
    Activations: symmetric per token (per row), computed on the fly at every call,
        s_x[t] = max_i |x[t, i]| / q_max,   x_q = round(x / s_x),   q_max = 2**(bits - 1) - 1
    (dynamic quantization; a row of zeros gets s_x = torch.finfo(float32).eps). Then one
    integer matmul and one rescale:
        acc[t, o] = sum_i x_q[t, i] * W_q[o, i]      (int8 x int8 -> int32, exact)
        y[t, o]   = s_x[t] * (s_w[o] * acc[t, o]) + b[o]
    |acc| <= in_features * 127**2 < 2**31 for in_features <= 133,144 (larger layers are refused).

    The bit width and the kernel come from `self.kernel` (an Int8Kernel, found once per process
    by `tutorlib.int8_kernel.select_int8_kernel`'s self-test): 8 bits (q_max 127) where the CPU
    adds u8 x s8 products exactly (x86 VNNI or AMX), 7 bits (q_max 63) where it adds pairs of
    them in a saturating int16 (x86 without VNNI), so acc is exact on every CPU. oneDNN reads
    the activations as unsigned bytes u8 = x_q + 2**(bits - 1) and subtracts the zero point
    inside (signed int8 activations would run its reference kernel on any x86 CPU without AMX).

    Three things make it fast and change no number. (1) The weight is *packed* once: oneDNN
    (`torch.ops.onednn.qlinear_prepack`) reorders the int8 weight into the blocked layout its
    kernel reads, and the kernel multiplies by s_w on the way out. Below 10 million
    multiply-adds a call oneDNN's fixed cost loses, and torch._int_mm (signed int8, unpacked)
    runs instead where the self-test found it exact; both give float32(acc) * s_w bit for bit.
    (2) Every temporary of forward lives in a scratch buffer reused across calls, so a call
    allocates one new output-sized tensor, its output, as nn.Linear does. (3) When a layer
    receives the very tensor the previous W8A8Linear quantized, unchanged (same object, same
    version counter), its integers and scales are reused: query, key and value quantize their
    shared input once. Tensors made under torch.inference_mode are always quantized again.

    Input: any float tensor of shape (..., in_features); the math runs in float32 and the output
    has the input's dtype. NaN or inf raise ValueError (int8 has neither), and so does an input
    so large that the output could overflow. Not thread-safe: every layer shares the scratch
    buffers (which are never returned to the caller).

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features,) float32;
    bias (out_features,) float32 or None.

    Example (8 bits): x row [0.5, -1.27, 0.1] gets s_x = 0.01 and x_q = [50, -127, 10]; a weight
    row W_q = [127, 0, -127] with s_w = 0.02 gives acc = 6350 - 1270 = 5080 and
    y = 0.01 * (0.02 * 5080) = 1.016 (in float: 0.5 * 2.54 - 0.1 * 2.54 = 1.016).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = _check_features(in_features, "in_features", _MAX_IN_FEATURES)
        self.out_features = _check_features(out_features, "out_features")
        self._macs_per_token = in_features * out_features
        check_bool(bias, "bias")
        self.register_buffer(
            "int8_weight", torch.zeros(out_features, in_features, dtype=torch.int8)
        )
        self.register_buffer("scales", torch.ones(out_features))  # (out_features,) float32
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        # the weights' zero points for oneDNN (symmetric: all 0); not saved in the state_dict
        self.register_buffer(
            "_w_zero_points", torch.zeros(out_features, dtype=torch.int64), persistent=False
        )
        self.kernel = select_int8_kernel()
        self._forget_layouts()

    @property
    def kernel(self) -> Int8Kernel:
        """The integer kernel and activation bit width this layer runs (see tutorlib.int8_kernel).

        Ask it which path runs and why: `layer.kernel.describe()`. Assign another Int8Kernel
        only if this CPU runs it exactly (`trial_runs()` says which do).
        """
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: Int8Kernel) -> None:
        if not isinstance(kernel, Int8Kernel):
            raise TypeError(
                f"kernel must be an Int8Kernel (e.g. select_int8_kernel()), got {kernel!r}"
            )
        self._kernel = kernel

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "W8A8Linear":
        """Quantize an nn.Linear's weight (symmetric int8, per output channel) into a new layer."""
        if _check_linear(linear).weight.device.type != "cpu":
            raise ValueError("linear must be on the CPU (W8A8Linear runs there); call .cpu()")
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        quantized = quantize_weight_per_channel(linear.weight.detach().float())
        layer.int8_weight.copy_(quantized.q)  # (out_features, in_features) int8
        layer.scales.copy_(quantized.params.scale.flatten())  # (out_features,)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_q, x_scale = self._quantize_once(_check_input(x, self.in_features))  # (tokens, 1)
        y = self._integer_matmul(x_q)  # (tokens, out) float32 = s_w * acc, the new output
        y = self._rescale(y, x_scale)  # s_x * y + b, in place
        y = y.view(*x.shape[:-1], self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    # --- the three steps, checked, for the lesson and the tests (forward calls the unchecked
    # --- versions below, which may return scratch memory) --------------------------------------

    def quantize_activations(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token symmetric: s_x = max|row| / q_max, x_q = round(row / s_x), q_max from kernel.

        At 8 bits, the same integers as `get_scale_and_zero_point(rows, 8, symmetric=True,
        dim=0)` and `linear_quantize` (a test checks it, and the 7-bit grid against the same
        functions at bits=7), with fewer passes over memory: one absmax reduction, rounding in
        place, and no clamp (|row / s_x| <= q_max up to two float32 roundings).
        Example (8 bits): rows [[0.5, -1.27, 0.1]] -> x_q [[50, -127, 10]], s_x [[0.01]].
        Returns new tensors (x_q int8 (tokens, in_features), s_x float32 (tokens, 1)).
        """
        check_float_tensor(check_tensor(rows, "rows").detach(), "rows", allow_empty=True)
        if rows.ndim != 2 or rows.shape[1] != self.in_features:
            raise ValueError(
                f"rows must have shape (tokens, {self.in_features}), got {tuple(rows.shape)}"
            )
        x_q, x_scale, _, _ = self._quantize(rows.detach(), "rows", math.inf, torch.int8)
        return x_q.clone(), x_scale

    def integer_matmul(self, x_q: torch.Tensor) -> torch.Tensor:
        """y'[t, o] = s_w[o] * sum_i x_q[t, i] W_q[o, i]: exact int32 sums, one float rounding.

        x_q: signed int8 on this layer's grid, |x_q| <= kernel.q_max (larger values could
        saturate the kernel's adder on a CPU without VNNI, so they are refused).
        Example: x_q = [[50, -127, 10]], W_q row [127, 0, -127], s_w = 0.02 -> [[101.6]].
        Returns a new (tokens, out_features) float32 tensor.
        """
        check_tensor(x_q, "x_q")
        if x_q.dtype != torch.int8 or x_q.ndim != 2 or x_q.shape[1] != self.in_features:
            raise ValueError(
                f"x_q must be int8 of shape (tokens, {self.in_features}), "
                f"got {x_q.dtype} {tuple(x_q.shape)}"
            )
        q_max = self.kernel.q_max
        if x_q.numel() and x_q.abs().max().item() > q_max:
            raise ValueError(
                f"x_q must lie in [-{q_max}, {q_max}], this layer's {self.kernel.activation_bits}"
                "-bit grid (quantize_activations gives such integers)"
            )
        if self._uses_packed_kernel(x_q.shape[0]):
            x_q = (x_q.short() + self.kernel.zero_point).to(torch.uint8)  # oneDNN reads u8
        return self._integer_matmul(x_q.contiguous())

    def rescale(self, y: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """y[t, o] = s_x[t] * y'[t, o] + b[o], from integer_matmul's y' = s_w * acc.

        Example: y' = [[101.6]] (= 0.02 * 5080), s_x = [[0.01]], no bias -> [[1.016]].
        Returns a new tensor; refuses a result that overflows float32.
        """
        y = check_float_tensor(check_tensor(y, "y"), "y", allow_empty=True)
        x_scale = check_float_tensor(check_tensor(x_scale, "x_scale"), "x_scale", allow_empty=True)
        if y.ndim != 2 or y.shape[1] != self.out_features or x_scale.shape != (y.shape[0], 1):
            raise ValueError(
                f"y must have shape (tokens, {self.out_features}) and x_scale (tokens, 1), got "
                f"{tuple(y.shape)} and {tuple(x_scale.shape)}"
            )
        out = self._rescale(y.detach().float().clone(), x_scale.detach().float())
        if not bool(torch.isfinite(out).all()):
            raise ValueError("x_scale * y overflows float32; the activations' scale is too large")
        return out

    # --- the hot path -------------------------------------------------------------------------

    def _encoding(self, tokens: int) -> torch.dtype:
        """The integers' dtype for a call: uint8 (q + zero point) for oneDNN, int8 otherwise."""
        return torch.uint8 if self._uses_packed_kernel(tokens) else torch.int8

    def _quantize_once(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """_quantize, or the result for the same unchanged x from the previous layer (_LAST).

        The bound on the output is this layer's, so it is checked again on a reused result.
        """
        limit = torch.finfo(x.dtype).max
        rows = x.detach().reshape(-1, self.in_features)  # (tokens, in_features)
        dtype = self._encoding(rows.shape[0])
        found = _LAST.find(x, dtype, self.kernel.q_max)
        if found is None:  # _quantize checks the bound itself
            found = self._quantize(rows, "x", limit, dtype)
            _LAST.remember(x, found)
        else:
            self._check_output_bound(found[2], "x", limit)
        return found[0], found[1]

    def _quantize(
        self, rows: torch.Tensor, name: str, limit: float, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """quantize_activations without checks; x_q is a scratch view, valid until the next call.

        dtype int8 stores x_q; uint8 stores x_q + zero_point (what oneDNN reads). max |row| is
        max(max row, -min row) on large inputs and |row| (into scratch), reduced, on small ones
        (see _MINMAX_MIN_NUMEL); a NaN or inf in a row shows in its max, so the check costs no
        extra pass. Also refuses inputs whose output could exceed `limit`
        (_check_output_bound). Returns (x_q, s_x, max|rows|, q_max).
        """
        _LAST.forget()  # the scratch x_q is about to change
        q_max = self.kernel.q_max
        rows = rows.float()  # float32 math (bf16 could round 127 up to 128); no copy if float32
        ratio = _SCRATCH.get("ratio", rows.shape, torch.float32)  # (tokens, in) float32
        if rows.numel() >= _MINMAX_MIN_NUMEL:  # (tokens, 1); NaN stays NaN in both
            abs_max = torch.maximum(
                rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_()
            )
        else:
            abs_max = torch.abs(rows, out=ratio).amax(dim=1, keepdim=True)
        peak = abs_max.max().item() if abs_max.numel() else 0.0
        if not math.isfinite(peak):
            raise ValueError(
                f"{name} contains NaN or inf, which int8 cannot represent; find where they come "
                "from (e.g. an overflow in float16) or run this layer in float"
            )
        self._check_output_bound(peak, name, limit)
        scale = abs_max.div_(q_max).clamp_(min=_SCALE_FLOOR)  # (tokens, 1), in place
        torch.div(rows, scale, out=ratio).round_()  # round half to even, as torch.round
        if dtype == torch.uint8:  # u8 = q + zero point, in [1, 255] (8 bits) or [1, 127] (7)
            ratio.add_(self.kernel.zero_point)
        x_q = _SCRATCH.get(f"x_q_{dtype}", rows.shape, dtype).copy_(ratio)  # exact: integers
        return x_q, scale, peak, q_max

    def _check_output_bound(self, peak: float, name: str, limit: float) -> None:
        """Refuse an input whose output could exceed `limit`: |y[t, o]| <= max|x| * gain + max|b|
        (see _output_gain)."""
        if peak * self._output_gain() + self._bias_max() > limit:
            raise ValueError(
                f"{name} is too large (max |{name}| = {peak:.3g}): the output could exceed "
                f"{limit:.3g}, the largest value of its dtype; scale the input down"
            )

    def _integer_matmul(self, x_q: torch.Tensor) -> torch.Tensor:
        """s_w * acc from uint8 (oneDNN, packed weight), int8 (torch._int_mm) or, where neither
        kernel is exact, a float64 product of the integers (exact: |acc| < 2**31 < 2**53).

        qlinear_pointwise(u8, 1.0, zp, packed, s_w, 0, None, 1.0, 0, float32, "none", [], ""):
        activations u8 with scale 1 and zero point zp (oneDNN computes sum (u8 - zp) * W_q),
        weights per channel with scales s_w, no bias, float32 output, no fused post-op.
        """
        if x_q.dtype == torch.uint8:
            return torch.ops.onednn.qlinear_pointwise(
                x_q, 1.0, self.kernel.zero_point,  # activations: u8, scale 1, zero point
                self._packed_weight(), self.scales, self._w_zero_points,  # weights, per channel
                None,  # bias: added by _rescale, after the per-token scale
                1.0, 0, torch.float32,  # output: float32 (output scale and zero point unused)
                "none", [], "",  # no fused post-op
            )  # fmt: skip
        if not self.kernel.int_mm:  # no exact integer kernel: float64 holds every int32 sum
            acc = x_q.double() @ self.int8_weight.double().T  # (tokens, out), exact integers
            return torch.mul(acc.float(), self.scales)  # float32(acc) * s_w, as the kernels
        acc = _SCRATCH.get("acc", torch.Size((x_q.shape[0], self.out_features)), torch.int32)
        torch._int_mm(x_q, self._transposed_weight(), out=acc)  # (tokens, out) int32, exact
        return torch.mul(acc, self.scales)  # float32(acc) * s_w: the new output tensor

    def _uses_packed_kernel(self, tokens: int) -> bool:
        """True if a call with `tokens` rows runs oneDNN's packed kernel: always where oneDNN is
        the only exact kernel, else from _ONEDNN_MIN_MACS multiply-adds on."""
        if not self.kernel.onednn:
            return False
        return not self.kernel.int_mm or tokens * self._macs_per_token >= _ONEDNN_MIN_MACS

    def _rescale(self, y: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """s_x * y + b in place on y (s_w * acc is already bounded by the output: no overflow)."""
        if self.bias is None:
            return y.mul_(x_scale)
        return torch.addcmul(self.bias, y, x_scale, out=y)  # b + y * s_x, one pass

    # --- cached weight layouts and bounds, rebuilt lazily after the weights change ------------

    def _packed_weight(self) -> torch.Tensor:
        """oneDNN's blocked layout of int8_weight, made at the first call and kept."""
        if self._packed is None:
            with torch.inference_mode(False):
                self._packed = torch.ops.onednn.qlinear_prepack(self.int8_weight, None)
        return self._packed

    def _transposed_weight(self) -> torch.Tensor:
        """int8_weight as (in, out), contiguous: the (k, n) layout torch._int_mm takes.

        A fresh (in, out) tensor, not `.t().contiguous()`: for in_features = 1 the transposed
        view has strides (1, 1), counts as contiguous, and torch
        2.13's CPU _int_mm returns garbage for a right operand with those strides.
        """
        if self._weight_t is None:
            with torch.inference_mode(False):
                weight_t = torch.empty(self.in_features, self.out_features, dtype=torch.int8)
                self._weight_t = weight_t.copy_(self.int8_weight.t())  # strides (out, 1)
        return self._weight_t

    def _output_gain(self) -> float:
        """gain = max_o s_w[o] * sum_i |W_q[o, i]|: the largest |s_x * y'| per unit of max|x|.

        |y'[t, o]| <= s_w[o] * sum_i |x_q[t, i]| |W_q[o, i]| <= 127 * s_w[o] * sum_i |W_q[o, i]|
        and s_x[t] = max|x[t]| / 127, so |s_x[t] * y'[t, o]| <= max|x[t]| * gain.
        Computed in float64, once per weight.
        """
        if self._gain is None:
            row_sums = self.int8_weight.double().abs().sum(dim=1)  # (out_features,)
            self._gain = (self.scales.double() * row_sums).max().item()
        return self._gain

    def _bias_max(self) -> float:
        if self._bias_peak is None:
            self._bias_peak = 0.0 if self.bias is None else self.bias.abs().max().item()
        return self._bias_peak

    def _forget_layouts(self) -> None:
        self._packed: torch.Tensor | None = None  # oneDNN's layout of int8_weight
        self._weight_t: torch.Tensor | None = None  # (in, out) contiguous, for torch._int_mm
        self._gain: float | None = None
        self._bias_peak: float | None = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # new weights: rebuild lazily
        super()._load_from_state_dict(*args, **kwargs)
        self._forget_layouts()

    def __getstate__(self) -> dict:  # copy.deepcopy and pickle: oneDNN tensors have no storage
        state = self.__dict__.copy()
        state["_packed"] = state["_weight_t"] = None
        return state

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, weights=int8 per channel, activations=int8 per token"
        )
