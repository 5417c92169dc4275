"""The figures of the EMNIST study (``reproduce --dataset emnist``) beyond those it shares
with the MNIST reproduction: where I-FGSM aimed at one class sends the test images, and
its examples labelled with their characters."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from ..typing import PathArg
from ._figure import figure, finish, model_label
from .attacks import image
from .reproduction import accuracy_vs_temperature, gradient_amplitudes, success_vs_temperature


def _hottest(results):
    """The distilled net with the highest temperature ("100"), or None."""
    temps = [k for k in results["models"] if k != "baseline"]
    return max(temps, key=float) if temps else None


def class_histograms(results: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """The classes the undistilled net and the hottest distilled net give the I-FGSM
    images crafted on the undistilled net (the report's Fig. 5 and 7), the target's bar
    marked, each class labelled with its character."""
    ifgsm, classes = results["ifgsm"], results["classes"]
    reading = ifgsm["step"]
    names = ["baseline"] + ([_hottest(results)] if _hottest(results) else [])
    aim, n = ifgsm["target_class"], ifgsm["images"]
    fig, axes = figure((11, 2.6 * len(names) + 0.6), len(names), 1, sharex=True,
                       squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        counts = np.array(reading["histogram"][name])
        colors = ["C3" if k == aim else "C0" for k in range(len(counts))]
        ax.bar(range(len(counts)), counts, color=colors, width=0.8)
        accuracy = reading["accuracy"][name]
        ax.set_title(f"{model_label(name)}: {counts[aim]:,} of {n:,} in class {aim} "
                     f"('{classes[aim]}'), {100 * accuracy:.1f}% classified correctly",
                     fontsize=9)
        ax.set_ylabel("images")
        ax.grid(axis="y", alpha=0.3)
    last = axes[-1, 0]
    last.set_xticks(range(len(classes)), classes, fontsize=7)
    last.set_xlabel("predicted class")
    fig.suptitle(f"I-FGSM towards class {aim}, {ifgsm['steps']} steps of {reading['step']:g} "
                 f"(eps {reading['eps']:g}), crafted on the undistilled net", fontsize=10)
    return finish(fig, path)


def labelled_examples(results: Mapping[str, Any], examples: Mapping[str, Any],
                      path: PathArg | None = None) -> Figure:
    """The first I-FGSM images: clean with its character, adversarial with what the
    undistilled net and the hottest distilled net read in it."""
    ifgsm, classes = results["ifgsm"], results["classes"]
    clean, adversarial, _, _ = examples["baseline"]["ifgsm"]
    shown, hot = ifgsm["examples"], _hottest(results)
    k = min(6, len(clean))
    fig, axes = figure((1.7 * k, 3.9), 2, k, layout="constrained", squeeze=False)
    for j in range(k):
        image(axes[0, j], clean[j])
        label = classes[shown["label"][j]]
        axes[0, j].set_title(f"'{label}', read '{classes[shown['clean']['baseline'][j]]}'",
                             fontsize=8)
        image(axes[1, j], adversarial[j])
        read = classes[shown["adversarial"]["baseline"][j]]
        title = f"no dist.: '{read}'"
        if hot is not None:
            title += f"\nT = {hot}: '{classes[shown['adversarial'][hot][j]]}'"
        axes[1, j].set_title(title, fontsize=8,
                             color="C3" if read == classes[ifgsm["target_class"]] else "k")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"Top: test images (their character, and the undistilled net's reading); "
                 f"bottom: after I-FGSM towards '{classes[ifgsm['target_class']]}' "
                 f"(red: it got there)", fontsize=9)
    return finish(fig, path)


def emnist_figures(results: Mapping[str, Any], examples: Mapping[str, Any],
                   out_dir: PathArg) -> dict[str, Path]:
    """The EMNIST study's figures saved in ``out_dir``: {name: path}."""
    out_dir = Path(out_dir)
    paths = {"accuracy": out_dir / "accuracy_vs_temperature.png",
             "amplitudes": out_dir / "gradient_amplitudes.png"}
    accuracy_vs_temperature(results, paths["accuracy"])
    gradient_amplitudes(results, paths["amplitudes"])
    if "jsma" in results["models"]["baseline"]:
        paths["success"] = out_dir / "success_vs_temperature.png"
        success_vs_temperature(results, paths["success"])
    if results.get("ifgsm"):
        paths["histograms"] = out_dir / "class_histograms.png"
        paths["examples"] = out_dir / "ifgsm_examples.png"
        class_histograms(results, paths["histograms"])
        labelled_examples(results, examples, paths["examples"])
    return paths
