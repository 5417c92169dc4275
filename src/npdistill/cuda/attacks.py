"""The attacks' iteration loops on the GPU: JSMA's (the images, the search domain
and the bookkeeping) and a CW L2 round's (the tanh-space variable, Adam's state,
the best-so-far tracking) stay on the device from the first iteration to the last.

A JSMA iteration is three steps: the forward pass, whose head (cuda/head.py) checks
success and writes the backward seeds; the backward pass; ``_jsma_search_apply``, one
block per image reading alpha and beta straight from the input gradient (NCHW pixel
order, signs set for the search), searching the pair (cuda/saliency.py) and moving both
pixels. The images stay channels-last, as the passes take them. No array crosses to the
host inside the loop; every CHECK_EVERY iterations one byte per image (the running flags)
is read to stop once no image runs. An image that stops (target reached, or no admissible
pair) costs no more pair search and changes nothing.

A CW L2 step is three too: the forward pass with the margin loss in its head, the
backward pass, and ``cw.cw_track_update_kernel`` (the best-so-far of the image just seen,
then the Adam step). Its state is kept channels-last as well.

The semantics are attacks/jsma.py's ``_attack_chunk`` and attacks/cw/l2.py's ``_l2_round``,
which the tests hold these loops to: all rows run every pass (a stopped row's seeds are
zero), the batch is not compacted, which keeps the passes' shapes fixed.
"""
from dataclasses import dataclass

import numpy as np
from numba import cuda, float64, int64

from ..kernels.reference.cw import (ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, L2, adam_step_size,
                                   cw_stalled, distance, start)
from . import cw, head
from ._launch import THREADS
from .stages import device_empty
from .saliency import make_search

CHECK_EVERY = 8


@cuda.jit(device=True, inline="always")
def _from_gradient(dx, g, row, p):
    """(alpha, beta) of NCHW pixel p from the backward's channels-last dx (S*N, H, W, C):
    g = (images N, sign, softmax); beta = -alpha for the softmax; both times sign."""
    n_img, sign, softmax = g
    h, w = dx.shape[1], dx.shape[2]
    c, rest = p // (h * w), p % (h * w)
    a = dx[row, rest // w, rest % w, c]
    b = -a if softmax else dx[n_img + row, rest // w, rest % w, c]
    return sign * a, sign * b


_search_gradient = make_search(_from_gradient)


@cuda.jit
def _jsma_search_apply(dx, g, domain, running, x, iterations, theta, lo, hi):
    """One block per running image: its best pair, then (thread 0) both pixels moved by
    theta (clipped), those at the bound dropped from the domain; no admissible pair stops it."""
    row = cuda.blockIdx.x
    if not running[row]:
        return
    scores = cuda.shared.array(THREADS, float64)
    ps = cuda.shared.array(THREADS, int64)
    qs = cuda.shared.array(THREADS, int64)
    p, q = _search_gradient(dx, g, domain, row, scores, ps, qs)
    if cuda.threadIdx.x != 0:
        return
    if p < 0:
        running[row] = 0
        return
    h, w = x.shape[1], x.shape[2]
    for j in range(2):
        pixel = p if j == 0 else q
        c, rest = pixel // (h * w), pixel % (h * w)
        value = min(max(x[row, rest // w, rest % w, c] + theta, lo), hi)
        x[row, rest // w, rest % w, c] = value
        if (theta > 0 and value >= hi) or (theta < 0 and value <= lo):
            domain[row, pixel] = 0
    iterations[row] += 1


def jsma_chunk(net, x, target, domain, *, theta, max_iter, on, T, lo, hi):
    """JSMA on one batch with every iteration on the device.

    net : DeviceModel; x : (N, C, H, W) host images (the model's dtype);
    target : (N,) int64; domain : (N, M) bool initial search domain (NCHW order).
    Returns host (x_adv shaped like x, success (N,) bool, iterations (N,) int64).
    """
    n, dtype = len(x), x.dtype
    softmax = on == "softmax"
    image = net.to_device_images(x)                                     # channels-last
    target_d = cuda.to_device(np.ascontiguousarray(target, dtype=np.int64))
    domain_d = cuda.to_device(np.ascontiguousarray(domain, dtype=np.uint8))
    running = cuda.to_device(np.ones(n, np.uint8))
    success = cuda.to_device(np.zeros(n, np.uint8))
    iterations = cuda.to_device(np.zeros(n, np.int64))
    seeds = device_empty(((1 if softmax else 2) * n, net.model.num_classes), dtype)
    row = (head.JSMA_SOFTMAX if softmax else head.JSMA_LOGITS,
           (target_d, running, success, seeds), (float(T),))
    g = (n, dtype.type(1 if theta > 0 else -1), softmax)
    for it in range(max_iter + 1):
        net.forward(image, row=row)
        if it == max_iter or (it % CHECK_EVERY == 0 and not running.copy_to_host().any()):
            break
        dx = net.backward(seeds, param_grads=False)
        _jsma_search_apply[n, THREADS](dx, g, domain_d, running, image, iterations,
                                       dtype.type(theta), dtype.type(lo), dtype.type(hi))
    return (image.copy_to_host().transpose(0, 3, 1, 2).reshape(x.shape),
            success.copy_to_host().astype(bool), iterations.copy_to_host())


def _channels_last(a, shape):
    """(N, M) rows in NCHW order, shape (C, H, W) -> the same rows in NHWC order."""
    return np.ascontiguousarray(a.reshape((len(a),) + shape).transpose(0, 2, 3, 1)).reshape(len(a), -1)


def _channels_first(a, shape):
    """The inverse of _channels_last."""
    c, h, w = shape
    return np.ascontiguousarray(a.reshape(len(a), h, w, c).transpose(0, 3, 1, 2)).reshape(len(a), -1)


@dataclass
class _DeviceRound:
    """A CW L2 round's state on the device: per image, its rows of the clean image, the
    current image, w, tanh(w0), Adam's m and v, the mask, the best example and its w (each
    (n, M), channels-last); tau, c, the label, the distance, the round's and the overall
    best distance; the live flags (this step's and the next's)."""
    x0: object
    x: object
    w: object
    s0: object
    m: object
    v: object
    mask: object
    best_x: object
    best_w: object
    tau: object
    const: object
    labels: object
    dist: object
    step_best: object
    best_dist: object
    live: object
    live_next: object

    @classmethod
    def start(cls, x0, w_start, shape, labels, const, settings, best):
        n, dtype = len(x0), x0.dtype
        mask, tau = np.ones_like(x0), np.zeros(n, dtype)
        s0, w, x = start(x0, w_start, mask, settings.lo, settings.hi)
        rows = {name: _channels_last(a, shape) for name, a in dict(
            x0=x0, x=x, w=w, s0=s0, m=np.zeros_like(x0), v=np.zeros_like(x0), mask=mask,
            best_x=best.x, best_w=best.w).items()}
        return cls(**{name: cuda.to_device(a) for name, a in dict(
            rows, tau=tau, const=const.astype(dtype),
            labels=np.ascontiguousarray(labels, dtype=np.int64),
            dist=distance(x, x0, tau, L2).astype(dtype), step_best=np.full(n, np.inf, dtype),
            best_dist=best.dist, live=np.ones(n, np.uint8),
            live_next=np.ones(n, np.uint8)).items()})


def cw_l2_round(net, x0, w_start, shape, labels, const, targeted, kappa, settings, best,
                iterations):
    """One binary-search round of CW L2 (attacks/cw/l2.py's ``_l2_round``, whose arguments and
    results it takes and gives) with every Adam step on the device. A stopped image keeps
    its row (its flag is cleared: the passes keep their shapes) and changes no more.
    Every check step (each ``settings.check_every``-th) reads each image's loss and
    distance to apply the host's abort rule (kernels.cw_stalled) and writes the flags back.

    x0, w_start (N, M) host arrays flattened in NCHW order, shape their (C, H, W).
    """
    n, m = x0.shape
    dtype = x0.dtype
    lo, hi, check_every = settings.lo, settings.hi, settings.check_every
    d = _DeviceRound.start(x0, w_start, shape, labels, const, settings, best)
    live, previous = np.ones(n, np.uint8), np.full(n, np.inf)
    image = d.x.reshape((n,) + shape[1:] + shape[:1])                      # channels-last
    loss, success = device_empty((n,), dtype), device_empty((n,), np.uint8)
    dz = device_empty((n, net.model.num_classes), dtype)
    row = (head.CW, (d.labels, d.const, loss, dz, success),
           cw.cw_row_values(targeted, kappa, dtype))
    for it in range(settings.max_iterations):
        net.forward(image, row=row)
        grad = net.backward(dz, param_grads=False).reshape(n, m)
        iterations += live
        tracked, stop = d.live, False
        restart = bool(settings.window) and it % check_every == 0
        if it % check_every == 0 and settings.abort_early:
            rows_live = np.flatnonzero(live)
            total = loss.copy_to_host()[rows_live].astype(np.float64) + \
                d.dist.copy_to_host()[rows_live]
            stalled = rows_live[cw_stalled(total, previous[rows_live], settings.abort_early)]
            previous[rows_live] = total
            if stalled.size:            # tracked at this step, then no longer updated
                live[stalled] = 0
                d.live_next.copy_to_device(live)
                d.live, d.live_next = d.live_next, d.live
                stop = not live.any()
        cw.cw_track_update_kernel[n, THREADS](
            d.x, d.w, d.dist, success, d.step_best, d.best_dist, d.best_x, d.best_w, d.m, d.v,
            d.s0, d.x0, grad, d.mask, d.tau, L2, adam_step_size(settings.lr, it + 1),
            float((hi - lo) / 2), float(lo), float(hi), ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON,
            tracked, d.live, restart)
        if stop:
            break
    best.dist[...] = d.best_dist.copy_to_host()
    best.x[...] = _channels_first(d.best_x.copy_to_host(), shape)
    best.w[...] = _channels_first(d.best_w.copy_to_host(), shape)
    return d.step_best.copy_to_host(), _channels_first(d.w.copy_to_host(), shape)
