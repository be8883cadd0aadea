"""Every lesson's figures: one module per lesson, re-exported here.

``from tutorlib.plotting import plot_spacing`` works for every figure; the modules are
``lesson1`` to ``lesson6`` (and one figure helper, ``_figure``). Each function returns a
matplotlib Figure with labelled axes and a title that states the finding; nothing here computes
a result that a lesson's prose relies on.
"""

from tutorlib.plotting.lesson1 import plot_bit_layouts, plot_spacing
from tutorlib.plotting.lesson2 import plot_error_vs_length, plot_running_sum
from tutorlib.plotting.lesson3 import plot_embedding_cosines, plot_logit_differences
from tutorlib.plotting.lesson4 import (
    plot_clipping_sweep,
    plot_sqnr_vs_bits,
    plot_weight_histogram_with_grid,
)
from tutorlib.plotting.lesson5 import (
    plot_accuracy_vs_speed,
    plot_activation_sqnr,
    plot_int8_speedups,
    plot_time_breakdown,
)
from tutorlib.plotting.lesson6 import (
    plot_layer_errors,
    plot_nibble_packing,
    plot_size_accuracy_frontier,
)

__all__ = [
    "plot_bit_layouts",
    "plot_spacing",
    "plot_error_vs_length",
    "plot_running_sum",
    "plot_logit_differences",
    "plot_embedding_cosines",
    "plot_weight_histogram_with_grid",
    "plot_sqnr_vs_bits",
    "plot_clipping_sweep",
    "plot_int8_speedups",
    "plot_time_breakdown",
    "plot_accuracy_vs_speed",
    "plot_activation_sqnr",
    "plot_layer_errors",
    "plot_size_accuracy_frontier",
    "plot_nibble_packing",
]
