"""The Carlini-Wagner step's kernels: the margin loss, the Adam update in tanh space and the
best-so-far bookkeeping (reference/cw.py is their specification; ext/cw.pyx), and the
formulas the attacks share with it (Adam's constants and step size, x(w), its preimage and
the start point, the distance, the stall rule)."""
import numpy as np

from .backends import implementation
from .layout import contiguous
from .reference.cw import (ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, L2, LINF,  # noqa: F401
                           adam_step_size, cw_stalled, distance, image_of,
                           penalty_gradient, preimage, start)      # (the attacks')

CW_L2, CW_LINF = L2, LINF


def cw_margin(z, labels, targeted, kappa, const, loss, dz, success):
    """Carlini & Wagner's f_6 on logits z (N, K): fills loss = const * f (N,),
    dz = d loss / dz (N, K) and success (N,) uint8. See kernels/reference/cw.py."""
    dtype = z.dtype
    contiguous("z", z, dtype, 2)
    contiguous("labels", labels, np.int64, 1)
    for name, a in (("const", const), ("loss", loss)):
        contiguous(name, a, dtype, 1)
    contiguous("dz", dz, dtype, 2)
    contiguous("success", success, np.uint8, 1)
    implementation("cw").cw_margin(z, labels, bool(targeted), float(kappa), const, loss, dz,
                                   success)


def cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, *, norm, step, lr, boxmul, lo, hi):
    """One Adam step of the CW attack on (N, M) arrays, in place. See kernels/reference/cw.py."""
    dtype = w.dtype
    for name, a in (("w", w), ("m", m), ("v", v), ("s0", s0), ("x0", x0), ("grad_x", grad_x),
                    ("mask", mask), ("x", x)):
        contiguous(name, a, dtype, 2)
        if a.shape != w.shape:
            raise ValueError(f"{name} must have shape {w.shape}, got {a.shape}")
    contiguous("tau", tau, dtype, 1)
    contiguous("dist", dist, dtype, 1)
    implementation("cw").cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm=norm,
                                   step=int(step), lr=float(lr), boxmul=float(boxmul),
                                   lo=float(lo), hi=float(hi), beta1=ADAM_BETA1,
                                   beta2=ADAM_BETA2, epsilon=ADAM_EPSILON)


def cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w):
    """Best-so-far bookkeeping of CW L2, in place. See kernels/reference/cw.py."""
    dtype = x.dtype
    for name, a in (("x", x), ("w", w), ("best_x", best_x), ("best_w", best_w)):
        contiguous(name, a, dtype, 2)
        if a.shape != x.shape:
            raise ValueError(f"{name} must have shape {x.shape}, got {a.shape}")
    for name, a in (("dist", dist), ("step_best", step_best), ("best_dist", best_dist)):
        contiguous(name, a, dtype, 1)
    contiguous("success", success, np.uint8, 1)
    implementation("cw").cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w)
