"""Number formats, the lowest layer: how a tensor or a file lays out its numbers, and what a
computation in a low-precision format costs (Lessons 1, 2 and 7). Builds on torch alone (and
the gguf package's reader for GGUF files). Import from the module itself, e.g.
``from tutorlib.formats.float_bits import float_bits``.
"""

__all__: list[str] = []
