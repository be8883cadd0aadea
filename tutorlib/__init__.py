"""tutorlib: the companion library of the course "Quantization: from bits to models".

One module per idea a lesson teaches; import from the module itself, e.g.
``from tutorlib.quantization import linear_quantize``:

- ``dtypes``        Lesson 1: integer and floating-point tensor types, bit by bit.
- ``downcast``      Lesson 2: the error of a dot product computed in low precision.
- ``models``        Lessons 3 to 5: the SimpleCNN, published architectures, MiniLM.
- ``memory``        Lessons 3 and 4: byte-exact model sizes.
- ``precision``     Lesson 3: a model in FP32, BF16 and FP16, compared.
- ``quantization``  Lesson 4: scale, zero point, quantize and dequantize.
- ``layers``        Lessons 4 and 5: W8A16 and W8A8 linear layers.
- ``plotting``      every lesson's figures.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
