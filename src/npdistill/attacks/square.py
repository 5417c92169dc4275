"""The Square attack (Andriushchenko et al., 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), L-infinity: no gradient at all.

It starts from vertical stripes of +-eps and then, once per query, proposes to set one
random square window of every channel to a random +-eps, keeping the proposal where it
lowers the logit margin: z_y - max_{i != y} z_i (untargeted), max_{i != t} z_i - z_t
(targeted); an image is broken when its margin is below 0, and stops there. The window's
area is a share p of the image that halves on the paper's schedule (after 10, 50, 200,
500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries, rescaled to ``queries``).

It reads only the model's logits, so a saturated softmax (distillation's masking) cannot
hide anything from it.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._checks import (check_classes, check_clip, check_labels, check_number, check_positive,
                       check_probability, check_seed)
from ..placement import passes
from ..progress import Progress
from ..typing import Clip, FloatArray, Images, Labels, Model, ProgressArg
from .result import AttackResult
from .targets import goal

# where p halves, in thousandths of the query budget (the paper's 10,000-query schedule)
HALVINGS = (1, 5, 20, 50, 100, 200, 400, 600, 800)


def window_share(p_init: float, query: int, queries: int) -> float:
    """The share of the image a square covers at ``query`` of ``queries``."""
    at = 1000 * query / queries
    return p_init / 2 ** sum(at > h for h in HALVINGS)


def margin(z: FloatArray, classes: npt.NDArray[np.int64], targeted: bool = False) -> FloatArray:
    """The logit margin Square lowers, below 0 where the goal is reached: z_y - max_{i != y}
    z_i for the true classes (untargeted), max_{i != t} z_i - z_t for targets."""
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, classes] = -np.inf
    gap = z[rows, classes] - others.max(axis=1)
    return -gap if targeted else gap


def square(model: Model, x: Images, y: Labels | None = None, *, target: Labels | None = None,
           eps: float = 0.3, queries: int = 5000, p_init: float = 0.05, seed: int | None = 0,
           clip: Clip = (0.0, 1.0), batch_size: int = 256,
           progress: ProgressArg = None) -> AttackResult:
    """Square attack within ``eps`` in L-infinity, at most ``queries`` forward passes an
    image (``iterations``: the queries each image used, the first one included).

    Untargeted with the true classes y, or with target=; ``p_init``: the share of the
    image the first squares cover; ``seed`` draws the stripes and squares.
    """
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels, targeted = goal(y, target, "square")
    labels = check_labels(labels, len(x), check_classes(model.num_classes),
                          "target" if targeted else "y")
    eps = check_number(eps, "eps", low=0)
    queries = check_positive(queries, "queries", integer=True)
    check_probability(p_init, "p_init", zero=False)
    check_positive(batch_size, "batch_size", integer=True)
    model = passes(model)
    rng = np.random.default_rng(check_seed(seed, generator=True))
    x_adv, used = x.copy(), np.zeros(len(x), np.int64)
    if eps > 0:
        shown = Progress(progress, "square", len(x), "images")
        for start in range(0, len(x), batch_size):
            rows = slice(start, min(start + batch_size, len(x)))
            x_adv[rows], used[rows] = _search(model, x[rows], labels[rows], targeted, eps, lo,
                                              hi, queries, p_init, rng)
            shown.update(rows.stop)
    predicted = model.predict(x_adv)
    success = predicted == labels if targeted else predicted != labels
    return AttackResult.from_examples(x, x_adv, success, used,
                                      target=labels if targeted else None)


def _search(model, clean, classes, targeted, eps, lo, hi, queries, p_init, rng):
    """(the images found, the queries each used) for one batch."""
    n, c, h, w = clean.shape
    stripes = rng.choice([-eps, eps], size=(n, c, 1, w)).astype(clean.dtype)
    adv = np.clip(clean + stripes, lo, hi)
    best = margin(model.batched_logits(adv), classes, targeted)
    used = np.ones(n, np.int64)
    for query in range(1, queries):
        active = np.flatnonzero(best >= 0)
        if not len(active):
            break
        side = int(round(np.sqrt(window_share(p_init, query, queries) * h * w)))
        side = max(1, min(side, h - 1, w - 1))
        # one square per active image, every channel set to its own +-eps inside it
        rows = np.arange(len(active))[:, None, None, None]
        channels = np.arange(c)[None, :, None, None]
        down = (rng.integers(0, h - side + 1, len(active))[:, None] + np.arange(side))
        across = (rng.integers(0, w - side + 1, len(active))[:, None] + np.arange(side))
        at = (rows, channels, down[:, None, :, None], across[:, None, None, :])
        signs = rng.choice([-eps, eps], size=(len(active), c, 1, 1)).astype(clean.dtype)
        proposal = adv[active]
        proposal[at] = np.clip(clean[active][at] + signs, lo, hi)
        value = margin(model.batched_logits(proposal), classes[active], targeted)
        used[active] += 1
        better = value < best[active]
        adv[active[better]], best[active[better]] = proposal[better], value[better]
    return adv, used
