"""The one way tutorlib makes a figure.

A Figure of a given size at 100 dpi with matplotlib's constrained layout, made without pyplot:
it is not registered in pyplot's list of open figures, so nothing has to close it, and a
notebook shows it when it is the value of a cell.
"""

from matplotlib.figure import Figure

__all__ = ["new_figure"]


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A width x height inch Figure at 100 dpi, laid out by matplotlib's constrained engine.

    constrained=False leaves the layout to the caller (fixed margins are much faster to draw
    for a grid of many panels). Example: fig = new_figure(8, 4); ax = fig.subplots().
    """
    return Figure(figsize=(width, height), dpi=100, layout="constrained" if constrained else None)
