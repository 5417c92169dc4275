"""What every figure here shares: built as a ``matplotlib.figure.Figure`` (never through
pyplot, so no backend is chosen and no global state is touched), laid out, saved where a
path is given, returned."""
from matplotlib.figure import Figure

from .._files import replacing

DPI = 120


def figure(figsize, rows=1, cols=1, layout=None, **subplots):
    """(a new Figure, its axes: one, or an array of rows x cols as ``Figure.subplots``).
    ``layout="constrained"`` for grids of images, whose titles tight_layout cannot place."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(rows, cols, **subplots)


def finish(fig, path=None, layout=True):
    """``fig`` laid out (by tight_layout, unless it has a layout engine or ``layout`` is
    False: the caller laid it out) and, where ``path`` is given, written there atomically
    (its format from the suffix: .png, .svg, .pdf)."""
    if layout and fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is not None:
        with replacing(path, "figure") as tmp:
            fig.savefig(tmp, dpi=DPI)
    return fig


def model_label(name):
    """A reproduction's model name as figures show it: "baseline" -> "no distillation",
    a temperature "20" -> "T = 20"."""
    return "no distillation" if name == "baseline" else f"T = {name}"


def model_ticks(ax, names, fontsize=8):
    """The models as x tick labels, slanted and anchored at their right end so that long
    neighbours ("no distillation", "T = 1") do not run into each other."""
    ax.set_xticks(range(len(names)), [model_label(n) for n in names], rotation=30, ha="right",
                  rotation_mode="anchor", fontsize=fontsize)


def log_t_axis(ax, temps):
    """A log-scaled temperature axis with a tick at each of ``temps`` (strings)."""
    ax.set_xscale("log")
    ax.set_xticks([float(t) for t in temps])
    ax.set_xticklabels(temps)
    ax.minorticks_off()
