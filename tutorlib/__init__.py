"""tutorlib: the companion library of the course "Quantization: from bits to models".

One module per idea a lesson teaches; import from the module itself, e.g.
``from tutorlib.quantization import linear_quantize``:

- ``dtypes``         Lesson 1: integer and floating-point tensor types, bit by bit.
- ``downcast``       Lesson 2: the error of a dot product computed in low precision.
- ``precision``      Lesson 3: a model cast to FP32, BF16 and FP16, compared with FP32.
- ``memory``         Lessons 3 and 4: byte-exact model sizes (tied and packed storage once).
- ``digits``         Lesson 3: scikit-learn's digits, the SimpleCNN and its shipped weights.
- ``architectures``  Lesson 3: MobileViT-small and flan-t5-small built from their configs.
- ``search``         Lessons 3 to 6: MiniLM, sentence embeddings, ranking, agreement with FP32.
- ``integrity``      Lessons 3 and 6: files checked against SHA-256 digests pinned in code.
- ``quantization``   Lesson 4: scale and zero point (one QuantParams), quantize, dequantize.
- ``layers``         Lessons 4 and 5: the W8A16 and W8A8 linear layers, and replace_linear.
- ``references``     Lessons 4 and 5: optimum-quanto's and torch.ao's recipes ("theirs").
- ``timing``         Lessons 3 to 6: interleaved timing on a shared CPU, matmul peaks.
- ``machine``        Lesson 5: the CPU a speed was measured on, read from the machine.
- ``allocator``      Lesson 5: glibc's setting that keeps freed memory for reuse.
- ``profiling``      Lesson 5: time inside linear layers, Amdahl's law, activation statistics.
- ``benchmark``      Lesson 5: the int8 inference benchmark, its table and its targets.
- ``gptq``           Lesson 6: 4-bit weights by round-to-nearest and by GPTQ, layer and model.
- ``w4_layers``      Lesson 6: the 4-bit linear layer (two integers per byte, per-group grids).
- ``serialization``  Lesson 6: a quantized model saved to safetensors and loaded bit-exact.
- ``plotting``       every lesson's figures, one module per lesson (``plotting.lesson1`` ...).
- ``exercises``      every lesson's exercises, checked on hidden cases (``check``).

Private helpers: ``_checks`` (argument checks shared by every module, dtype names) and
``_loading`` (files shipped with tutorlib, transformers kept quiet while loading).
"""

__version__ = "0.3.0"
__all__ = ["__version__"]
