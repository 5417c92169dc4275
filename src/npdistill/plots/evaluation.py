"""The figure of an ``evaluate`` run: accuracy against the budget."""
from __future__ import annotations

from typing import Protocol

import numpy as np
from matplotlib.figure import Figure

from ..typing import PathArg
from ._figure import figure, finish

MARKERS = "osD^vP*X"


class Measured(Protocol):
    """What the figure reads of an ``npdistill.Evaluation`` (which calls it from its
    ``plot``: the figures never import what they draw)."""
    eps: tuple[float, ...]
    norm: str
    attacks: tuple[str, ...]
    correct: np.ndarray

    @property
    def clean_accuracy(self) -> float: ...

    @property
    def attack_accuracy(self) -> np.ndarray: ...

    @property
    def robust_accuracy(self) -> np.ndarray: ...


def robust_accuracy(evaluation: Measured, path: PathArg | None = None,
                    title: str | None = None) -> Figure:
    """Accuracy (%) against ε: one curve per attack (the accuracy under it alone) and the
    worst case over them (black), the clean accuracy as a dotted line."""
    eps = list(evaluation.eps)
    fig, ax = figure((6.4, 4.2))
    ax.axhline(100 * evaluation.clean_accuracy, color="0.6", ls=":", lw=1,
               label=f"clean ({100 * evaluation.clean_accuracy:.1f}%)")
    for a, label in enumerate(evaluation.attacks):    # markers shrinking: equal points nest
        ax.plot(eps, 100 * evaluation.attack_accuracy[:, a], marker=MARKERS[a % len(MARKERS)],
                ms=max(11 - 1.5 * a, 3), lw=1.2, color=f"C{a}", label=label)
    ax.plot(eps, 100 * evaluation.robust_accuracy, "k-", lw=2.4, marker="o", ms=4,
            label="worst case (no attack breaks it)", zorder=5)
    norm = "L∞" if evaluation.norm == "inf" else "L2"
    ax.set_xlabel(f"ε ({norm} budget)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(eps)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or f"Accuracy under attack on {len(evaluation.correct)} images, "
                          f"against the {norm} budget", fontsize=10)
    return finish(fig, path)
