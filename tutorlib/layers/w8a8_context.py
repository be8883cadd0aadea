"""Lesson 5: the working memory W8A8 layers keep between calls, and why it cannot go stale.

A W8A8Context is the memory that the W8A8Linear layers of one model share: scratch buffers for
the temporaries of forward, and the input quantized last, so that query, key and value quantize
their common input once. Each layer also keeps what it derives from its own weight (oneDNN's
packed layout, bounds), keyed on the versions of the buffers it was made from (_WeightCache).
Left out on purpose: thread safety (a context serves one thread at a time) and giving memory
back (the buffers grow to the largest input seen and stay).
"""

import math
import weakref

import torch

from tutorlib.layers.int8_kernel import Int8Kernel

__all__ = ["W8A8Context"]


class W8A8Context:
    """Scratch buffers and the last quantized input, shared by the W8A8Linear layers of a model.

    A layer built alone (`W8A8Linear(in, out)`, `from_linear(linear)`) makes its own context;
    `replace_linear(model, W8A8Linear)` makes one for the whole model; `layer.context` shows it.

    Scratch: one flat tensor per (name, dtype), grown to the largest call seen; a call works in
    a view of its first numel(shape) elements, which the next call of any layer sharing the
    context overwrites (so no view leaves forward). Made with inference mode off, so that a
    first call inside torch.inference_mode() does not make them inference tensors (which an
    in-place write outside inference mode would refuse).

    Last quantized input: a layer that receives the very tensor the previous layer quantized,
    unchanged, reuses its integers and scales. "Unchanged" is proved by the same object (a weak
    reference: a new tensor at the same address does not match), data pointer, shape and
    strides (`x.data = other` swaps the data without a version change) and version counter,
    which every in-place operation on the tensor or on a view of it advances. Tensors made under
    torch.inference_mode carry no version counter: they are always quantized again. Writes
    through `.data` or a NumPy view bypass the counter and are not seen (autograd has the same
    blind spot); call `forget_input()` after such a write.

    Counters: `quantizations` (inputs quantized into this context) and `reuses` (calls that
    reused the last one). Not thread-safe: layers sharing a context must run one at a time, or
    they overwrite each other's scratch; give each thread its own copy of the model. A copy
    (copy.deepcopy, pickle) starts empty, and layers that shared a context share its one copy.

    Example: query, key and value layers of 64 -> 32 sharing a context, each called on the same
    x of shape (50, 64), give quantizations == 1 and reuses == 2, and scratch_bytes == 16,000:
    x / s_x in float32 (50 * 64 * 4 bytes) and the 3,200 one-byte integers (plus 6,400 for the
    int32 sums where torch._int_mm runs, on CPUs with VNNI).
    """

    def __init__(self) -> None:
        self._flat: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        self._views: dict[tuple[str, torch.dtype, torch.Size], torch.Tensor] = {}
        self.quantizations = 0
        self.reuses = 0
        self.forget_input()

    def forget_input(self) -> None:
        """Forget the last quantized input: the next layer quantizes its input, whatever it is."""
        self._input: weakref.ref | None = None
        self._key: tuple = ()
        self._result: tuple[torch.Tensor, torch.Tensor, float, int] | None = None

    @property
    def scratch_bytes(self) -> int:
        """Bytes held by the scratch buffers (they grow to the largest call and stay)."""
        return sum(flat.numel() * flat.element_size() for flat in self._flat.values())

    def __reduce__(self) -> tuple:  # copy.deepcopy and pickle: a copy starts empty
        return (type(self), ())

    def __repr__(self) -> str:
        return (
            f"W8A8Context(quantizations={self.quantizations}, reuses={self.reuses}, "
            f"scratch_bytes={self.scratch_bytes:,})"
        )

    # --- W8A8Linear's hot path (unchecked; nothing else should call these) ---------------------

    def _buffer(self, name: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """A scratch view of `shape`, valid until the next call that asks for (name, dtype)."""
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

    def _start_quantization(self) -> None:
        """Called before the scratch integers change: what was remembered is about to go."""
        self.forget_input()
        self.quantizations += 1

    @staticmethod
    def _key_of(x: torch.Tensor) -> tuple:
        return (x._version, x.data_ptr(), x.shape, x.stride())

    def _find(
        self, x: torch.Tensor, dtype: torch.dtype, q_max: int
    ) -> tuple[torch.Tensor, torch.Tensor, float, int] | None:
        """(x_q, s_x, max|x|, q_max) if x is the tensor quantized last, unchanged, into the same
        encoding (dtype: int8 for torch._int_mm, uint8 for oneDNN) and grid (q_max), else None."""
        if self._input is None or self._input() is not x or x.is_inference():
            return None
        if self._key_of(x) != self._key or self._result is None:
            return None
        x_q, _, _, result_q_max = self._result
        if (x_q.dtype, result_q_max) != (dtype, q_max):
            return None
        self.reuses += 1
        return self._result

    def _remember(
        self, x: torch.Tensor, result: tuple[torch.Tensor, torch.Tensor, float, int]
    ) -> None:
        if not x.is_inference():  # no version counter, nothing to prove unchanged by
            self._input, self._key, self._result = weakref.ref(x), self._key_of(x), result


class _WeightCache:
    """What a W8A8Linear makes from its buffers, lazily, keyed on their versions; and the integer
    product, which reads it.

    key = (version, data pointer) of int8_weight, scales and bias. Every in-place edit of a
    buffer advances its version (load_state_dict copies in place too) and a new tensor has a
    new pointer (the cache holds the buffers it was made from, so no new tensor can reuse their
    memory), so `refresh` forgets everything after either: one tuple compare per call.
    Buffers made under torch.inference_mode have no version counter; for them nothing is kept
    (rebuilt at every call: correct, slower). copy.deepcopy and pickle start a new cache.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self.weight: torch.Tensor | None = None  # the buffers everything was made from
        self.scales: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self._forget()

    def __reduce__(self) -> tuple:  # oneDNN's packed tensors have no storage to copy
        return (type(self), ())

    def _forget(self) -> None:
        self._packed: tuple[torch.Tensor, torch.Tensor] | None = None  # layout, zero points
        self._weight_t: torch.Tensor | None = None
        self._gain: float | None = None
        self._bias_max: float | None = None

    def refresh(
        self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        """Take the layer's buffers; forget what was made from them if any changed since."""
        try:
            key = (
                weight._version, weight.data_ptr(), scales._version, scales.data_ptr(),
                None if bias is None else (bias._version, bias.data_ptr()),
            )  # fmt: skip
        except RuntimeError:  # an inference tensor: no version counter, so no key
            key = (object(),)  # equal to nothing: never current
        if key != self._key:
            self._key, self.weight, self.scales, self.bias = key, weight, scales, bias
            self._forget()

    def product(self, x_q: torch.Tensor, kernel: Int8Kernel, context: W8A8Context) -> torch.Tensor:
        """s_w * acc from uint8 (oneDNN, packed weight), int8 (torch._int_mm) or, where neither
        kernel is exact, a float64 product of the integers (exact: |acc| < 2**31 < 2**53).

        qlinear_pointwise(u8, 1.0, zp, packed, s_w, 0, None, 1.0, 0, float32, "none", [], ""):
        activations u8 with scale 1 and zero point zp (oneDNN computes sum (u8 - zp) * W_q),
        weights per channel with scales s_w, no bias, float32 output, no fused post-op.
        Returns a new (tokens, out_features) float32 tensor: float32(acc) * s_w on every path.
        """
        if x_q.dtype == torch.uint8:
            packed, zero_points = self._packed_weight()
            return torch.ops.onednn.qlinear_pointwise(
                x_q, 1.0, kernel.zero_point,  # activations: u8, scale 1, zero point
                packed, self.scales, zero_points,  # weights: per channel, zero points all 0
                None,  # bias: added by the rescale, after the per-token scale
                1.0, 0, torch.float32,  # output: float32 (output scale and zero point unused)
                "none", [], "",  # no fused post-op
            )  # fmt: skip
        if not kernel.int_mm:  # no exact integer kernel: float64 holds every int32 sum
            acc = x_q.double() @ self.weight.double().T  # (tokens, out), exact integers
            return torch.mul(acc.float(), self.scales)  # float32(acc) * s_w, as the kernels
        shape = torch.Size((x_q.shape[0], self.weight.shape[0]))
        acc = context._buffer("acc", shape, torch.int32)
        torch._int_mm(x_q, self._transposed_weight(), out=acc)  # (tokens, out) int32, exact
        return torch.mul(acc, self.scales)  # float32(acc) * s_w: the new output tensor

    def _packed_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """oneDNN's blocked layout of the int8 weight (`qlinear_prepack`), and the weight's
        zero points for qlinear_pointwise (symmetric: all 0)."""
        if self._packed is None:
            with torch.inference_mode(False):
                packed = torch.ops.onednn.qlinear_prepack(self.weight, None)
                self._packed = (packed, torch.zeros(self.weight.shape[0], dtype=torch.int64))
        return self._packed

    def _transposed_weight(self) -> torch.Tensor:
        """The int8 weight as (in, out), contiguous: the (k, n) layout torch._int_mm takes.

        A fresh (in, out) tensor, not `.t().contiguous()`: for in_features = 1 the transposed
        view has strides (1, 1), counts as contiguous, and torch 2.13's CPU _int_mm returns
        garbage for a right operand with those strides.
        """
        if self._weight_t is None:
            out_features, in_features = self.weight.shape
            with torch.inference_mode(False):
                weight_t = torch.empty(in_features, out_features, dtype=torch.int8)
                self._weight_t = weight_t.copy_(self.weight.t())  # strides (out, 1)
        return self._weight_t

    def gain(self) -> float:
        """gain = max_o s_w[o] * sum_i |W_q[o, i]|: the largest |s_x * y'| per unit of max|x|.

        |y'[t, o]| <= s_w[o] * sum_i |x_q[t, i]| |W_q[o, i]| <= q_max * s_w[o] * sum_i |W_q[o, i]|
        and s_x[t] = max|x[t]| / q_max, so |s_x[t] * y'[t, o]| <= max|x[t]| * gain.
        Example: W_q rows [127, 0, -127] and [1, 2, 3], s_w = [0.02, 0.5] -> gain = 5.08.
        Computed in float64.
        """
        if self._gain is None:
            row_sums = self.weight.double().abs().sum(dim=1)  # (out_features,)
            self._gain = (self.scales.double() * row_sums).max().item()
        return self._gain

    def bias_max(self) -> float:
        """max |b[o]| (0 without a bias)."""
        if self._bias_max is None:
            self._bias_max = 0.0 if self.bias is None else self.bias.abs().max().item()
        return self._bias_max
