"""Models and data, built on tutorlib.layers: the digits CNN, published architectures built
offline, MiniLM and SmolLM2 loaded from files pinned by SHA-256, the search task and the text
corpus, the scores that compare a quantized model with its float one, and model sizes (Lessons 3
to 7). Import from the module itself, e.g. ``from tutorlib.models.minilm import load_minilm``.
"""

__all__: list[str] = []
