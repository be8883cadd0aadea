"""Lesson 5: int8 weights AND int8 activations (W8A8): the matmul runs on integer units.

W8A8Linear quantizes activations per token at every call, multiplies int8 by int8 into int32 on
a kernel the CPU runs exactly (tutorlib.layers.int8_kernel), and rescales.
Left out on purpose: tensor-subclass dispatch, quantized attention and embeddings, GPUs.
"""

import math

import torch
from torch import nn

from tutorlib._checks import check_bool, check_float_tensor, check_tensor
from tutorlib.layers.int8_kernel import Int8Kernel, select_int8_kernel
from tutorlib.layers.w8a8_context import W8A8Context, _WeightCache
from tutorlib.layers.w8a16 import (
    _check_features,
    _check_input,
    _check_linear,
    quantize_weight_per_channel,
)
from tutorlib.quant.params import SCALE_FLOOR, integer_range

__all__ = ["W8A8Linear"]


# Integer range of both layers' weights (and W8A8's activations): symmetric int8, [-127, 127].
_INT8_MAX = integer_range(8, symmetric=True)[1]

# Largest in_features whose int32 sums cannot overflow: |acc| <= in_features * 127**2 < 2**31.
_MAX_IN_FEATURES = torch.iinfo(torch.int32).max // _INT8_MAX**2  # 133,144

# Largest finite float32: the layer computes in float32, whatever the input's dtype.
_FLOAT32_MAX = torch.finfo(torch.float32).max

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
    The packed layout and the bounds are keyed on the versions of int8_weight, scales and bias,
    so an in-place edit of a buffer is seen at the next call. (2) Every temporary of forward
    lives in a scratch buffer of `self.context` (a W8A8Context), so a call allocates one new
    output-sized tensor, its output, as nn.Linear does. (3) When a layer receives the very
    tensor the previous layer of its context quantized, unchanged (same object, same version
    counter), its integers and scales are reused: query, key and value quantize their shared
    input once, when they share a context (replace_linear gives one to a whole model).

    Input: any float tensor of shape (..., in_features); the math runs in float32 and the output
    has the input's dtype. NaN or inf raise ValueError (int8 has neither), and so does an input
    so large that the output could overflow. Not thread-safe: the context's scratch buffers
    (never returned by forward) serve one call at a time.

    Buffers: int8_weight (out_features, in_features) int8; scales (out_features,) float32, the
    per-channel s_w as oneDNN reads it; bias (out_features,) float32 or None.

    Example (8 bits): x row [0.5, -1.27, 0.1] gets s_x = 0.01 and x_q = [50, -127, 10]; a weight
    row W_q = [127, 0, -127] with s_w = 0.02 gives acc = 6350 - 1270 = 5080 and
    y = 0.01 * (0.02 * 5080) = 1.016 (in float: 0.5 * 2.54 - 0.1 * 2.54 = 1.016).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        context: W8A8Context | None = None,
    ) -> None:
        super().__init__()
        self.in_features = _check_features(in_features, "in_features", _MAX_IN_FEATURES)
        self.out_features = _check_features(out_features, "out_features")
        self._macs_per_token = in_features * out_features
        check_bool(bias, "bias")
        with torch.inference_mode(False):  # buffers with version counters (see _WeightCache)
            weight = torch.zeros(out_features, in_features, dtype=torch.int8)
            self.register_buffer("int8_weight", weight)  # (out_features, in_features) int8
            self.register_buffer("scales", torch.ones(out_features))  # (out_features,) float32
            self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.kernel = select_int8_kernel()
        self.context = W8A8Context() if context is None else context
        self._cache = _WeightCache()

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

    @property
    def context(self) -> W8A8Context:
        """The W8A8Context (scratch buffers, last quantized input) this layer works in.

        Layers that share one reuse each other's quantization of a shared input; assign another
        layer's context to make two layers share (`key.context = query.context`).
        """
        return self._context

    @context.setter
    def context(self, context: W8A8Context) -> None:
        if not isinstance(context, W8A8Context):
            raise TypeError(
                "context must be a W8A8Context (e.g. W8A8Context() or another layer's "
                f".context), got {type(context).__name__}"
            )
        self._context = context

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, context: W8A8Context | None = None) -> "W8A8Linear":
        """Quantize an nn.Linear's weight (symmetric int8, per output channel) into a new layer.

        context: the W8A8Context to work in (None: a new one, for this layer alone).
        Example: a row [2.54, 0.0, -2.54] gets s_w = 0.02 and W_q = [127, 0, -127].
        """
        if _check_linear(linear).weight.device.type != "cpu":
            raise ValueError("linear must be on the CPU (W8A8Linear runs there); call .cpu()")
        bias = linear.bias is not None
        layer = cls(linear.in_features, linear.out_features, bias=bias, context=context)
        quantized = quantize_weight_per_channel(linear.weight.detach().float())
        layer.int8_weight.copy_(quantized.q)  # (out_features, in_features) int8
        layer.scales.copy_(quantized.params.scale.flatten())  # (out_features,)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._refresh()  # rebuild what a changed weight, scale or bias makes stale
        x_kernel, x_scale = self._quantize_once(_check_input(x, self.in_features))  # (tokens, 1)
        y = self._integer_product(x_kernel)  # (tokens, out) float32 = s_w * acc, the new output
        y = self._rescale_in_place(y, x_scale)  # s_x * y + b
        y = y.view(*x.shape[:-1], self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    # --- the three steps, every value checked, new tensors: for the lesson and the tests -----

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
        self._check_rows(rows)
        self._refresh()
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
        if self._encoding(x_q.shape[0]) == torch.uint8:
            x_q = (x_q.short() + self.kernel.zero_point).to(torch.uint8)  # oneDNN reads u8
        return self.integer_product(x_q)

    def rescale(self, y: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """y[t, o] = s_x[t] * y'[t, o] + b[o], from integer_matmul's y' = s_w * acc.

        Example: y' = [[101.6]] (= 0.02 * 5080), s_x = [[0.01]], no bias -> [[1.016]].
        Returns a new tensor; refuses a result that overflows float32.
        """
        y = check_float_tensor(check_tensor(y, "y"), "y", allow_empty=True)
        x_scale = check_float_tensor(check_tensor(x_scale, "x_scale"), "x_scale", allow_empty=True)
        out = self.rescale_in_place(y.detach().float().clone(), x_scale.detach().float())
        if not bool(torch.isfinite(out).all()):
            raise ValueError("x_scale * y overflows float32; the activations' scale is too large")
        return out

    # --- the three steps as forward runs them: kinds and shapes checked (O(1)), values not ---

    def quantize_into_scratch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 1 of forward: quantize_activations' s_x and x_q, in the kernel's encoding.

        x_kernel = x_q + 2**(bits - 1) as uint8 when this many tokens run oneDNN's packed kernel,
        x_q as int8 otherwise: what integer_product takes. x_kernel is a view of the context's
        scratch, overwritten by the next quantization of any layer sharing the context (clone it
        to keep it). NaN, inf and rows whose output could overflow are refused all the same
        (the absmax finds them for free). Also forgets the context's last input.
        Example (7 bits, oneDNN): rows [[0.5, -1.26, 0.1]] -> s_x [[0.02]], x_q [25, -63, 5],
        x_kernel [[89, 1, 69]] uint8. Returns (x_kernel (tokens, in_features), s_x (tokens, 1)).
        """
        check_tensor(rows, "rows")
        if not rows.is_floating_point():
            raise TypeError(f"rows must hold float activations, got {rows.dtype}; use .float()")
        self._check_rows(rows)
        self._refresh()
        limit = min(torch.finfo(rows.dtype).max, _FLOAT32_MAX)
        return self._quantize(rows.detach(), "rows", limit, self._encoding(rows.shape[0]))[:2]

    def integer_product(self, x_kernel: torch.Tensor) -> torch.Tensor:
        """Step 2 of forward: integer_matmul's s_w * acc, from quantize_into_scratch's x_kernel.

        x_kernel must have the dtype quantize_into_scratch gives for its token count (uint8 for
        oneDNN, int8 otherwise); its values are not checked: integers off this layer's grid
        (|x_q| > q_max) may saturate the adder of a CPU without VNNI (integer_matmul refuses
        them). Example: x_kernel [[50, -127, 10]] int8 (or [[178, 1, 138]] uint8 at 8 bits),
        W_q row [127, 0, -127], s_w = 0.02 -> [[101.6]]. Returns a new (tokens, out_features)
        float32 tensor: the layer's output to be.
        """
        check_tensor(x_kernel, "x_kernel")
        tokens = x_kernel.shape[0] if x_kernel.ndim == 2 else 0
        dtype = self._encoding(tokens)
        if x_kernel.ndim != 2 or x_kernel.shape[1] != self.in_features or x_kernel.dtype != dtype:
            raise ValueError(
                f"x_kernel must be {dtype} of shape (tokens, {self.in_features}) for this layer, "
                f"as quantize_into_scratch gives, got {x_kernel.dtype} {tuple(x_kernel.shape)}"
            )
        self._refresh()
        return self._integer_product(x_kernel.contiguous())

    def rescale_in_place(self, y: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """Step 3 of forward: y <- s_x * y + b, in place on integer_product's y; returns y.

        y float32 (tokens, out_features), x_scale float32 (tokens, 1); values are not checked
        (NaN in, NaN out: rescale refuses them). Example: y = [[101.6]], s_x = [[0.01]],
        b = [0.5] -> y becomes [[1.516]].
        """
        check_tensor(y, "y")
        check_tensor(x_scale, "x_scale")
        if y.dtype != torch.float32 or x_scale.dtype != torch.float32 or y.requires_grad:
            raise TypeError(
                f"y and x_scale must be float32 tensors that do not require grad (y is written "
                f"in place), got {y.dtype} and {x_scale.dtype}; use rescale for other inputs"
            )
        self._check_y_and_scale(y, x_scale)
        return self._rescale_in_place(y, x_scale)

    # --- the hot path, unchecked --------------------------------------------------------------

    def _check_rows(self, rows: torch.Tensor) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.in_features:
            raise ValueError(
                f"rows must have shape (tokens, {self.in_features}), got {tuple(rows.shape)}"
            )

    def _check_y_and_scale(self, y: torch.Tensor, x_scale: torch.Tensor) -> None:
        if y.ndim != 2 or y.shape[1] != self.out_features or x_scale.shape != (y.shape[0], 1):
            raise ValueError(
                f"y must have shape (tokens, {self.out_features}) and x_scale (tokens, 1), got "
                f"{tuple(y.shape)} and {tuple(x_scale.shape)}"
            )

    def _refresh(self) -> None:
        """Forget the cached layouts and bounds if a buffer changed since they were made."""
        buffers = self._buffers  # a dict lookup: nn.Module's self.scales costs about 1 us
        self._cache.refresh(buffers["int8_weight"], buffers["scales"], buffers["bias"])

    def _encoding(self, tokens: int) -> torch.dtype:
        """The integers' dtype for a call of `tokens` rows: uint8 (q + zero point) if it runs
        oneDNN's packed kernel (always where that is the only exact kernel, else from
        _ONEDNN_MIN_MACS multiply-adds on), int8 otherwise (torch._int_mm or float64 sums)."""
        kernel, macs = self.kernel, tokens * self._macs_per_token
        packed = kernel.onednn and (not kernel.int_mm or macs >= _ONEDNN_MIN_MACS)
        return torch.uint8 if packed else torch.int8

    def _quantize_once(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """_quantize, or the context's result for this very x, unchanged, from the previous layer
        (the bound on the output is this layer's, so it is checked again on a reused result)."""
        limit = min(torch.finfo(x.dtype).max, _FLOAT32_MAX)
        rows = x.detach().reshape(-1, self.in_features)  # (tokens, in_features)
        dtype = self._encoding(rows.shape[0])
        found = self._context._find(x, dtype, self.kernel.q_max)
        if found is None:  # _quantize checks the bound itself
            found = self._quantize(rows, "x", limit, dtype)
            self._context._remember(x, found)
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
        self._context._start_quantization()  # the scratch x_q is about to change
        q_max = self.kernel.q_max
        rows = rows.float()  # float32 math (bf16 could round 127 up to 128); no copy if float32
        ratio = self._context._buffer("ratio", rows.shape, torch.float32)  # (tokens, in)
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
        scale = abs_max.div_(q_max).clamp_(min=SCALE_FLOOR)  # (tokens, 1), in place
        torch.div(rows, scale, out=ratio).round_()  # round half to even, as torch.round
        if dtype == torch.uint8:  # u8 = q + zero point, in [1, 255] (8 bits) or [1, 127] (7)
            ratio.add_(self.kernel.zero_point)
        x_q = self._context._buffer(f"x_q_{dtype}", rows.shape, dtype).copy_(ratio)  # exact
        return x_q, scale, peak, q_max

    def _check_output_bound(self, peak: float, name: str, limit: float) -> None:
        """Refuse an input whose output could exceed `limit`: |y[t, o]| <= max|x| * gain + max|b|
        (see _WeightCache.gain)."""
        if peak * self._cache.gain() + self._cache.bias_max() > limit:
            raise ValueError(
                f"{name} is too large (max |{name}| = {peak:.3g}): the output could exceed "
                f"{limit:.3g}, the largest value of its dtype (float32 inside the layer); scale "
                "the input down"
            )

    def _integer_product(self, x_kernel: torch.Tensor) -> torch.Tensor:
        """s_w * acc on this call's kernel (see _WeightCache.product), a new float32 tensor."""
        return self._cache.product(x_kernel, self.kernel, self._context)

    def _rescale_in_place(self, y: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """s_x * y + b in place on y (s_w * acc is already bounded by the output: no overflow)."""
        if self.bias is None:
            return y.mul_(x_scale)
        return torch.addcmul(self.bias, y, x_scale, out=y)  # b + y * s_x, one pass

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, weights=int8 per channel, activations=int8 per token"
        )
