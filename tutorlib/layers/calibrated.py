"""Lesson 6: every linear weight of a model quantized in calling order, each calibrated on
the inputs it sees in the model as quantized so far.

fake_quantize_linear_weights replaces each weight by its dequantized value (fake quantization:
the model keeps float weights and is no smaller) and returns the integers and grids, which
tutorlib.layers.w4a16.to_w4_layers turns into real 4-bit layers.
Left out on purpose: quantizing activations and embeddings.
"""

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib._checks import check_bits, check_group_size, iter_linears
from tutorlib.quant.affine import QuantizedTensor
from tutorlib.quant.gptq import (
    calibration_rows,
    check_token_mask,
    gptq_quantize_shared,
    output_error,
)
from tutorlib.quant.rtn import GPTQ_BITS, _check_weight, rtn_quantize

__all__ = ["LayerQuantization", "capture_next_inputs", "fake_quantize_linear_weights"]


@dataclass(frozen=True)
class LayerQuantization:
    """One Linear of a model, quantized: its integers and grid, and what it did to the output.

    relative_error = ||X (W - W_hat)^T|| / ||X W^T|| on the calibration inputs X the layer saw
    (NaN when no calibration ran), e.g. 0.05 for a 5% change of the layer's output.
    """

    quantized: QuantizedTensor
    relative_error: float


class _StopForward(Exception):
    """Raised by a hook to end a calibration forward pass once the inputs it needs are in."""


def capture_next_inputs(
    pending: dict[str, nn.Linear],
    run: Callable[[], object],
    token_mask: torch.Tensor | None = None,
) -> tuple[list[str], torch.Tensor]:
    """The next Linears a forward pass calls, and the input X they read, (samples, in_features).

    `run()` drives the model; pre-hooks on the Linears of `pending` ({name: Linear}) record the
    input of the first one called and the names of those called right after it on the very
    same tensor (a block's query, key and value), then stop the pass: the layers after them
    cannot change X. X is flattened to one row per position; with a token_mask (batch, seq),
    only the real tokens' rows (`quant.gptq.calibration_rows`).
    Example: on MiniLM, the first call gives (["encoder.layer.0.attention.self.query", "...key",
    "...value"], X of shape (960, 384)) for a padded (48, 20) batch; with its attention mask,
    X is (730, 384). The Linears are not changed; `pending` is not changed either.
    """
    if not isinstance(pending, dict) or not pending:
        raise TypeError("pending must be a non-empty dict {name: nn.Linear} of Linears to capture")
    if not callable(run):
        raise TypeError(f"run must be a function of no arguments, got {type(run).__name__}")
    if token_mask is not None:
        token_mask = check_token_mask(token_mask)
    names: list[str] = []
    captured: list[torch.Tensor] = []

    def hook(name: str, module: nn.Module, args: tuple) -> None:
        if captured and args[0] is not captured[0]:
            raise _StopForward  # a different input: the group is complete
        if not captured:
            captured.append(args[0])
        names.append(name)

    handles = [
        linear.register_forward_pre_hook(functools.partial(hook, name))
        for name, linear in pending.items()
    ]
    try:
        with torch.inference_mode():
            run()
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if not captured:
        raise ValueError("run() never called the Linears left to quantize: it must run the model")
    x = captured[0].detach().float()
    if token_mask is None:
        return names, calibration_rows(x, None)  # (samples, in)
    per_position = x.ndim == 3 and tuple(x.shape[:2]) == tuple(token_mask.shape)
    per_sequence = x.ndim == 2 and x.shape[0] == token_mask.shape[0]
    if not (per_position or per_sequence):
        raise ValueError(
            f"token_mask has shape {tuple(token_mask.shape)}, but {names[0]} reads inputs of "
            f"shape {tuple(x.shape)}, neither (batch, seq, features) nor (batch, features): "
            "skip that layer, or pass no mask"
        )
    return names, calibration_rows(x, token_mask)  # (real tokens, in)


def fake_quantize_linear_weights(
    model: nn.Module,
    method: str = "gptq",
    bits: int = 4,
    group_size: int | None = 128,
    run: Callable[[], object] | None = None,
    damp: float = 0.01,
    skip: Iterable[str] = (),
    token_mask: torch.Tensor | None = None,
) -> dict[str, LayerQuantization]:
    """Quantize every nn.Linear's weight, in the order the model calls them, calibrating each on
    the inputs it sees in the model as quantized so far.

    Repeat until every Linear is done: `run()` (a forward pass on calibration data) drives the
    model, and forward hooks record the input X of the first Linear not yet quantized (and of
    the ones called right after it on the same tensor: a block's query, key and value), then
    stop the pass there. Each of those weights is quantized (method "rtn", or "gptq" on X, one
    Hessian for all of them: `gptq_quantize_shared`), and replaced in place by its dequantized
    value W_hat. So layer i is calibrated on inputs from
    a model whose layers before i are already quantized, as in the paper. `run` is needed for
    "gptq"; for "rtn" it is optional and only measures each layer's error.
    Linears named in `skip` (attribute or dotted name) stay as they are. `token_mask` (batch, seq),
    a tokenizer's attention_mask for the batch `run` feeds, keeps only the real tokens' rows of
    each X (`quant.gptq.token_rows`): padding is not an input the layers will see, and would bias H.
    Example: MiniLM's 37 Linears (in 25 passes: query, key and value share one) at 4 bits,
    groups of 128, calibrated on 48 sentences (730 real tokens of a padded (48, 20) batch).
    Returns {dotted name: LayerQuantization}; the model now holds the dequantized weights.
    All or nothing: every weight is checked first, and if any layer is refused on the way (a
    Linear the calibration never reaches, a grid float16 cannot store), every weight is put
    back as it was before the error is raised.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in ("rtn", "gptq"):
        raise ValueError(f"method must be 'rtn' or 'gptq', got {method!r}")
    check_bits(bits, GPTQ_BITS)
    if run is not None and not callable(run):
        raise TypeError(f"run must be a function of no arguments, got {type(run).__name__}")
    if method == "gptq" and run is None:
        raise ValueError("GPTQ needs calibration inputs: pass run, e.g. lambda: model(**batch)")
    if token_mask is not None:
        if run is None:
            raise ValueError("token_mask marks the tokens of run's batch: pass run too")
        check_token_mask(token_mask)
    targets = iter_linears(model, skip)  # each Linear once, in definition order
    if not targets:
        raise ValueError("model has no nn.Linear to quantize (or all of them are in skip)")
    for name, linear in targets:  # every weight and group size checked before anything changes
        check_group_size(group_size, linear.in_features)
        _check_weight(linear.weight, f"the weight of {name}")
    originals = {name: linear.weight.detach().clone() for name, linear in targets}
    try:
        return _quantize_in_calling_order(
            dict(targets), run, method, bits, group_size, damp, token_mask
        )
    except BaseException:  # all or nothing: a refusal leaves every weight as it was
        with torch.no_grad():
            for name, linear in targets:
                linear.weight.copy_(originals[name])
        raise


def _quantize_in_calling_order(
    pending: dict[str, nn.Linear], run, method: str, bits: int, group_size, damp: float, token_mask
) -> dict[str, LayerQuantization]:
    """The loop of fake_quantize_linear_weights: capture the next Linears' inputs, quantize."""
    results = {}
    while pending:
        if run is None:
            names, x = [next(iter(pending))], None
        else:  # the next Linears the model calls, and their inputs from the model as it is now
            names, x = capture_next_inputs(pending, run, token_mask)
        linears = [pending.pop(name) for name in names]
        weights = [linear.weight.detach() for linear in linears]  # each (out, in)
        if method == "gptq":  # one Hessian for the Linears that read x (query, key, value)
            quantized = gptq_quantize_shared(weights, x, bits, group_size, damp)
        else:
            quantized = [rtn_quantize(weight, bits, group_size) for weight in weights]
        for name, linear, weight_q in zip(names, linears, quantized, strict=True):
            results[name] = _put_weight(linear, weight_q, x)
    return results


def _put_weight(
    linear: nn.Linear, quantized: QuantizedTensor, x: torch.Tensor | None
) -> LayerQuantization:
    """Put W_hat in the Linear's place and measure the relative output error on x (if any)."""
    weight = linear.weight.detach()  # (out, in)
    weight_hat = quantized.dequantize()  # (out, in) float32
    relative = float("nan")
    if x is not None:
        reference = torch.linalg.norm(x.double() @ weight.double().T).item()
        relative = output_error(weight, weight_hat, x) / max(reference, 1e-300)
    with torch.no_grad():
        linear.weight.copy_(weight_hat)
    return LayerQuantization(quantized, relative)
