"""The Square attack (Andriushchenko et al., 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), in L-infinity and L2: no gradient at all.

A random search on the logit margin z_y - max_{i != y} z_i (untargeted), max_{i != t} z_i
- z_t (targeted): once per query it proposes a change inside a random square window and
keeps it where the margin falls; an image is broken when its margin is below 0, and stops
there. The window's area is a share p of the image that halves on the paper's schedule
(after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries, rescaled to
``queries``).

- L-infinity (the paper's Algorithm 2): start from vertical stripes of +-eps; a proposal
  sets the window of every channel to its own random +-eps.
- L2 (Algorithm 3): start from a grid of "bumps" (a pseudo-Gaussian peak beside its
  negative, unit norm) with random signs, scaled to norm eps; a proposal moves the
  perturbation's mass of a second random window (emptied) and of the first into the first
  window, as a new bump plus what the first window held, so the perturbation keeps norm eps
  (before the clip box, which can only shorten it).

It reads only the model's logits, so a saturated softmax (distillation's masking) cannot
hide anything from it.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._checks import (check_classes, check_clip, check_labels, check_number, check_positive,
                       check_probability, check_seed)
from .fgsm import norm_key
from ..placement import passes
from ..progress import Progress
from ..typing import Clip, FloatArray, Images, Labels, Model, Norm, ProgressArg
from .result import AttackResult
from .targets import goal

# where p halves, in thousandths of the query budget (the paper's 10,000-query schedule)
HALVINGS = (1, 5, 20, 50, 100, 200, 400, 600, 800)
P_INIT = {"inf": 0.05, 2: 0.1}     # the paper's defaults for each norm


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
           eps: float = 0.3, norm: Norm = "inf", queries: int = 5000,
           p_init: float | None = None, seed: int | None = 0, clip: Clip = (0.0, 1.0),
           batch_size: int = 256, progress: ProgressArg = None) -> AttackResult:
    """Square attack within ``eps`` in L-infinity or L2 (``norm``), at most ``queries``
    forward passes an image (``iterations``: the queries each image used, the first one
    included).

    Untargeted with the true classes y, or with target=; ``p_init``: the share of the
    image the first squares cover (None: the paper's 0.05 for L-inf, 0.1 for L2);
    ``seed`` draws the starting point and the squares.
    """
    lo, hi = check_clip(clip)
    model.check_images(x, box=(lo, hi))
    labels, targeted = goal(y, target, "square")
    labels = check_labels(labels, len(x), check_classes(model.num_classes),
                          "target" if targeted else "y")
    eps = check_number(eps, "eps", low=0)
    norm = norm_key(norm)
    queries = check_positive(queries, "queries", integer=True)
    p_init = P_INIT[norm] if p_init is None else p_init
    check_probability(p_init, "p_init", zero=False)
    check_positive(batch_size, "batch_size", integer=True)
    model = passes(model)
    rng = np.random.default_rng(check_seed(seed, generator=True))
    x_adv, used = x.copy(), np.zeros(len(x), np.int64)
    if eps > 0:
        shown = Progress(progress, "square", len(x), "images")
        search = SEARCHES[norm](model, targeted, eps, lo, hi, queries, p_init, rng)
        for start in range(0, len(x), batch_size):
            rows = slice(start, min(start + batch_size, len(x)))
            x_adv[rows], used[rows] = search.run(x[rows], labels[rows])
            shown.update(rows.stop)
    predicted = model.predict(x_adv)
    success = predicted == labels if targeted else predicted != labels
    return AttackResult.from_examples(x, x_adv, success, used,
                                      target=labels if targeted else None)


class _Search:
    """The random search one batch at a time: ``start`` the first point, ``propose`` one
    query's proposals for the images not yet broken (``active``; ``adv`` is their own copy
    of the best points, free to be written over); the rest is shared."""

    def __init__(self, model, targeted, eps, lo, hi, queries, p_init, rng):
        self.model, self.targeted, self.eps, self.lo, self.hi = model, targeted, eps, lo, hi
        self.queries, self.p_init, self.rng = queries, p_init, rng

    def run(self, clean, classes):
        """(the images found, the queries each used) for one batch."""
        adv = self.start(clean)
        best = margin(self.model.batched_logits(adv), classes, self.targeted)
        used = np.ones(len(clean), np.int64)
        for query in range(1, self.queries):
            active = np.flatnonzero(best >= 0)
            if not len(active):
                break
            proposal = self.propose(clean[active], adv[active], query)
            value = margin(self.model.batched_logits(proposal), classes[active], self.targeted)
            used[active] += 1
            better = value < best[active]
            adv[active[better]], best[active[better]] = proposal[better], value[better]
        return adv, used

    def side(self, query, h, w, smallest=1):
        """The side of this query's square windows."""
        side = int(round(np.sqrt(window_share(self.p_init, query, self.queries) * h * w)))
        return max(1, min(max(side, smallest), h - 1, w - 1))

    def corners(self, n, h, w, side):
        """A random top-left corner per image: (rows, columns), each (n, 1)."""
        return (self.rng.integers(0, h - side + 1, n)[:, None],
                self.rng.integers(0, w - side + 1, n)[:, None])

    @staticmethod
    def window(c, corner, side):
        """The index of each image's side x side window (every channel) at ``corner``."""
        down, across = corner[0] + np.arange(side), corner[1] + np.arange(side)
        return (np.arange(len(down))[:, None, None, None], np.arange(c)[None, :, None, None],
                down[:, None, :, None], across[:, None, None, :])


class _SearchInf(_Search):
    def start(self, clean):
        n, c, _, w = clean.shape
        stripes = self.rng.choice([-self.eps, self.eps], size=(n, c, 1, w))
        return np.clip(clean + stripes.astype(clean.dtype), self.lo, self.hi)

    def propose(self, clean, adv, query):
        """Every channel of one square per image set to its own +-eps."""
        n, c, h, w = clean.shape
        side = self.side(query, h, w)
        at = self.window(c, self.corners(n, h, w, side), side)
        signs = self.rng.choice([-self.eps, self.eps], size=(n, c, 1, 1)).astype(clean.dtype)
        adv[at] = np.clip(clean[at] + signs, self.lo, self.hi)
        return adv


def bump(side: int, transposed: bool = False) -> FloatArray:
    """The L2 attack's unit-norm pattern on a side x side square: a pseudo-Gaussian peak in
    one half, its negative in the other (halves stacked down, or across if ``transposed``).
    A peak on an a x b rectangle is the sum of nested rectangles about its centre, the k-th
    (k = 0, 1, ...) weighted 1 / (k + 1)^2: at a cell d rings out, the weights from d on."""
    def peak(a, b):
        rings = max(a, b) // 2 + 1
        tail = np.cumsum((1.0 / np.arange(1, rings + 1) ** 2)[::-1])[::-1]   # sum from d on
        d = np.maximum(np.abs(np.arange(a) - a // 2)[:, None], np.abs(np.arange(b) - b // 2))
        return tail[d]
    pattern = np.concatenate([peak(side // 2, side), -peak(side - side // 2, side)])
    pattern /= np.sqrt((pattern ** 2).sum())
    return pattern.T if transposed else pattern


def _l2(a, axes):
    return np.sqrt((a ** 2).sum(axis=axes, keepdims=True))


class _SearchL2(_Search):
    def start(self, clean):
        """A grid of bumps of side min(h, w) // 5, centred, each channel's own sign."""
        n, c, h, w = clean.shape
        side = max(1, min(h, w) // 5)
        delta = np.zeros(clean.shape)
        top, left = (h - side * (h // side)) // 2, (w - side * (w // side)) // 2
        for i in range(h // side):
            for j in range(w // side):
                signs = self.rng.choice([-1.0, 1.0], size=(n, c, 1, 1))
                delta[:, :, top + i * side:top + (i + 1) * side,
                      left + j * side:left + (j + 1) * side] = \
                    signs * bump(side, self.rng.random() < 0.5)
        return self.within(clean, delta)

    def within(self, clean, delta):
        """clean + delta rescaled to norm eps, in the clip box."""
        norms = _l2(delta, (1, 2, 3))
        delta = delta * np.divide(self.eps, norms, out=np.zeros_like(norms), where=norms > 0)
        return np.clip(clean + delta.astype(clean.dtype), self.lo, self.hi)

    def propose(self, clean, adv, query):
        """Per image and channel: window 2 emptied, window 1 set to a new bump plus what it
        held (as a unit direction), with the norm windows 1 and 2 held and each channel's
        share of the norm still unused; the whole then rescaled to eps."""
        n, c, h, w = clean.shape
        side = self.side(query, h, w, smallest=3)
        first, second = self.corners(n, h, w, side), self.corners(n, h, w, side)
        delta = adv.astype(np.float64) - clean
        ys, xs = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
        union = np.zeros((n, 1, h, w), bool)
        for top, left in (first, second):
            union[:, 0] |= ((ys >= top[:, :, None]) & (ys < top[:, :, None] + side)
                            & (xs >= left[:, :, None]) & (xs < left[:, :, None] + side))
        held = _l2(delta * union, (2, 3))                               # (n, c, 1, 1)
        spare = np.maximum(self.eps ** 2 - _l2(delta, (1, 2, 3)) ** 2, 0) / c
        at = self.window(c, first, side)
        old = delta[at]
        shapes = np.stack([bump(side), bump(side, True)])[self.rng.integers(0, 2, n)]
        signs = self.rng.choice([-1.0, 1.0], size=(n, c, 1, 1))
        new = shapes[:, None] * signs + old / (_l2(old, (2, 3)) + 1e-10)
        new *= np.sqrt(spare + held ** 2) / _l2(new, (2, 3))
        delta[self.window(c, second, side)] = 0.0
        delta[at] = new
        return self.within(clean, delta)


SEARCHES = {"inf": _SearchInf, 2: _SearchL2}
