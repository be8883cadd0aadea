"""tutorlib: the companion library of the course "Quantization: from bits to models".

A layered package: each subpackage uses only the ones below it in this picture, and an import
test (tests/test_layering.py) keeps it so. Import from the module itself, e.g.
``from tutorlib.quant.affine import linear_quantize``.

    plotting   exercises        one module per lesson, imported lazily
        \\        /
          perf                  timing, the machine, profiling, the int8 benchmark, baselines
           |
         models                 the digits CNN, MobileViT, MiniLM, SmolLM2, search, scores, sizes
           |
         layers                 W8A16, W8A8 (and its integer kernel), W4A16, replace, save and load
           |
         quant                  scale and zero point, quantize, error, clipping, packing, RTN, GPTQ
           |
        formats                 dtypes bit by bit, dot-product error, GGUF's block formats
           |
     _checks, _loading          argument checks and shipped files (private)

- ``formats``  Lessons 1, 2 and 7: how numbers are stored (``dtypes``, ``float_bits``), what a
  low-precision dot product costs (``error_bounds``, ``dot_products``, ``error_growth``), and
  GGUF's Q4_1 and Q8_0 blocks (``gguf``).
- ``quant``    Lessons 4 and 6: ``params`` (QuantParams, get_scale_and_zero_point),
  ``affine`` (linear_quantize, linear_dequantize), ``offset`` (the original notes' form),
  ``error``, ``clipping``, ``outliers``, ``packing``, ``rtn``, ``gptq``.
- ``layers``   Lessons 4 to 6: ``w8a16``, ``w8a8`` with ``w8a8_context`` and ``int8_kernel``
  (which integer kernel this CPU runs exactly), ``w4a16``, ``replace``, ``calibrated`` (a
  model's weights quantized in calling order), ``serialization``.
- ``models``   Lessons 3 to 7: ``digits``, ``architectures``, ``minilm``, ``search_task``,
  ``ranking``, ``precision``, ``size`` (every model size), ``integrity`` (SHA-256 pins),
  ``calibration``, ``smollm2``, ``corpus``, and the language-model scores.
- ``perf``     Lessons 3 to 7: ``timing``, ``machine``, ``allocator``, ``hooks``, ``amdahl``,
  ``activations``, ``layer_steps``, ``variants``, ``benchmark``, ``targets``, ``baselines``.
- ``plotting``, ``exercises``: every lesson's figures and checked exercises.
"""

__version__ = "0.3.0"
__all__ = ["__version__"]
