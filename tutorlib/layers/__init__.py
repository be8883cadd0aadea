"""Quantized linear layers, built on tutorlib.quant: W8A16, W8A8 (with the integer kernel this
CPU runs exactly), W4A16, the function that swaps them into a model, and saving and loading
(Lessons 4 to 6). Import from the module itself, e.g.
``from tutorlib.layers.w8a8 import W8A8Linear``.
"""

__all__: list[str] = []
