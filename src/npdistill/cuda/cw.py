"""The Carlini-Wagner step on the GPU (see kernels/reference/cw.py, the specification).

cw_margin: one thread per image (K logits; cuda/head.py's row function, which
the device loop runs inside the net's head). cw_update: one block per image,
its threads stride over the pixels and reduce the distance in shared memory.
cw_track: one block per image, thread 0 decides and the block copies.
``cw_track_update_kernel`` runs both in one launch for the device-resident L2
loop (cuda/attacks.py), which stops images in place (their ``live`` flag 0)
instead of compacting the batch; the wrappers below pass every image as live.
"""
import math

import numpy as np
from numba import cuda, float64, uint8

from ..kernels.reference.cw import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, adam_step_size
from . import head
from ._launch import THREADS, block_sum, launch



@cuda.jit(device=True)
def _update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm, lr_t, boxmul, lo, hi,
            beta1, beta2, epsilon, row, partial):
    """Image row's Adam step (the block's threads over its pixels): w, m, v, x and dist."""
    tid = cuda.threadIdx.x
    total = 0.0
    for i in range(tid, w.shape[1], cuda.blockDim.x):
        delta = x[row, i] - x0[row, i]
        if norm == 0:
            g = grad_x[row, i] + 2 * delta
        else:
            g = grad_x[row, i]
            if abs(delta) > tau[row]:
                g += 1 if delta > 0 else -1
        s = math.tanh(w[row, i])
        g = g * (boxmul * (1 - s * s)) * mask[row, i]
        m[row, i] = beta1 * m[row, i] + (1 - beta1) * g
        v[row, i] = beta2 * v[row, i] + (1 - beta2) * g * g
        w[row, i] -= lr_t * m[row, i] / (math.sqrt(v[row, i]) + epsilon)
        value = x0[row, i] + mask[row, i] * (boxmul * (math.tanh(w[row, i]) - s0[row, i]))
        value = min(max(value, lo), hi)
        x[row, i] = value
        d = value - x0[row, i]
        if norm == 0:
            total += d * d
        else:
            total += max(abs(d) - tau[row], 0.0)
    total = block_sum(partial, total)
    if tid == 0:
        dist[row] = total


@cuda.jit(device=True)
def _track(x, w, dist, success, step_best, best_dist, best_x, best_w, row, better):
    """Image row's best-so-far bookkeeping (thread 0 decides, the block copies)."""
    if cuda.threadIdx.x == 0:
        ok = success[row] != 0
        if ok and dist[row] < step_best[row]:
            step_best[row] = dist[row]
        better[0] = 1 if ok and dist[row] < best_dist[row] else 0
        if better[0]:
            best_dist[row] = dist[row]
    cuda.syncthreads()
    if better[0]:
        for i in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
            best_x[row, i] = x[row, i]
            best_w[row, i] = w[row, i]
    cuda.syncthreads()


@cuda.jit
def cw_update_kernel(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm, lr_t, boxmul, lo, hi,
                     beta1, beta2, epsilon, live):
    row = cuda.blockIdx.x
    if not live[row]:                      # a stopped image keeps its state (whole block)
        return
    partial = cuda.shared.array(THREADS, float64)
    _update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm, lr_t, boxmul, lo, hi, beta1,
            beta2, epsilon, row, partial)


@cuda.jit
def cw_track_kernel(x, w, dist, success, step_best, best_dist, best_x, best_w, live):
    row = cuda.blockIdx.x
    if not live[row]:
        return
    better = cuda.shared.array(1, uint8)
    _track(x, w, dist, success, step_best, best_dist, best_x, best_w, row, better)


@cuda.jit
def cw_track_update_kernel(x, w, dist, success, step_best, best_dist, best_x, best_w, m, v, s0,
                           x0, grad_x, mask, tau, norm, lr_t, boxmul, lo, hi, beta1, beta2,
                           epsilon, tracked, live, restart):
    """One step's end for image blockIdx.x (the device loop's track, window restart and
    update in one launch): the best-so-far of the image the forward saw (if ``tracked``),
    then, if still ``live``, a new check period (``restart``) and the Adam step."""
    row = cuda.blockIdx.x
    better = cuda.shared.array(1, uint8)
    partial = cuda.shared.array(THREADS, float64)
    if tracked[row]:
        _track(x, w, dist, success, step_best, best_dist, best_x, best_w, row, better)
    if not live[row]:
        return
    if restart and cuda.threadIdx.x == 0:
        step_best[row] = math.inf
    _update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm, lr_t, boxmul, lo, hi, beta1,
            beta2, epsilon, row, partial)


def cw_margin(z, labels, targeted, kappa, const, loss, dz, success):
    """f(z) = max(margin + kappa, 0) per image, its gradient dz and the success flags (the
    row function of cuda/head.py, which a net's head runs in its forward pass)."""
    head.rows(head.CW, z, (labels, const, loss, dz, success), cw_row_values(targeted, kappa, z.dtype),
              outputs=(2, 3, 4))


def cw_row_values(targeted, kappa, dtype):
    """The CW row function's numbers: (targeted, kappa in the logits' dtype)."""
    return (bool(targeted), np.dtype(dtype).type(kappa))


def cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, *, norm, step, lr, boxmul, lo, hi,
              beta1=ADAM_BETA1, beta2=ADAM_BETA2, epsilon=ADAM_EPSILON):
    """One Adam step on w for the batch; writes the next image and its distance."""
    lr_t = adam_step_size(lr, step, beta1, beta2)
    if len(w):
        launch(cw_update_kernel, len(w), THREADS,
               (w, m, v, s0, x0, grad_x, mask, tau, x, dist, int(norm), float(lr_t),
                float(boxmul), float(lo), float(hi), float(beta1), float(beta2), float(epsilon),
               np.ones(len(w), np.uint8)), outputs=(0, 1, 2, 8, 9))


def cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w):
    """Best-so-far bookkeeping of the L2 attack, in place."""
    if len(x):
        launch(cw_track_kernel, len(x), THREADS,
               (x, w, dist, success, step_best, best_dist, best_x, best_w,
                np.ones(len(x), np.uint8)), outputs=(4, 5, 6, 7))
