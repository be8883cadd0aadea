"""Models: real pretrained networks shipped on PyPI, loaded from files checked by SHA-256, and
the harness that scores a language model (perplexity, KL divergence to a reference, agreement).
Import from the module itself, e.g. ``from tutorlib.models.smollm2 import load_smollm2``.
"""

__all__ = []
