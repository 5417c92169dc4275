"""Jacobian-based Saliency Map Attack (Papernot et al., 2016, "The Limitations
of Deep Learning in Adversarial Settings", Algorithms 1-3), batched.

Every iteration picks, for each image still running, the pair of pixels (p, q)
of the search domain that maximises A * |B| among the admissible pairs
(A = alpha_p + alpha_q > 0, B = beta_p + beta_q < 0 for theta > 0; signs
flipped for theta < 0), moves both by theta and clips. alpha = dF_t/dX and
beta = sum_{j != t} dF_j/dX are exact vector-Jacobian products from one
backward pass. With the softmax (the paper's setting, F = softmax(Z / T) at
the deployment temperature) the outputs sum to 1, so beta = -alpha exactly and
one seed per image suffices (admissibility reduces to A > 0, the score to
A^2). With ``on="logits"`` beta carries its own information: two seeds per
image, the target's row of dZ/dX and the sum of the others.

A distilled net deployed at T = 1 saturates its softmax: in float32 the
derivatives underflow to exactly 0, no pair is admissible, and the attack
stops as a failure. That is the behaviour the defence relies on; it is kept,
not hidden.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import kernels
from .._checks import (check_choice, check_classes, check_clip, check_labels, check_number,
                       check_positive, check_probability)
from ..nn.softmax import softmax_seed
from ..placement import device_loop, passes
from ..progress import Progress
from ..typing import Clip, Images, Labels, Model, ProgressArg
from .result import AttackResult
from .targets import goal


def _seeds(z, target, on, T):
    """Seed rows (S, n, K) whose backward passes give alpha (and beta when S = 2)."""
    if on == "softmax":
        return softmax_seed(z, target, T)[None]
    onehot = np.zeros_like(z)
    onehot[np.arange(len(z)), target] = 1
    return np.stack([onehot, 1 - onehot])


def jsma(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
         theta: float = 1.0, gamma: float = 0.145, on: str = "softmax", T: float = 1.0,
         clip: Clip = (0.0, 1.0), search_domain: npt.ArrayLike | None = None,
         batch_size: int = 100, progress: ProgressArg = None) -> AttackResult:
    """Targeted JSMA.

    Parameters
    ----------
    model : Sequential returning logits
    x : (N, C, H, W) float in [clip[0], clip[1]], the model's dtype
    target : (N,) int target classes (keyword-only: JSMA is targeted; y, the true
        classes every attack takes third, is not used: ``jsma_all_targets`` takes it)
    theta : change applied to each picked pixel (> 0 increasing, < 0 decreasing)
    gamma : maximum fraction of pixels changed; at most floor(gamma * M / 2)
        iterations of two pixels (gamma = 0.145 gives 56 iterations, 112 pixels, on MNIST)
    on : "softmax" (saliency of softmax(Z / T), the paper's) or "logits"
    T : temperature of the softmax used for the saliency (deployment: 1)
    search_domain : optional bool array shaped like x: the pixels the attack may
        change. The paper's domain, the default, is every pixel that can still
        move (below clip[1] for theta > 0, above clip[0] for theta < 0); a mask
        narrows it (torchattacks, for instance, searches ``x < 0.99`` only).
    batch_size : images advanced together (each pass runs 2 * batch_size rows)
    progress : True, False, None (shown once the attack has run 2 s) or a callable
        taking a ``npdistill.progress.ProgressEvent``, one per batch of images

    Returns
    -------
    AttackResult with ``target`` set; ``success`` means the model predicts the target.
    """
    target, _ = goal(y, target, "jsma", targeted_only=True)
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    num_classes = model.num_classes
    target = check_labels(target, len(x), num_classes, "target")
    if check_number(theta, "theta") == 0:
        raise ValueError("theta must be non-zero (> 0 raises pixels, < 0 lowers them), got 0")
    check_probability(gamma, "gamma", zero=False)
    check_choice(on, "on", ("softmax", "logits"))
    check_positive(T, "temperature T")
    check_positive(batch_size, "batch_size", integer=True)
    if search_domain is not None:
        if not isinstance(search_domain, np.ndarray) or search_domain.dtype != bool:
            raise TypeError("search_domain must be a bool numpy array")
        if search_domain.shape != x.shape:
            raise ValueError(f"search_domain must have the shape of x {x.shape}, "
                             f"got {search_domain.shape}")
        search_domain = search_domain.reshape(len(x), -1)

    n_total, m = len(x), int(np.prod(x.shape[1:]))
    shown = Progress(progress, "jsma", n_total, "images")
    max_iter = int(np.floor(gamma * m / 2))
    model = passes(model)
    device_jsma = device_loop("jsma", model)         # every iteration on the device
    x_adv = x.copy()
    success = np.zeros(n_total, bool)
    iterations = np.zeros(n_total, np.int64)
    for start in range(0, n_total, batch_size):
        rows = np.arange(start, min(start + batch_size, n_total))
        options = dict(theta=x.dtype.type(theta), max_iter=max_iter, on=on, T=T, lo=lo, hi=hi)
        domain = _domain(x_adv[rows].reshape(len(rows), -1), theta, lo, hi,
                         None if search_domain is None else search_domain[rows])
        if device_jsma is not None:
            x_adv[rows], success[rows], iterations[rows] = device_jsma(
                x_adv[rows], target[rows], domain, **options)
        else:
            _attack_chunk(model, x_adv, target, rows, success, iterations, domain, **options)
        done = rows[-1] + 1
        shown.update(done, success=float(success[:done].mean()))
    return AttackResult.from_examples(x, x_adv, success, iterations, target=target)


def _domain(flat, theta, lo, hi, allowed):
    """The pixels that can still move (and are allowed to): (N, M) bool."""
    domain = flat < hi if theta > 0 else flat > lo
    return domain if allowed is None else domain & allowed


def _attack_chunk(model, x_adv, target, rows, success, iterations, domain, *, theta, max_iter,
                  on, T, lo, hi):
    flat = x_adv.reshape(len(x_adv), -1)                    # a view: edits land in x_adv
    active = np.arange(len(rows))                           # positions within the chunk
    for it in range(max_iter + 1):
        if active.size == 0:
            return
        idx = rows[active]
        xa = x_adv[idx]
        z = model.forward(xa)
        reached = z.argmax(axis=1) == target[idx]
        success[idx[reached]] = True
        keep = ~reached
        if it == max_iter or not keep.any():
            return
        seeds = _seeds(z, target[idx], on, T)
        grads = model.backward(seeds.reshape(-1, z.shape[1]), param_grads=False)
        grads = grads.reshape(len(seeds), len(idx), -1)[:, keep]
        alpha = grads[0]
        beta = grads[1] if on == "logits" else -alpha      # softmax outputs sum to 1
        active, idx = active[keep], idx[keep]
        pairs = kernels.saliency_pairs(alpha, beta, domain[active], increase=theta > 0)
        found = pairs[:, 0] >= 0
        active, idx, pairs = active[found], idx[found], pairs[found]  # the others stop: failure
        for column in (0, 1):
            pixel = pairs[:, column]
            flat[idx, pixel] = np.clip(flat[idx, pixel] + theta, lo, hi)
            at_bound = flat[idx, pixel] >= hi if theta > 0 else flat[idx, pixel] <= lo
            domain[active[at_bound], pixel[at_bound]] = False
        iterations[idx] += 1


def jsma_all_targets(model: Model, x: Images, y: Labels,
                     **kwargs: Any) -> AttackResult:
    """The paper's untargeted protocol: every sample attacked towards each of the K-1 other classes.

    Returns one AttackResult over N * (K - 1) attacks, sample-major, with ``target`` set.
    """
    k = check_classes(model.num_classes)
    y = check_labels(y, len(x), k, "y")
    targets = (y[:, None] + np.arange(1, k)[None, :]) % k
    return jsma(model, np.repeat(x, k - 1, axis=0), target=targets.reshape(-1), **kwargs)
