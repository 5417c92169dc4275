# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Carlini-Wagner inner step, the compiled twin of npdistill/kernels/reference/cw.py.

Two passes over each image's pixels do what the reference does in a dozen
array expressions: the penalty's gradient, the chain rule through tanh and the
Adam update; then the next image and its distance. Parallel over images. The
tanh between them is NumPy's vectorised loop: libm's scalar tanh, called per
pixel, made this step about ten times slower.
"""
from cython.parallel cimport prange
from libc.math cimport fabs, pow, sqrt, sqrtf
from libc.string cimport memcpy
from _types cimport floating

import numpy as np

DEF L2 = 0


def cw_margin(const floating[:, ::1] z,            # IN  (N, K) logits
              const long long[::1] labels,         # IN  (N,) targets or true classes
              bint targeted, double kappa,
              const floating[::1] const_,          # IN  (N,) weight c of f
              floating[::1] loss,                  # OUT (N,) c * f
              floating[:, ::1] dz,                 # OUT (N, K)
              unsigned char[::1] success):         # OUT (N,)
    cdef Py_ssize_t N = z.shape[0], K = z.shape[1], n, k, j
    cdef floating z_label, z_other, hinge, step, kap = <floating>kappa
    for n in prange(N, nogil=True, schedule="static"):
        j = -1
        z_other = 0
        for k in range(K):              # best other logit, first on ties, label excluded
            dz[n, k] = 0
            if k != labels[n] and (j < 0 or z[n, k] > z_other):
                j = k
                z_other = z[n, k]
        z_label = z[n, labels[n]]
        if targeted:
            hinge = z_other - z_label + kap
            success[n] = z_label - kap > z_other
        else:
            hinge = z_label - z_other + kap
            success[n] = z_label + kap < z_other
        if hinge > 0:
            loss[n] = const_[n] * hinge
            step = const_[n] if targeted else -const_[n]
            dz[n, j] = step
            dz[n, labels[n]] = -step
        else:
            loss[n] = 0


cdef inline floating _sqrt(floating a) noexcept nogil:
    if floating is float:
        return sqrtf(a)
    else:
        return sqrt(a)


def cw_update(floating[:, ::1] w,                  # INOUT (N, M) tanh-space variable
              floating[:, ::1] m,                  # INOUT Adam's first moment
              floating[:, ::1] v,                  # INOUT Adam's second moment
              const floating[:, ::1] s0,           # IN    tanh of the clean image's preimage
              const floating[:, ::1] x0,           # IN    clean image
              const floating[:, ::1] grad_x,       # IN    d(c * f)/dx at x
              const floating[:, ::1] mask,         # IN    1 = may change, 0 = frozen at x0
              const floating[::1] tau,             # IN    (N,) L-inf threshold
              floating[:, ::1] x,                  # INOUT current image in, next image out
              floating[::1] dist,                  # OUT   (N,) next image's penalty
              int norm, long step, double lr, double boxmul, double lo, double hi,
              double beta1, double beta2, double epsilon):   # Adam's: kernels/reference/cw.py
    cdef Py_ssize_t N = w.shape[0], M = w.shape[1], n, i
    cdef floating b1 = <floating>beta1, b2 = <floating>beta2, eps = <floating>epsilon
    cdef floating bm = <floating>boxmul, low = <floating>lo, high = <floating>hi
    cdef floating lr_t = <floating>(lr * sqrt(1 - pow(beta2, step)) / (1 - pow(beta1, step)))
    cdef floating d, g, xn, total, t, mi, vi
    cdef bint l2 = norm == L2
    tanh_w = np.tanh(np.asarray(w))
    cdef floating[:, ::1] s = tanh_w
    for n in prange(N, nogil=True, schedule="static"):
        t = tau[n]
        for i in range(M):
            d = x[n, i] - x0[n, i]
            if l2:
                g = grad_x[n, i] + 2 * d
            elif fabs(d) > t:
                g = grad_x[n, i] + (1 if d > 0 else -1)
            else:
                g = grad_x[n, i]
            g = g * (bm * (1 - s[n, i] * s[n, i])) * mask[n, i]
            mi = b1 * m[n, i] + (1 - b1) * g
            vi = b2 * v[n, i] + (1 - b2) * g * g
            m[n, i] = mi
            v[n, i] = vi
            w[n, i] = w[n, i] - lr_t * mi / (_sqrt(vi) + eps)
    np.tanh(np.asarray(w), out=tanh_w)
    for n in prange(N, nogil=True, schedule="static"):
        total = 0
        t = tau[n]
        for i in range(M):
            xn = x0[n, i] + mask[n, i] * (bm * (s[n, i] - s0[n, i]))
            if xn < low:
                xn = low
            elif xn > high:
                xn = high
            x[n, i] = xn
            d = xn - x0[n, i]
            if l2:
                total = total + d * d
            elif fabs(d) > t:
                total = total + fabs(d) - t
        dist[n] = total


def cw_track(const floating[:, ::1] x,             # IN    (N, M) images just evaluated
             const floating[:, ::1] w,             # IN    (N, M) their tanh-space variables
             const floating[::1] dist,             # IN    (N,) their distances
             const unsigned char[::1] success,     # IN    (N,)
             floating[::1] step_best,              # INOUT (N,) best of this binary-search step
             floating[::1] best_dist,              # INOUT (N,) best over the attack
             floating[:, ::1] best_x,              # INOUT (N, M) the best examples
             floating[:, ::1] best_w):             # INOUT (N, M) and their w
    cdef Py_ssize_t N = x.shape[0], M = x.shape[1], n
    for n in prange(N, nogil=True, schedule="static"):
        if success[n]:
            if dist[n] < step_best[n]:
                step_best[n] = dist[n]
            if dist[n] < best_dist[n]:
                best_dist[n] = dist[n]
                memcpy(&best_x[n, 0], &x[n, 0], M * sizeof(floating))
                memcpy(&best_w[n, 0], &w[n, 0], M * sizeof(floating))
