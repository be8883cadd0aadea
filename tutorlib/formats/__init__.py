"""Number formats, the lowest layer: how a tensor lays out its numbers, and what a computation
in a low-precision format costs (Lessons 1 and 2). Builds on torch alone. Import from the
module itself, e.g.
``from tutorlib.formats.float_bits import float_bits``.
"""

__all__: list[str] = []
