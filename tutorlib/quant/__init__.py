"""Quantization, built on tutorlib.formats: real numbers to k-bit integers and back, the error
that leaves, and the methods that choose the integers (round-to-nearest, GPTQ) (Lessons 4 and
6). Import from the module itself, e.g. ``from tutorlib.quant.params import QuantParams``.
"""

__all__: list[str] = []
