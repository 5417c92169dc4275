"""The figures of the distillation reproduction (``reproduce``): each built from its
results dict, returned as a Figure and, where a path is given, saved."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from ..metrics import AMPLITUDE_BINS
from ..typing import PathArg
from ._figure import figure, finish, log_t_axis, model_label
from .attacks import image


def _temperatures(results):
    """The distilled models' keys ("1", "20" ...), in order of temperature."""
    return sorted((k for k in results["models"] if k != "baseline"), key=float)


def success_vs_temperature(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """JSMA and FGSM success on each deployed net against its distillation temperature."""
    rows, paper = results["models"], results["paper"]
    temps = _temperatures(results)
    fig, ax = figure((7, 4.2))
    series = [("jsma", "JSMA", "C0"), ("fgsm", f"FGSM eps={results['settings']['eps']:.3g}", "C1")]
    for key, label, color in series:
        if key not in rows["baseline"]:
            continue
        ax.plot([float(t) for t in temps], [100 * rows[t][key]["success"] for t in temps], "o-",
                color=color,
                label=f"{label}, measured")
        ax.axhline(100 * rows["baseline"][key]["success"], color=color, ls=":", lw=1,
                   label=f"{label}, no distillation")
    published = [(float(t), v) for t, v in paper["jsma_success"].items() if t in temps]
    if published:
        ax.plot([t for t, _ in published], [100 * v for _, v in published], "s--",
                color="C0", alpha=0.5, mfc="none", label="JSMA, Papernot et al. 2016")
    log_t_axis(ax, temps)
    ax.set_xlabel("distillation temperature T (deployed at T = 1)")
    ax.set_ylabel("attack success (%)")
    ax.set_ylim(-3, 103)
    ax.set_title("JSMA and FGSM success against the distillation temperature")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


def accuracy_vs_temperature(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Test accuracy of each deployed net against its distillation temperature."""
    rows, paper = results["models"], results["paper"]
    temps = _temperatures(results)
    fig, ax = figure((7, 4))
    ax.plot([float(t) for t in temps], [100 * rows[t]["accuracy"] for t in temps], "o-",
            label="distilled, measured")
    ax.axhline(100 * rows["baseline"]["accuracy"], color="k", ls=":",
               label="no distillation, measured")
    ax.axhline(100 * paper["baseline_accuracy"], color="gray", ls="--", lw=1,
               label=f"no distillation, paper ({paper['train_images']:,} training images)")
    log_t_axis(ax, temps)
    ax.set_xlabel("distillation temperature T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy against T ({results['settings']['train_images']:,} training "
                 f"images, "
                 f"{results['settings']['epochs']} epochs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish(fig, path)


def gradient_amplitudes(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Per net, the share of test images in each bin of adversarial-gradient amplitude."""
    rows = results["models"]
    names = ["baseline"] + _temperatures(results)
    table = np.array([rows[n]["gradient_amplitude_histogram"] for n in names]) * 100
    edges = AMPLITUDE_BINS
    labels = ["≥ 1" if np.isinf(hi) else f"[{lo:.0e},\n{hi:.0e})" if lo else f"[0,\n{hi:.0e})"
              for lo, hi in zip(edges[:-1], edges[1:])]
    fig, ax = figure((10, 0.45 * len(names) + 2))
    image = ax.imshow(table, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            if table[i, j] > 0:
                ax.text(j, i, f"{table[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="w" if table[i, j] < 60 else "k")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([model_label(n) for n in names])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("mean |dF_c/dX| per sample (computed in float64)")
    ax.set_title("Adversarial-gradient amplitude: % of samples per bin (Papernot et al., figure 8)")
    fig.colorbar(image, ax=ax, label="% of samples")
    return finish(fig, path)


def _shown(examples, names, column):
    """Which of the stacked examples of ``column`` to show on every row: the first
    attack that succeeded on the undistilled net (else on any net), so that the
    grid contrasts a broken baseline with the distilled nets on the same digit."""
    for first in (["baseline"] if "baseline" in names else []) + names:
        if column in examples[first] and any(examples[first][column][3]):
            return list(examples[first][column][3]).index(True)
    return 0


def adversarial_examples(examples: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Rows: models; columns: clean | JSMA | FGSM | CW L2 (where run). Each entry of
    ``examples[model][attack]`` is (clean, adversarial, targets or None, successes)
    for a stack of attacks; every row shows the same attack of the stack."""
    names = list(examples)
    columns = [c for c in ("jsma", "fgsm", "cw_l2") if any(c in examples[n] for n in names)]
    shown = {column: _shown(examples, names, column) for column in columns}
    fig, axes = figure((1.35 * (1 + 2 * len(columns)), 1.6 * len(names) + 0.4), len(names),
                       1 + 2 * len(columns), layout="constrained", squeeze=False)
    titles = {"jsma": "JSMA", "fgsm": "FGSM", "cw_l2": "CW L2"}
    for i, name in enumerate(names):
        row = examples[name]
        for ax in axes[i]:
            ax.axis("off")
        for j, column in enumerate(columns):
            if column not in row or shown[column] >= len(row[column][3]):
                continue
            k = shown[column]
            clean, adv, targets, successes = row[column]
            a, b = axes[i, 2 * j + 1], axes[i, 2 * j + 2]
            image(a, clean[k])
            image(b, adv[k])
            a.set_title(f"{titles[column]}: clean", fontsize=7)
            ok = successes[k]
            goal = f"-> {targets[k]}" if targets is not None else "untargeted"
            b.set_title(f"{goal} {'ok' if ok else 'failed'}", fontsize=7,
                        color="C3" if ok else "C2")
        axes[i, 0].text(0.5, 0.5, model_label(name).replace("no ", "no\n"),
                        ha="center", va="center", fontsize=9)
    what = "digits" if next(iter(examples[names[0]].values()))[0].shape[1] == 1 else "images"
    fig.suptitle(f"Clean vs adversarial {what} (red: the attack succeeded)", fontsize=10)
    return finish(fig, path)


def reproduction_figures(results: Mapping[str, Any], examples: Mapping[str, Any],
                         out_dir: PathArg) -> dict[str, Path]:
    """The reproduction's four figures saved in ``out_dir``: {name: path}."""
    out_dir = Path(out_dir)
    paths = {"success": out_dir / "success_vs_temperature.png",
             "accuracy": out_dir / "accuracy_vs_temperature.png",
             "amplitudes": out_dir / "gradient_amplitudes.png",
             "examples": out_dir / "adversarial_examples.png"}
    success_vs_temperature(results, paths["success"])
    accuracy_vs_temperature(results, paths["accuracy"])
    gradient_amplitudes(results, paths["amplitudes"])
    adversarial_examples(examples, paths["examples"])
    return paths


def seed_spread(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Accuracy, JSMA and FGSM success against T over several seeds: each seed's value as
    a dot, the mean as a line, the no-distillation range as a band."""
    rows = results["spread"]
    temps = sorted((k for k in rows if k != "baseline"), key=float)
    fig, axes = figure((11, 4.2), 1, 2)
    series = [(axes[0], "accuracy", lambda r: r.get("accuracy"), "C2"),
              (axes[1], "JSMA", lambda r: (r.get("jsma") or {}).get("success"), "C0"),
              (axes[1], f"FGSM eps={results['settings']['eps']:.3g}",
               lambda r: (r.get("fgsm") or {}).get("success"), "C1")]
    for ax, label, cell, color in series:
        if not cell(rows["baseline"]):
            continue
        at = [t for t in temps if cell(rows[t])]
        xs = [float(t) for t in at]
        ax.plot(xs, [100 * cell(rows[t])["mean"] for t in at], "-", color=color,
                label=f"{label}, mean of {len(results['seeds'])} seeds")
        for x, t in zip(xs, at):
            ax.plot([x] * len(cell(rows[t])["values"]),
                    [100 * v for v in cell(rows[t])["values"]], "o", color=color, alpha=0.5,
                    ms=4)
        base = cell(rows["baseline"])
        ax.axhspan(100 * base["min"], 100 * base["max"], color=color, alpha=0.15,
                   label=f"{label}, no distillation (range)")
    for ax, ylabel, title in ((axes[0], "test accuracy (%)", "Accuracy of the deployed nets"),
                              (axes[1], "attack success (%)", "JSMA and FGSM success")):
        log_t_axis(ax, temps)
        ax.set_xlabel("distillation temperature T (deployed at T = 1)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, per seed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_ylim(-3, 103)
    return finish(fig, path)
