"""The figures of the defenses compared (``reproduce --defenses``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from ..typing import PathArg
from ._figure import figure, finish


def defense_accuracy_vs_eps(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Accuracy on the true labels under FGSM and TGSM against eps, per defense."""
    eps = results["settings"]["epsilons"]
    fig, axes = figure((10, 4), 1, 2, sharey=True)
    for ax, attack in zip(axes, ("fgsm", "tgsm")):
        for i, (name, row) in enumerate(results["curves"].items()):
            ax.plot(eps, [100 * a for a in row[attack]], "o-", color=f"C{i}",
                    label=results["labels"][name])
        ax.set_xlabel("eps (L-inf)")
        ax.set_title(f"{attack.upper()}" + (" (random targets)" if attack == "tgsm" else ""))
        ax.grid(alpha=0.3)
        ax.set_ylim(-3, 103)
    axes[0].set_ylabel("accuracy on the true labels (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy of each defense under white-box FGSM and TGSM, against eps", fontsize=11)
    return finish(fig, path)


def defense_transfer(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Accuracy of each net on the FGSM examples made on each other net."""
    names = list(results["transfer"])
    short = {"undefended": "undefended", "distilled": "distilled\n(T = 50)",
             "adversarial": "adversarially\ntrained", "gradient_regularized": "gradient\nregularized"}
    labels = [short.get(n, results["labels"][n]) for n in names]
    grid = np.array([[100 * results["transfer"][s][t] for t in names] for s in names])
    fig, ax = figure((7, 5.5))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=10,
                    color="white" if grid[i, j] < 55 else "black")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("FGSM examples made on")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    ax.set_title(f"Transfer of FGSM eps = {results['settings']['transfer_eps']} examples")
    return finish(fig, path)


def defense_detection(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """The share of clean and adversarial images the mutation-testing detector flags."""
    d = results["detection"]
    attacks = [a for a in ("fgsm", "jsma", "cw") if "auc" in d[a]]
    names = ["clean"] + attacks
    rates = [d["clean"]["false_positive_rate"]] + [d[a]["detection_rate"] for a in attacks]
    fig, ax = figure((6.5, 4))
    bars = ax.bar(range(len(names)), [100 * r for r in rates],
                  color=["C2"] + ["C3"] * len(attacks))
    for bar, name in zip(bars, names):
        note = ("false positives" if name == "clean" else
                f"AUC {d[name]['auc']:.3f}\n(paper {results['paper_detection_auc'][name]})")
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 2, note, ha="center",
                fontsize=8)
    ax.set_xticks(range(len(names)))
    counts = [d["clean"]["images"]] + [d[a]["successful"] for a in attacks]
    ax.set_xticklabels([f"{label}\n(n = {n})" for label, n in zip(
        ["clean", *[{"fgsm": "FGSM", "jsma": "JSMA", "cw": "CW L2"}[a] for a in attacks]], counts)])
    ax.set_ylabel("flagged as adversarial (%)")
    ax.set_ylim(0, 119)
    ax.set_title(f"Mutation-testing detection ({d['operator']}, rate {d['rate']}), undefended net",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return finish(fig, path)


def defense_figures(results: Mapping[str, Any], out_dir: PathArg) -> dict[str, Path]:
    """The defenses' three figures saved in ``out_dir``: {name: path}."""
    out_dir = Path(out_dir)
    paths = {"accuracy": out_dir / "defenses_accuracy_vs_eps.png",
             "transfer": out_dir / "defenses_transfer.png",
             "detection": out_dir / "defenses_detection.png"}
    defense_accuracy_vs_eps(results, paths["accuracy"])
    defense_transfer(results, paths["transfer"])
    defense_detection(results, paths["detection"])
    return paths
