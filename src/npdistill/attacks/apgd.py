"""Auto-PGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): PGD with momentum whose step size needs no
tuning. It starts at 2 eps and halves, per image, at checkpoints w_j = ceil(p_j N) of the
N steps (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)) when the
loss rose on fewer than 75% of the steps since the last checkpoint, or when neither the
step size nor the best loss changed since then; a halving restarts from the best point.

The loss is the cross-entropy ("ce") or the difference-of-logits ratio ("dlr"):

    untargeted  DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    targeted    DLR = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)

with z_pi1 >= z_pi2 >= ... the sorted logits. DLR is a ratio of logit differences: it does
not change when the logits are scaled, which is exactly what distillation at T does to a
deployed net. So where the saturated softmax gives FGSM and PGD on the cross-entropy a
gradient of exact zeros, APGD-DLR still has one, without knowing T.
"""
from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .._checks import (check_choice, check_classes, check_clip, check_labels, check_number,
                       check_positive, check_seed)
from ..nn.softmax import loss_seed
from ..placement import passes
from ..progress import Progress
from ..typing import Clip, FloatArray, Images, Labels, Model, Norm, ProgressArg
from .fgsm import NORMS, norm_key
from .result import AttackResult
from .targets import goal

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75       # the weight of the new step against the last one (the paper's alpha)
RHO = 0.75            # the share of steps the loss must have risen on since a checkpoint
DLR_FLOOR = 1e-12     # keeps the ratio finite where the sorted logits tie


def checkpoints(steps: int) -> list[int]:
    """The steps after which APGD may halve its step size: ceil(p_j * steps) for the
    paper's p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), below ``steps``."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    found = sorted({math.ceil(round(q * steps, 9)) for q in p[1:]})   # 0.57 is 0.5700..01
    return [w for w in found if 0 < w < steps]


def dlr_loss(z: FloatArray, labels: npt.NDArray[np.int64],
             target: npt.NDArray[np.int64] | None = None) -> tuple[FloatArray, FloatArray]:
    """(DLR loss (N,), its gradient dL/dz (N, K)) of logits z for the true classes
    ``labels``, untargeted, or for reaching ``target`` (see the module's docstring); the
    loss is to be maximized. Untargeted needs K >= 3 classes, targeted K >= 4."""
    n, k = z.shape
    rows = np.arange(n)
    order = np.argsort(z, axis=1)[:, ::-1]          # pi1, pi2, ... per row
    top = z[rows[:, None], order]
    grad_a = np.zeros_like(z)                        # d(numerator difference)/dz
    grad_d = np.zeros_like(z)                        # d(denominator)/dz
    if target is None:
        other = np.where(order[:, 0] == labels, order[:, 1], order[:, 0])
        a = z[rows, labels] - z[rows, other]
        d = top[:, 0] - top[:, 2]
        grad_a[rows, labels] += 1
        grad_a[rows, other] -= 1
        grad_d[rows, order[:, 0]] += 1
        grad_d[rows, order[:, 2]] -= 1
    else:
        a = z[rows, labels] - z[rows, target]
        d = top[:, 0] - (top[:, 2] + top[:, 3]) / 2
        grad_a[rows, labels] += 1
        grad_a[rows, target] -= 1
        grad_d[rows, order[:, 0]] += 1
        grad_d[rows, order[:, 2]] -= 0.5
        grad_d[rows, order[:, 3]] -= 0.5
    d = d + z.dtype.type(DLR_FLOOR)
    loss = -a / d
    grad = -grad_a / d[:, None] + (a / d ** 2)[:, None] * grad_d
    return loss, grad.astype(z.dtype)


def _loss_and_seed(z, labels, target, loss):
    """(loss to maximize (N,), its gradient in z) for APGD's ``loss``."""
    if loss == "dlr":
        return dlr_loss(z, labels, target)
    goal_labels = labels if target is None else target
    seed = loss_seed(z, goal_labels, 1.0)                 # softmax(z) - onehot
    p_goal = seed[np.arange(len(z)), goal_labels] + 1     # so the goal's probability, once
    ce = -np.log(np.maximum(p_goal, np.finfo(z.dtype).tiny))
    return (ce, seed) if target is None else (-ce, -seed)


def apgd(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
         eps: float = 0.3, norm: Norm = "inf", loss: str = "dlr", steps: int = 100,
         restarts: int = 1, seed: int | None = 0, clip: Clip = (0.0, 1.0),
         batch_size: int = 256, progress: ProgressArg = None) -> AttackResult:
    """Auto-PGD within ``eps`` (L-inf or L2) on the ``loss`` "dlr" (default) or "ce".

    Untargeted with the true classes y (success: another class), or with target= (the
    targeted DLR and CE; success: the target). ``steps`` gradient steps from a uniform
    random point of the eps-ball, ``restarts`` times for the images not yet broken (the
    random points drawn from ``seed``). An image stops at its first success; the others
    end at their highest loss. ``iterations``: the gradient steps each image took.
    """
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels, targeted = goal(y, target, "apgd")
    k = check_classes(model.num_classes)
    labels = check_labels(labels, len(x), k, "target" if targeted else "y")
    eps = check_number(eps, "eps", low=0)
    steps = check_positive(steps, "steps", integer=True)
    restarts = check_positive(restarts, "restarts", integer=True)
    check_choice(loss, "loss", LOSSES)
    if loss == "dlr" and k < (4 if targeted else 3):
        raise ValueError(f"the {'targeted ' if targeted else ''}DLR loss needs at least "
                         f"{4 if targeted else 3} classes, the model has {k}: use loss='ce'")
    check_positive(batch_size, "batch_size", integer=True)
    normalize, project, random = NORMS[norm_key(norm)]
    model = passes(model)
    rng = np.random.default_rng(check_seed(seed, generator=True))
    x_adv, success = x.copy(), np.zeros(len(x), bool)
    iterations = np.zeros(len(x), np.int64)
    if eps == 0:
        predicted = model.predict(x)
        success = predicted == labels if targeted else predicted != labels
        return AttackResult.from_examples(x, x_adv, success, iterations,
                                          target=labels if targeted else None)
    if targeted:   # the targeted DLR's numerator is z_y - z_t: y the clean prediction
        true = model.predict(x) if loss == "dlr" else labels
    shown = Progress(progress, "apgd", len(x), "images")
    search = _Search(model, project, normalize, eps, lo, hi, loss, steps)
    for start in range(0, len(x), batch_size):
        rows = np.arange(start, min(start + batch_size, len(x)))
        for _ in range(restarts):
            active = rows[~success[rows]]
            if not len(active):
                break
            clean = x[active]
            first = np.clip(clean + random(rng, clean.shape, eps).astype(x.dtype), lo, hi)
            goal_rows = (true[active], labels[active]) if targeted else (labels[active], None)
            found, broke, spent = search.run(clean, first, *goal_rows)
            x_adv[active], success[active] = found, broke
            iterations[active] += spent
        shown.update(rows[-1] + 1, success=float(success[:rows[-1] + 1].mean()))
    predicted = model.predict(x_adv)
    success = predicted == labels if targeted else predicted != labels
    return AttackResult.from_examples(x, x_adv, success, iterations,
                                      target=labels if targeted else None)


class _Search:
    """One APGD run over a batch: the step-size schedule and momentum, per image."""

    def __init__(self, model, project, normalize, eps, lo, hi, loss, steps):
        self.model, self.project, self.normalize = model, project, normalize
        self.eps, self.lo, self.hi, self.loss, self.steps = eps, lo, hi, loss, steps
        self.checkpoints = set(checkpoints(steps))

    def _within(self, clean, v):
        """v projected into the eps-ball around clean and the clip box."""
        dtype = clean.dtype.type
        return np.clip(clean + self.project(v - clean, dtype(self.eps)).astype(clean.dtype),
                       self.lo, self.hi)

    def _evaluate(self, adv, labels, target):
        """(loss, its input gradient, broken) at adv."""
        z = self.model.forward(adv)
        value, seed = _loss_and_seed(z, labels, target, self.loss)
        gradient = self.model.backward(seed, param_grads=False)
        predicted = z.argmax(axis=1)
        broke = predicted != labels if target is None else predicted == target
        return value, gradient, broke

    def run(self, clean, adv, labels, target):
        """(the images found, whether each broke the model, the steps each took)."""
        n, shape = len(clean), (len(clean),) + (1,) * (clean.ndim - 1)
        eta = np.full(shape, 2 * self.eps, clean.dtype)
        value, gradient, broke = self._evaluate(adv, labels, target)
        found, spent = adv.copy(), np.zeros(n, np.int64)
        best, best_value, best_gradient = adv.copy(), value.copy(), gradient.copy()
        previous, rises = adv.copy(), np.zeros(n, np.int64)
        last_eta, last_best, last_check = eta.copy(), best_value.copy(), 0
        going = ~broke
        for step in range(1, self.steps + 1):
            if not going.any():
                break
            z = self._within(clean, adv + eta * self.normalize(gradient).astype(clean.dtype))
            moved = z if step == 1 else self._within(
                clean, adv + MOMENTUM * (z - adv) + (1 - MOMENTUM) * (adv - previous))
            moved[~going] = adv[~going]                  # the broken ones stay where they are
            previous, adv = adv, moved
            new_value, gradient, broke_now = self._evaluate(adv, labels, target)
            spent[going] += 1
            rises += (new_value > value) & going
            value = new_value
            newly = broke_now & going
            found[newly], broke[newly] = adv[newly], True
            going &= ~broke_now
            higher = value > best_value
            best[higher], best_value[higher], best_gradient[higher] = \
                adv[higher], value[higher], gradient[higher]
            if step in self.checkpoints:
                stalled = (rises < RHO * (step - last_check)) | \
                    ((last_eta == eta).reshape(n) & (last_best == best_value))
                halve = stalled & going
                eta[halve] /= 2
                adv[halve], gradient[halve] = best[halve], best_gradient[halve]
                value[halve] = best_value[halve]
                last_eta, last_best, last_check = eta.copy(), best_value.copy(), step
                rises[:] = 0
        found[~broke] = best[~broke]
        return found, broke, spent
