"""The attacks' iteration loops on the GPU: JSMA's (the images, the search domain
and the bookkeeping) and a CW L2 round's (the tanh-space variable, Adam's state,
the best-so-far tracking) stay on the device from the first iteration to the last.

An iteration is the forward pass, ``_jsma_seeds`` (success check, the backward
seeds), the backward pass, ``_saliency_inputs`` (alpha and beta in NCHW pixel
order, signs set for the search), the pair search of cuda/saliency.py and
``_jsma_apply`` (move both pixels, shrink the domain, count). No array crosses
to the host inside the loop; every CHECK_EVERY iterations one byte per image
(the running flags) is read to stop once no image runs. An image that stops
(target reached, or no admissible pair) has its domain emptied, so that the
remaining iterations cost it no pair search and change nothing.

The semantics are attacks/jsma.py's ``_attack_chunk``, which the tests hold this
loop to: all rows run every pass (a stopped row's seeds are zero), the
batch is not compacted, which keeps the passes' shapes fixed.
"""
import math

import numpy as np
from numba import cuda, uint8

from ..attacks.tanh_space import TanhSpace
from ..kernels.cw import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, L2, adam_step_size, cw_stalled
from . import cw, elementwise
from ._launch import THREADS, blocks
from .device_model import device_empty
from .saliency import pair_search_kernel

CHECK_EVERY = 8


@cuda.jit
def _jsma_seeds(z, target, softmax, T, running, success, domain, seeds):
    """One block per image: stop it if the target is reached; write its seed rows
    (softmax: p_t (onehot - p) / T; logits: onehot and 1 - onehot, S = 2)."""
    n = cuda.blockIdx.x
    n_img, k = z.shape
    stop = cuda.shared.array(1, uint8)
    if cuda.threadIdx.x == 0:
        t = target[n]
        best = 0
        for c in range(1, k):
            if z[n, c] > z[n, best]:
                best = c
        stop[0] = 0
        if running[n] and best == t:
            success[n] = 1
            running[n] = 0
            stop[0] = 1
        live = running[n] != 0
        if softmax:
            total = 0.0
            for c in range(k):
                total += math.exp((z[n, c] - z[n, best]) / T)
            p_t = math.exp((z[n, t] - z[n, best]) / T) / total
            for c in range(k):
                p_c = math.exp((z[n, c] - z[n, best]) / T) / total
                seeds[n, c] = p_t * ((1.0 if c == t else 0.0) - p_c) / T if live else 0.0
        else:
            for c in range(k):
                hit = 1.0 if c == t else 0.0
                seeds[n, c] = hit if live else 0.0
                seeds[n_img + n, c] = 1.0 - hit if live else 0.0
    cuda.syncthreads()
    if stop[0]:
        for p in range(cuda.threadIdx.x, domain.shape[1], cuda.blockDim.x):
            domain[n, p] = 0


@cuda.jit
def _saliency_inputs(dx, n_img, sign, softmax, alpha, beta):
    """alpha, beta (N, M) in NCHW pixel order from the backward's channels-last dx
    (S*N, H, W, C); beta = -alpha for the softmax; both times ``sign``."""
    m = alpha.shape[1]
    h_, w_ = dx.shape[1], dx.shape[2]
    for i in range(cuda.grid(1), n_img * m, cuda.gridsize(1)):
        n, p = i // m, i % m
        c, rest = p // (h_ * w_), p % (h_ * w_)
        a = dx[n, rest // w_, rest % w_, c]
        b = -a if softmax else dx[n_img + n, rest // w_, rest % w_, c]
        alpha[n, p] = sign * a
        beta[n, p] = sign * b


@cuda.jit
def _jsma_apply(x, domain, pairs, running, iterations, theta, lo, hi):
    """One thread per image: move the picked pixels by theta (clipped), drop those at
    the bound from the domain; a running image without an admissible pair stops."""
    n_img, m = x.shape
    for n in range(cuda.grid(1), n_img, cuda.gridsize(1)):
        if not running[n]:
            continue
        if pairs[n, 0] < 0:
            running[n] = 0
            for p in range(m):
                domain[n, p] = 0
            continue
        for j in range(2):
            p = pairs[n, j]
            value = min(max(x[n, p] + theta, lo), hi)
            x[n, p] = value
            if (theta > 0 and value >= hi) or (theta < 0 and value <= lo):
                domain[n, p] = 0
        iterations[n] += 1


def jsma_chunk(net, x, target, domain, *, theta, max_iter, on, T, lo, hi):
    """JSMA on one batch with every iteration on the device.

    net : DeviceModel; x : (N, C, H, W) host images (the model's dtype);
    target : (N,) int64; domain : (N, M) bool initial search domain (NCHW order).
    Returns host (x_adv shaped like x, success (N,) bool, iterations (N,) int64).
    """
    n, shape = len(x), x.shape
    flat = np.ascontiguousarray(x.reshape(n, -1))
    m, dtype = flat.shape[1], flat.dtype
    softmax = on == "softmax"
    x_d = cuda.to_device(flat)
    image = device_empty((n,) + shape[2:] + shape[1:2], dtype)           # channels-last
    target_d = cuda.to_device(np.ascontiguousarray(target, dtype=np.int64))
    domain_d = cuda.to_device(np.ascontiguousarray(domain, dtype=np.uint8))
    running = cuda.to_device(np.ones(n, np.uint8))
    success = cuda.to_device(np.zeros(n, np.uint8))
    iterations = cuda.to_device(np.zeros(n, np.int64))
    seeds = alpha = beta = None
    pairs = device_empty((n, 2), np.int64)
    grid = blocks(n)
    for it in range(max_iter + 1):
        elementwise.flat_to_nhwc(x_d, image)
        z = net.forward(image)
        if seeds is None:
            k = z.shape[1]
            seeds = device_empty(((1 if softmax else 2) * n, k), z.dtype)
            alpha, beta = device_empty((n, m), dtype), device_empty((n, m), dtype)
        _jsma_seeds[n, THREADS](z, target_d, softmax, float(T), running, success, domain_d, seeds)
        if it == max_iter or (it % CHECK_EVERY == 0 and not running.copy_to_host().any()):
            break
        dx = net.backward(seeds, param_grads=False)
        _saliency_inputs[blocks(n * m), THREADS](dx, n, dtype.type(1 if theta > 0 else -1),
                                                 softmax, alpha, beta)
        pair_search_kernel[n, THREADS](alpha, beta, domain_d, pairs)
        _jsma_apply[grid, THREADS](x_d, domain_d, pairs, running, iterations, dtype.type(theta),
                                   dtype.type(lo), dtype.type(hi))
    return (x_d.copy_to_host().reshape(shape), success.copy_to_host().astype(bool),
            iterations.copy_to_host())


@cuda.jit
def _cw_restart_window(step_best, live):
    """A check period starts: forget the successes of the last one (live images)."""
    for n in range(cuda.grid(1), len(live), cuda.gridsize(1)):
        if live[n]:
            step_best[n] = math.inf


def cw_l2_round(net, x0, w_start, shape, labels, const, targeted, kappa, *, max_iterations, lr,
                abort_early, check_every, window, lo, hi, best_dist, best_x, best_w, iterations):
    """One binary-search round of CW L2 (attacks/cw.py's ``_l2_round``, whose arguments and
    results it takes and gives) with every Adam step on the device. A stopped image keeps
    its row (its flag is cleared: the passes keep their shapes) and changes no more.
    Every check step (each ``check_every``-th) reads each image's loss and distance to
    apply the host's abort rule (kernels.cw_stalled) and writes the flags back.

    x0, w_start (N, M) host arrays flattened in NCHW order, shape their (C, H, W).
    """
    n, m = x0.shape
    dtype = x0.dtype
    start = TanhSpace.start(x0, w_start, np.ones_like(x0), np.zeros(n, dtype),
                            const.astype(dtype), labels, lo=lo, hi=hi)
    d = {name: cuda.to_device(a) for name, a in dict(
        x0=x0, x=start.x, w=start.w, s0=start.s0, m=start.m, v=start.v, mask=start.mask,
        tau=start.tau, const=start.const, labels=np.ascontiguousarray(labels, dtype=np.int64),
        dist=start.distances(L2).astype(dtype), step_best=np.full(n, np.inf, dtype),
        best_dist=best_dist, best_x=best_x, best_w=best_w, live=np.ones(n, np.uint8)).items()}
    live, previous = np.ones(n, np.uint8), np.full(n, np.inf)
    image = device_empty((n,) + shape[1:] + shape[:1], dtype)                         # channels-last
    loss, success = device_empty((n,), dtype), device_empty((n,), np.uint8)
    grad = device_empty((n, m), dtype)
    dz = None
    grid = blocks(n)
    for it in range(max_iterations):
        elementwise.flat_to_nhwc(d["x"], image)
        z = net.forward(image)
        if dz is None:
            dz = device_empty(z.shape, z.dtype)
        cw.cw_margin_kernel[blocks(n), THREADS](z, d["labels"], bool(targeted), dtype.type(kappa),
                                          d["const"], loss, dz, success, dtype.type(0))
        elementwise.nhwc_to_flat(net.backward(dz, param_grads=False), grad)
        cw.cw_track_kernel[n, THREADS](d["x"], d["w"], d["dist"], success, d["step_best"],
                                       d["best_dist"], d["best_x"], d["best_w"], d["live"])
        iterations += live
        if it % check_every == 0:
            if abort_early:
                rows = np.flatnonzero(live)
                total = loss.copy_to_host()[rows].astype(np.float64) + \
                    d["dist"].copy_to_host()[rows]
                stalled = rows[cw_stalled(total, previous[rows], abort_early)]
                previous[rows] = total
                if stalled.size:
                    live[stalled] = 0
                    d["live"].copy_to_device(live)
                    if not live.any():
                        break
            if window:
                _cw_restart_window[grid, THREADS](d["step_best"], d["live"])
        cw.cw_update_kernel[n, THREADS](d["w"], d["m"], d["v"], d["s0"], d["x0"], grad, d["mask"],
                                        d["tau"], d["x"], d["dist"], L2,
                                        adam_step_size(lr, it + 1), float(start.boxmul),
                                        float(lo), float(hi), ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON,
                                        d["live"])
    best_dist[...] = d["best_dist"].copy_to_host()
    best_x[...] = d["best_x"].copy_to_host()
    best_w[...] = d["best_w"].copy_to_host()
    return d["step_best"].copy_to_host(), d["w"].copy_to_host()
