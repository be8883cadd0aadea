"""Run in a subprocess under one ONEDNN_MAX_CPU_ISA by tests/test_int8_kernel_isa.py.

Prints one JSON object: the kernel this process chose, whether every W8A8 layer's output is
the exact computation from its integers and scales (on adversarial inputs and on MiniLM's real
activations, both sides of the packed-kernel threshold), and every oneDNN implementation the
course's MiniLM runs at batch 1 and 32 (FP32, BF16 and tutorlib W8A8).
"""

import copy
import json
import sys

import torch
from torch import nn

from tutorlib.layers.int8_kernel import onednn_implementations, select_int8_kernel, trial_runs
from tutorlib.layers.replace import replace_linear
from tutorlib.layers.w8a8 import W8A8Linear
from tutorlib.models.minilm import load_minilm
from tutorlib.models.search_task import load_search_task, search_sentences


def exact_error(layer: W8A8Linear, x: torch.Tensor) -> float:
    """How far forward(x) is from the same math done exactly from the layer's own integers, in
    float32 rounding units; 0 for the integer step itself, or inf where its sums are wrong.

    x_q, s_x from quantize_activations; acc = x_q @ W_q^T in float64 (exact: |acc| < 2**31).
    The integer step must give float32(acc) * s_w bit for bit (it is one rounding of an exact
    sum); forward must lie within 4 float32 roundings of s_x * s_w * acc + b (float64), in
    units of eps * (|s_x s_w acc| + |b|). A saturated int16 pair is off by thousands of units.
    """
    rows = x.reshape(-1, layer.in_features)
    x_q, s_x = layer.quantize_activations(rows)
    acc = x_q.double() @ layer.int8_weight.double().T  # (tokens, out), exact
    if not torch.equal(layer.integer_matmul(x_q), acc.float() * layer.scales):
        return float("inf")
    bias = torch.zeros(layer.out_features) if layer.bias is None else layer.bias
    exact = s_x.double() * layer.scales.double() * acc + bias.double()  # float64
    size = (s_x.double() * layer.scales.double() * acc).abs() + bias.double().abs()
    got = layer(x).reshape(-1, layer.out_features).double()
    units = (got - exact).abs() / (torch.finfo(torch.float32).eps * size.clamp(min=1e-30))
    return units.max().item()


def adversarial_inputs(in_features: int) -> list[torch.Tensor]:
    """Rows that drive every u8 x s8 pair to its largest: constant rows (all at q_max after
    scaling), alternating signs, one huge outlier per row, and few tokens and many."""
    torch.manual_seed(0)
    constant = torch.ones(64, in_features)
    constant[1::2] = -1.0
    alternating = torch.ones(3, in_features)
    alternating[:, 1::2] = -1.0
    outlier = torch.randn(48, in_features)
    outlier[:, 0] = 1e3
    return [
        constant,
        alternating,
        outlier,
        torch.randn(1, in_features),
        torch.randn(700, in_features),
    ]


def layer_inputs(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The input each nn.Linear of encoder layer 0 receives on this batch (forward hooks)."""
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen.setdefault(name, args[0].detach().clone())

        return hook

    hooks = [
        module.register_forward_hook(keep(name))
        for name, module in model.encoder.layer[0].named_modules()
        if isinstance(module, nn.Linear)
    ]
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    return seen


def main() -> None:
    kernel = select_int8_kernel()
    model, tokenizer = load_minilm()
    sentences = search_sentences(load_search_task())
    batch32 = tokenizer(sentences[:32], padding=True, return_tensors="pt")
    batch1 = tokenizer(sentences[:1], return_tensors="pt")
    errors: dict[str, float] = {}
    for tokens_name, batch in (("batch 32", batch32), ("batch 1", batch1)):
        for name, x in layer_inputs(model, batch).items():
            linear = dict(model.encoder.layer[0].named_modules())[name]
            layer = W8A8Linear.from_linear(linear)
            errors[f"MiniLM layer 0 {name}, {tokens_name}"] = exact_error(layer, x)
    torch.manual_seed(1)
    for shape in ((384, 1536), (1536, 384), (384, 384)):
        layer = W8A8Linear.from_linear(nn.Linear(*shape))
        layer.int8_weight[0::2] = 127  # weights at +-127: the largest pairs
        layer.int8_weight[1::2] = -127
        for i, x in enumerate(adversarial_inputs(shape[0])):
            if x.shape[-1] == shape[0]:
                errors[f"adversarial {shape} #{i} ({x.shape[0]} tokens)"] = exact_error(layer, x)
    w8a8 = replace_linear(copy.deepcopy(model), W8A8Linear).eval()
    bf16 = copy.deepcopy(model).to(torch.bfloat16).eval()
    implementations: dict[str, list[str]] = {}
    for variant, m in (("FP32", model), ("BF16", bf16), ("tutorlib W8A8", w8a8)):
        for tokens_name, batch in (("batch 32", batch32), ("batch 1", batch1)):
            with torch.no_grad():
                _, impls = onednn_implementations(lambda m=m, b=batch: m(**b))
            implementations[f"{variant}, {tokens_name}"] = sorted(set(impls))
    print(json.dumps({
        "kernel": {
            "activation_bits": kernel.activation_bits, "onednn": kernel.onednn,
            "int_mm": kernel.int_mm, "onednn_impl": kernel.onednn_impl,
        },
        "trials": {t.name: [t.exact, t.implementation] for t in trial_runs()},
        "errors": errors,
        "implementations": implementations,
    }))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
