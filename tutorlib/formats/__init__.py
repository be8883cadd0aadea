"""Number formats: how a file or a tensor lays out its numbers, bit by bit and byte by byte
(the lowest layer of tutorlib; it builds on torch and the file formats' own readers only).
Import from the module itself, e.g. ``from tutorlib.formats.gguf import dequantize_gguf``.
"""

__all__ = []
