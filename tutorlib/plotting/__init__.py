"""Every lesson's figures: one module per lesson, each imported the first time it is used.

``from tutorlib.plotting import plot_spacing`` works for every figure; the modules are
``lesson1`` to ``lessonN`` (and one figure helper, ``_figure``). A figure's module is imported
when the figure is first asked for, so Lesson 1's figures do not load Lesson 5's benchmark.
Each function returns a matplotlib Figure with labelled axes and a title that states the
finding; nothing here computes a result that a lesson's prose relies on.
"""

import importlib

# figure -> the lesson module that draws it
_MODULE_OF = {
    "plot_bit_layouts": "lesson1",
    "plot_spacing": "lesson1",
    "plot_error_vs_length": "lesson2",
    "plot_running_sum": "lesson2",
    "plot_embedding_cosines": "lesson3",
    "plot_logit_differences": "lesson3",
    "plot_clipping_sweep": "lesson4",
    "plot_sqnr_vs_bits": "lesson4",
    "plot_weight_histogram_with_grid": "lesson4",
    "plot_accuracy_vs_speed": "lesson5",
    "plot_activation_sqnr": "lesson5",
    "plot_int8_speedups": "lesson5",
    "plot_time_breakdown": "lesson5",
    "plot_layer_errors": "lesson6",
    "plot_nibble_packing": "lesson6",
    "plot_size_accuracy_frontier": "lesson6",
    "plot_decode_speeds": "lesson7",
    "plot_kl_vs_bits": "lesson7",
}

__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'tutorlib.plotting' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tutorlib.plotting.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
