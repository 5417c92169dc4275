"""The teaching figures (docs/teaching.md, docs/tutorials/): each draws the numbers the
function of the same name in ``npdistill.teaching`` computes."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from ..typing import PathArg
from ._figure import figure, finish, model_label, model_ticks
from .attacks import image

TINY32 = np.finfo(np.float32).tiny


def logit_scale(numbers: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Left: the gap between the two largest logits per net (boxes: quartiles, whiskers:
    5th and 95th percentiles). Right: the share of images whose softmax is exactly 1.0."""
    names = list(numbers)
    fig, (a, b) = figure((11, 4.2), 1, 2)
    stats = []
    for name in names:
        lo, q1, median, q3, hi = numbers[name]["logit_gap_percentiles"]   # 5 .. 95
        stats.append({"whislo": lo, "q1": q1, "med": median, "q3": q3, "whishi": hi,
                      "fliers": []})
    a.bxp(stats, positions=range(len(names)))
    a.set_yscale("log")
    model_ticks(a, names)
    a.set_ylabel("largest logit - second largest")
    a.set_title("Gap between the two largest logits, per net\n"
                "(boxes: quartiles; whiskers: 5th-95th percentile)", fontsize=10)
    exact = [100 * numbers[n]["saturated_share"] for n in names]
    b.bar(range(len(names)), exact, color="C3")
    model_ticks(b, names)
    b.set_ylabel("% of images")
    b.set_ylim(0, 112)                         # room for the labels above the bars
    b.set_title("Images whose largest softmax output (at T = 1)\nis exactly 1.0 in float32",
                fontsize=10)
    for i, v in enumerate(exact):
        b.text(i, v + 1.5, f"{v:.0f}%", ha="center", fontsize=8)
    return finish(fig, path)


def zero_gradients(numbers: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """Left: the share of each attack's gradient components that are exactly 0 in float32.
    Right: the median gradient amplitude computed in float64; a net whose median is 0
    even there is marked as such, not left blank."""
    names = list(numbers)
    fig, (a, b) = figure((11, 4.4), 1, 2)
    width = 0.27
    for k, (key, text) in enumerate((("fgsm", "FGSM: dLoss/dx"), ("jsma", "JSMA: dF/dx"),
                                     ("cw", "CW: d(logit margin)/dx"))):
        a.bar(np.arange(len(names)) + (k - 1) * width,
              [100 * numbers[n][f"{key}_zero_fraction"] for n in names], width, label=text)
    model_ticks(a, names)
    a.set_ylabel("% of components exactly 0")
    a.set_ylim(0, 112)
    a.set_title("Input-gradient components that are exactly 0 (float32)", fontsize=10)
    a.legend(fontsize=8, loc="upper left")
    amplitude = np.array([numbers[n]["median_amplitude_float64"] for n in names])
    # the axis reaches below float32's smallest normal number and the smallest amplitude
    floor = min([TINY32, *amplitude[amplitude > 0]]) * 1e-6
    b.bar(range(len(names)), np.where(amplitude > 0, amplitude, np.nan), color="C4")
    b.set_yscale("log")
    b.set_ylim(bottom=floor, top=max(1.0, amplitude.max() * 100))
    b.set_xlim(-0.6, len(names) - 0.4)                   # a net at 0 keeps its place
    for i in np.flatnonzero(amplitude == 0):
        b.text(i, floor * 10, "0 even in float64", ha="center", va="bottom", fontsize=8,
               color="C3", rotation=90)         # upright: side by side for adjacent nets
    model_ticks(b, names)
    b.set_ylabel("median of mean |dF_c/dx| per image")
    b.axhline(TINY32, color="k", ls=":", lw=1)
    b.text(len(names) - 0.5, TINY32 * 1e3, "smallest normal float32", fontsize=8, ha="right",
           bbox=dict(facecolor="white", edgecolor="none", pad=1))
    b.set_title("Gradient amplitude computed in float64", fontsize=10)
    return finish(fig, path)


def fgsm_sign_zero(example: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """One image per row (the baseline, the hottest net): the clean image and the class the
    net gives it, the loss gradient, and FGSM's image with the class it gets."""
    rows = example["rows"]
    fig, axes = figure((7.5, 2.6 * len(rows)), len(rows), 3, squeeze=False)
    for r, (name, row) in enumerate(rows.items()):
        g = row["gradient"][0]
        limit = np.abs(g).max() or 1.0
        image(axes[r, 0], row["clean"])
        axes[r, 0].set_title(f"{model_label(name)}: clean, class {row['clean_class']}",
                             fontsize=8)
        axes[r, 1].imshow(g, cmap="RdBu", vmin=-limit, vmax=limit)
        axes[r, 1].set_title(f"dLoss/dx: {row['nonzero']} of {g.size} non-zero", fontsize=8)
        image(axes[r, 2], row["adversarial"])
        axes[r, 2].set_title(f"FGSM eps={example['eps']}: class {row['adversarial_class']}, "
                             f"{row['moved']} pixels moved", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(f"Test image {example['index']}: its loss gradient and FGSM's image, per net",
                 fontsize=10)
    return finish(fig, path)


def counter_attacks(numbers: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """The success of each attack (FGSM, FGSM on logits / T, JSMA on the softmax and on the
    logits, CW L2) on each net."""
    success = numbers["success"]
    names = list(success)
    attacks = list(success[names[0]])
    fig, ax = figure((10, 4.4))
    width = 0.8 / len(attacks)
    for k, attack in enumerate(attacks):
        ax.bar(np.arange(len(names)) + (k - (len(attacks) - 1) / 2) * width,
               [100 * success[n][attack] for n in names], width, label=attack)
    model_ticks(ax, names)
    ax.set_ylabel("attack success (%)")
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    images = numbers["images"]
    ax.set_title(f"Success of each attack per net (FGSM: {images['fgsm']} images, JSMA: "
                 f"{images['jsma']}, CW: {images['cw']}; random targets)", fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    return finish(fig, path)


def tgsm_vs_fgsm(numbers: Mapping[str, Any], path: PathArg | None = None) -> Figure:
    """The median L2 norm of the untargeted (FGSM) and the targeted (TGSM) loss gradient
    per net, log scale; an exact 0 is drawn at 1e-45 and said in the axis label."""
    names = list(numbers)
    fig, ax = figure((8, 4.2))
    positions = np.arange(len(names))
    for key, shift, color, text in (("fgsm", -0.18, "C0", "FGSM: loss of the true class"),
                                    ("tgsm", 0.18, "C3", "TGSM: loss of a target class")):
        medians = [numbers[n][f"median_{key}_gradient_norm"] for n in names]
        ax.bar(positions + shift, np.maximum(medians, 1e-45), 0.36, color=color, label=text)
    ax.set_yscale("log")
    model_ticks(ax, names)
    ax.set_ylim(top=1e12)                      # room for the legend above the bars
    ax.set_ylabel("median ||dLoss/dx||_2 (0 drawn at 1e-45)")
    ax.set_title("Untargeted and targeted loss-gradient norms per net", fontsize=10)
    ax.legend(fontsize=8)
    return finish(fig, path)
