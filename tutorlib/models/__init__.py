"""Models and data, built on tutorlib.layers: the digits CNN, published architectures built
offline, MiniLM loaded from files pinned by SHA-256, the search task, the scores that compare a
quantized model's embeddings and rankings with its float one's, and model sizes (Lessons 3 to
6). Import from the module itself, e.g. ``from tutorlib.models.minilm import load_minilm``.
"""

__all__: list[str] = []
