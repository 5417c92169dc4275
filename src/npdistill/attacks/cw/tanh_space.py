"""The Carlini-Wagner tanh-space solver's state: a set of images optimised together.

x(w) = x0 + mask * boxmul * (tanh(w) - s0), s0 = tanh(w0), w0 the preimage of x0
(kernels/reference/cw.py says why), clipped into [lo, hi]; Adam's moments m and v per pixel.
``take(rows)`` keeps the images still running, so that every pass runs only live ones.
"""
from dataclasses import dataclass, fields, replace

import numpy as np

from ... import kernels
from ...kernels.cw import preimage

__all__ = ["TanhSpace", "preimage"]


@dataclass
class TanhSpace:
    """Row i of every array is image ``idx[i]`` of the batch the attack started with.

    x0, s0, w, m, v, mask, x : (n, M); tau, const, dist : (n,) in x0's dtype; labels (n,)
    int64; step_best, best_dist, best_x, best_w: the L2 round's best-so-far tracking,
    compacted with the rest (None where unused).
    """
    idx: np.ndarray
    x0: np.ndarray
    s0: np.ndarray
    w: np.ndarray
    m: np.ndarray
    v: np.ndarray
    mask: np.ndarray
    tau: np.ndarray
    const: np.ndarray
    labels: np.ndarray
    x: np.ndarray
    dist: np.ndarray
    lo: float
    hi: float
    step_best: np.ndarray | None = None
    best_dist: np.ndarray | None = None
    best_x: np.ndarray | None = None
    best_w: np.ndarray | None = None

    @classmethod
    def start(cls, x0, w, mask, tau, const, labels, *, lo, hi, **tracking):
        """Images x0 (n, M) from ``w`` (None: from x0 itself), Adam's moments at 0."""
        s0, w, x = kernels.cw.start(x0, w, mask, lo, hi)
        return cls(idx=np.arange(len(x0)), x0=x0, s0=s0, w=w, m=np.zeros_like(x0),
                   v=np.zeros_like(x0), mask=mask, tau=tau, const=const, labels=labels, x=x,
                   dist=np.empty(len(x0), x0.dtype), lo=lo, hi=hi, **tracking)

    @property
    def boxmul(self):
        return (self.hi - self.lo) / 2

    def take(self, rows):
        """The state of the images ``rows`` (a boolean mask or indices) only."""
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)
                                if isinstance(getattr(self, f.name), np.ndarray)})

    def distances(self, norm):
        """Each image's penalty: squared L2 of x - x0, or the L-inf surrogate above tau."""
        return kernels.cw.distance(self.x, self.x0, self.tau, norm)

    def step(self, model, shape, targeted, kappa, *, grad=True):
        """Forward the current images: (loss = c f, success as uint8, and with ``grad``
        the gradient d(c f)/dx, flattened)."""
        n = len(self.idx)
        z = np.ascontiguousarray(model.forward(self.x.reshape((n,) + shape)))
        loss = np.empty(n, z.dtype)
        dz = np.empty_like(z)
        success = np.empty(n, np.uint8)
        kernels.cw_margin(z, self.labels, targeted, kappa, self.const, loss, dz, success)
        grad_x = None
        if grad:
            # where f is 0 (the goal met with margin kappa) d(c f)/dx is exactly 0: only
            # the other images go backward (after a first success, often most of them)
            live = np.flatnonzero(dz.any(axis=1))
            if len(live) == n:
                grad_x = np.ascontiguousarray(model.backward(dz, param_grads=False)).reshape(n, -1)
            else:
                grad_x = np.zeros((n, self.x.shape[1]), self.x.dtype)
                if len(live):
                    grad_x[live] = model.backward(dz[live], param_grads=False,
                                                  rows=live).reshape(len(live), -1)
        return loss, success, grad_x

    def update(self, grad_x, norm, t, lr):
        """One Adam step on w (in place), the next x and its distance."""
        kernels.cw_update(self.w, self.m, self.v, self.s0, self.x0, grad_x, self.mask, self.tau,
                          self.x, self.dist, norm=norm, step=t, lr=lr, boxmul=self.boxmul,
                          lo=self.lo, hi=self.hi)
