"""Figures of one model and its inputs: an attack's examples, input gradients."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._checks import check_images, check_positive
from ..attacks.fgsm import loss_gradient
from ..attacks.result import AttackResult
from ..typing import Images, Labels, Model, PathArg
from ._figure import figure, finish


def image(ax: Axes, x: np.ndarray) -> None:
    """One image (C, H, W) in [0, 1] on ``ax``: grey for one channel, colour for three."""
    if len(x) == 1:
        ax.imshow(x[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(np.moveaxis(x, 0, -1), 0, 1))


def _difference(ax, d, limit):
    """A signed map (C, H, W) on a red-blue scale symmetric about 0 (channels summed)."""
    return ax.imshow(d.sum(axis=0), cmap="RdBu_r", vmin=-limit, vmax=limit)


def _class_name(classes, k):
    return str(k) if classes is None else f"{classes[k]}"


def examples(model: Model, x: Images, result: AttackResult, n: int = 8,
             classes: Sequence[str] | None = None, path: PathArg | None = None) -> Figure:
    """The first ``n`` images of an attack: clean (the class ``model`` gives it), adversarial
    (its class; red where the attack reached its goal) and the perturbation x_adv - x.

    model : the attacked model (anything with ``predict``); x : the images given to the
    attack; result : its ``AttackResult``; classes : names for the class indices (e.g.
    EMNIST's characters); path : where to save it too. Returns the Figure.
    """
    if not isinstance(result, AttackResult):
        raise TypeError(f"result must be an AttackResult (what an attack returns), got "
                        f"{type(result).__name__}")
    check_images(x, "x")
    if result.x_adv.shape != x.shape:
        raise ValueError(f"result holds {result.x_adv.shape} adversarial images for x of "
                         f"shape {x.shape}: give the x the attack was run on")
    n = min(check_positive(n, "n", integer=True), len(x))
    clean, adv = model.predict(x[:n]), model.predict(result.x_adv[:n])
    delta = result.x_adv[:n].astype(np.float64) - x[:n]
    limit = float(np.abs(delta).max()) or 1.0
    fig, axes = figure((1.45 * n + 0.9, 4.9), 3, n, layout="constrained", squeeze=False)
    for i in range(n):
        image(axes[0, i], x[i])
        axes[0, i].set_title(f"class {_class_name(classes, clean[i])}", fontsize=8)
        image(axes[1, i], result.x_adv[i])
        goal = "" if result.target is None else \
            f" (target {_class_name(classes, result.target[i])})"
        axes[1, i].set_title(f"class {_class_name(classes, adv[i])}{goal}", fontsize=8,
                             color="C3" if result.success[i] else "black")
        shown = _difference(axes[2, i], delta[i], limit)
        axes[2, i].set_title(f"L2 {result.l2[i]:.2f}, L0 {result.l0[i]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for row, text in enumerate(("clean", "adversarial", "x_adv - x")):
        axes[row, 0].set_ylabel(text, fontsize=9)
    what = "targeted" if result.target is not None else "untargeted"
    fig.suptitle(f"{what} attack on {n} images: {int(result.success[:n].sum())} reached "
                 f"the goal (red)", fontsize=10)
    fig.colorbar(shown, ax=list(axes[2]), fraction=0.02, pad=0.01)
    return finish(fig, path)


def gradients(model: Model, x: Images, y: Labels | None = None, T: float = 1.0, n: int = 6,
              path: PathArg | None = None) -> Figure:
    """The input gradient FGSM follows, d CE(softmax(Z(x) / T), y) / dx, for the first ``n``
    images in the model's dtype: each image, then its gradient (red-blue, symmetric; the
    title counts its non-zero components). A distilled net deployed at T = 1 shows exact
    zeros; the same net at its training T shows the gradient again.

    y : the classes the loss is taken for (default: the ones the model predicts).
    Returns the Figure (saved at ``path`` too, where given).
    """
    check_images(x, "x")
    n = min(check_positive(n, "n", integer=True), len(x))
    x = x[:n]
    y = model.predict(x) if y is None else np.asarray(y)[:n]
    g = loss_gradient(model, x, y, T=T)
    fig, axes = figure((1.5 * n + 0.3, 3.7), 2, n, layout="constrained", squeeze=False)
    for i in range(n):
        image(axes[0, i], x[i])
        axes[0, i].set_title(f"class {y[i]}", fontsize=8)
        limit = float(np.abs(g[i]).max())
        _difference(axes[1, i], g[i], limit or 1.0)
        axes[1, i].set_title(f"{np.count_nonzero(g[i])} of {g[i].size} non-zero\n"
                             f"max |g| {limit:.1e}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("dLoss/dx", fontsize=9)
    fig.suptitle(f"Input gradient of the loss at T = {T:g} ({np.dtype(g.dtype).name})",
                 fontsize=10)
    return finish(fig, path)
