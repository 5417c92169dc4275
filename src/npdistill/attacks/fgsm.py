"""Gradient-sign attacks as one loop with a ``normalize`` and a ``project`` per norm
(after foolbox 3): FGSM (Goodfellow et al., 2015), its targeted twin TGSM,
BIM / iterative FGSM (Kurakin et al., 2017) and PGD with a random start
(Madry et al., 2018).

The loss is the cross-entropy of softmax(Z / T) with the label (ascended) or
the target (descended). T defaults to the deployment temperature 1. Against a
distilled net that is the masking the papers report: the softmax saturates,
p - onehot is exactly 0 in float32, the gradient is 0 and sign(0) = 0 leaves
the image unperturbed. Passing the training temperature (``T=20`` for a net
distilled at 20) divides the logits by T again and undoes it.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_clip, check_labels, check_number, check_positive, check_seed
from ..nn.softmax import loss_seed
from ..placement import passes
from ..progress import Progress
from ..typing import Clip, Images, Labels, Model, Norm, ProgressArg
from .result import AttackResult
from .targets import goal


# -- one normalize / project / random start per norm ---------------------------
def _normalize_inf(g):
    return np.sign(g)


def _project_inf(delta, eps):
    return np.clip(delta, -eps, eps)


def _random_inf(rng, shape, eps):
    return rng.uniform(-eps, eps, shape)


def _norms(a):
    return np.sqrt((a.astype(np.float64) ** 2).reshape(len(a), -1).sum(axis=1)).reshape(
        (len(a),) + (1,) * (a.ndim - 1))


def _normalize_l2(g):
    n = _norms(g)
    return np.divide(g, n, out=np.zeros_like(g), where=n > 0)     # a zero gradient stays 0


def _project_l2(delta, eps):
    n = _norms(delta)
    return delta * np.minimum(1.0, np.divide(eps, n, out=np.ones_like(n), where=n > 0))


def _random_l2(rng, shape, eps):
    """Uniform in the L2 ball: a Gaussian direction, radius eps * u^(1/d)."""
    d = rng.standard_normal(shape)
    d /= _norms(d)
    return d * eps * rng.random((shape[0],) + (1,) * (len(shape) - 1)) ** (1 / np.prod(shape[1:]))


NORMS = {"inf": (_normalize_inf, _project_inf, _random_inf),
         2: (_normalize_l2, _project_l2, _random_l2)}


def norm_key(norm):
    if norm in ("inf", "linf", np.inf):
        return "inf"
    if norm in (2, "2", "l2"):
        return 2
    raise ValueError(f"norm must be 'inf' or 2, got {norm!r}")


def loss_gradient(model: Model, x: Images, labels: Labels, T: float = 1.0) -> Images:
    """d CE(softmax(Z(x) / T), labels) / dx per image (the sum of the losses, not their mean):
    (N, C, H, W). dCE/dz = (softmax(z / T) - onehot) / T; a saturated softmax gives exactly 0."""
    return model.backward(loss_seed(model.forward(x), labels, T), param_grads=False)


def gradient_attack(model: Model, x: Images, labels: Labels, *, targeted: bool, eps: float,
                    steps: int, step_size: float, norm: Norm = "inf", T: float = 1.0,
                    random_start: bool = False, seed: int | None = None,
                    clip: Clip = (0.0, 1.0), batch_size: int = 256,
                    progress: ProgressArg = None, name: str = "gradient attack") -> AttackResult:
    """The loop shared by FGSM, TGSM, BIM and PGD.

    x_{k+1} = clip(x + project(x_k + step_size * s * normalize(grad) - x, eps)), s = +1
    (untargeted: ascend the loss of ``labels``) or -1 (targeted: descend it).
    Success: the prediction differs from the label (untargeted) or equals it
    (targeted). progress: True, False, None (shown once the attack has run 2 s) or a
    callable taking a ``npdistill.progress.ProgressEvent`` per batch of images.
    """
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels = check_labels(labels, len(x), model.num_classes, "target" if targeted else "y")
    eps = check_number(eps, "eps", low=0)
    check_positive(steps, "steps", integer=True)
    check_number(step_size, "step_size", low=0, low_open=eps > 0)
    check_positive(T, "temperature T")
    check_positive(batch_size, "batch_size", integer=True)
    normalize, project, random = NORMS[norm_key(norm)]
    model = passes(model)
    if eps == 0:                      # an eps sweep's first point: the clean images
        predicted = model.predict(x)
        success = predicted == labels if targeted else predicted != labels
        return AttackResult.from_examples(x, x.copy(), success, np.zeros(len(x), np.int64),
                                          target=labels if targeted else None)
    rng = np.random.default_rng(check_seed(seed, generator=True))
    shown = Progress(progress, name, len(x), "images")
    dtype = x.dtype.type
    direction = dtype(-step_size if targeted else step_size)
    x_adv = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        clean, y = x[start:start + batch_size], labels[start:start + batch_size]
        adv = clean.copy()
        if random_start:
            adv = np.clip(clean + random(rng, clean.shape, eps).astype(clean.dtype), lo, hi)
        for _ in range(steps):
            step = adv + direction * normalize(loss_gradient(model, adv, y, T)).astype(clean.dtype)
            adv = np.clip(clean + project(step - clean, dtype(eps)).astype(clean.dtype), lo, hi)
        x_adv[start:start + len(clean)] = adv
        shown.update(start + len(clean))
    predicted = model.predict(x_adv)
    success = predicted == labels if targeted else predicted != labels
    return AttackResult.from_examples(x, x_adv, success, np.full(len(x), steps),
                                      target=labels if targeted else None)


def fgsm(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
         eps: float = 0.3, norm: Norm = "inf", T: float = 1.0, clip: Clip = (0.0, 1.0),
         batch_size: int = 256, progress: ProgressArg = None) -> AttackResult:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size eps up the
    loss of the true class y (or, with target=, down the loss of the target: TGSM).
    x : (N, C, H, W) in the clip box; y or target : (N,) int. eps = 0 returns x."""
    labels, targeted = goal(y, target, "fgsm")
    return gradient_attack(model, x, labels, targeted=targeted, eps=eps, steps=1,
                           step_size=eps, norm=norm, T=T, clip=clip, batch_size=batch_size,
                           progress=progress, name="fgsm")


def tgsm(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
         eps: float = 0.3, norm: Norm = "inf", T: float = 1.0, clip: Clip = (0.0, 1.0),
         batch_size: int = 256, progress: ProgressArg = None) -> AttackResult:
    """Targeted gradient sign method: one step of size eps down the loss of ``target``."""
    labels, _ = goal(y, target, "tgsm", targeted_only=True)
    return gradient_attack(model, x, labels, targeted=True, eps=eps, steps=1, step_size=eps,
                           norm=norm, T=T, clip=clip, batch_size=batch_size, progress=progress,
                           name="tgsm")


def bim(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
        eps: float = 0.3, steps: int = 10, step_size: float | None = None, norm: Norm = "inf",
        T: float = 1.0, clip: Clip = (0.0, 1.0), batch_size: int = 256,
        progress: ProgressArg = None) -> AttackResult:
    """Basic iterative method / iterative FGSM (Kurakin et al., 2017): ``steps`` steps
    of ``step_size`` (default eps / steps), projected into the eps-ball and the clip box."""
    labels, targeted = goal(y, target, "bim")
    eps = check_number(eps, "eps", low=0)
    steps = check_positive(steps, "steps", integer=True)
    return gradient_attack(model, x, labels, targeted=targeted, eps=eps, steps=steps,
                           step_size=eps / steps if step_size is None else step_size, norm=norm,
                           T=T, clip=clip, batch_size=batch_size, progress=progress, name="bim")


def pgd(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
        eps: float = 0.3, steps: int = 40, step_size: float | None = None,
        random_start: bool = True, seed: int | None = 0, norm: Norm = "inf", T: float = 1.0,
        clip: Clip = (0.0, 1.0), batch_size: int = 256,
        progress: ProgressArg = None) -> AttackResult:
    """Projected gradient descent (Madry et al., 2018): BIM from a uniform random point
    of the eps-ball; step_size defaults to 2.5 * eps / steps. ``seed`` fixes the start."""
    labels, targeted = goal(y, target, "pgd")
    eps = check_number(eps, "eps", low=0)
    steps = check_positive(steps, "steps", integer=True)
    return gradient_attack(model, x, labels, targeted=targeted, eps=eps, steps=steps,
                           step_size=2.5 * eps / steps if step_size is None else step_size,
                           norm=norm, T=T, random_start=random_start, seed=seed, clip=clip,
                           batch_size=batch_size, progress=progress, name="pgd")
