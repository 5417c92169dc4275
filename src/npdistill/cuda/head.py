"""A net's dense head in one launch each way: the Dense layers at its end (with their ReLU
and dropout, and the max-pool and Flatten before the first) run as one kernel whose blocks
each own a few images from the pooling to the logits, and the loss or an attack's seeds
("row functions") are computed there from each image's logits. The backward is one kernel
from the logits' gradient to the gradient of the map the pooling read, scattered to the
windows' argmax and multiplied by the derivative of the layer that made that map.

An image's rows are independent, so a block needs no other block's results: it goes layer
to layer with a barrier between. The weights are the DeviceModel's flat parameter buffer
(each Dense layer's W with its bias b as one more row, ``table`` giving where), the layers'
outputs (and dropout masks) one flat buffer at the same offsets.

Row functions (one thread per image, also run alone by ``rows`` where a net has no head):
``CE_HARD`` / ``CE_SOFT`` (nn.softmax.cross_entropy at temperature T: loss, dz, and the
epoch's loss sum and correct count), ``JSMA_SOFTMAX`` / ``JSMA_LOGITS`` (attacks/jsma.py:
success check and backward seeds), ``CW`` (kernels/reference/cw.py's cw_margin).
"""
import math

import numpy as np
from numba import cuda

from ._launch import SIMULATED, THREADS, blocks, is_host, launch
from .fused import activation_derivative, scatter_to_window
from .pool import window_max

HEAD_ROWS = 2 if SIMULATED else 4
NONE, CE_HARD, CE_SOFT, JSMA_SOFTMAX, JSMA_LOGITS, CW = range(6)
FLAT, NHWC = range(2)           # the head's input: (N, D) rows, or a channels-last map
W_OFF, IN, OUT, ACT_OFF, RELU, DROPOUT = range(6)         # columns of the layer table


# ---- row functions: image r's logits z[r] -> what the loss or the attack needs

@cuda.jit(device=True)
def _log_normaliser(z, n, T):
    """(max of z[n] / T, log sum exp(z[n] / T - max))."""
    top = z[n, 0] / T
    for c in range(1, z.shape[1]):
        top = max(top, z[n, c] / T)
    total = top * 0
    for c in range(z.shape[1]):
        total += math.exp(z[n, c] / T - top)
    return top, math.log(total)


@cuda.jit(device=True)
def _argmax(z, n):
    best = 0
    for c in range(1, z.shape[1]):
        if z[n, c] > z[n, best]:
            best = c
    return best


@cuda.jit(device=True)
def _ce_hard(z, n, args, vals):
    labels, loss, dz, totals = args
    T, denom, scale = vals[0], vals[1], vals[2]
    top, lse = _log_normaliser(z, n, T)
    t = labels[n]
    for c in range(z.shape[1]):
        logp = (z[n, c] / T - top) - lse
        p = math.exp(logp)
        if c == t:
            loss[n] = -logp
            p -= 1
        dz[n, c] = p / denom * scale
    cuda.atomic.add(totals, 0, loss[n])
    if _argmax(z, n) == t:
        cuda.atomic.add(totals, 1, 1.0)


@cuda.jit(device=True)
def _ce_soft(z, n, args, vals):
    q, loss, dz, totals, labels = args
    T, denom, scale = vals[0], vals[1], vals[2]
    top, lse = _log_normaliser(z, n, T)
    total = top * 0
    for c in range(z.shape[1]):
        logp = (z[n, c] / T - top) - lse
        total -= q[n, c] * logp
        dz[n, c] = (math.exp(logp) - q[n, c]) / denom * scale
    loss[n] = total
    cuda.atomic.add(totals, 0, total)
    if _argmax(z, n) == labels[n]:
        cuda.atomic.add(totals, 1, 1.0)


@cuda.jit(device=True)
def _jsma(z, n, args, vals, softmax):
    """Stop image n if its target is reached; its seed rows (softmax: p_t (onehot - p) / T;
    logits: onehot and 1 - onehot, S = 2; zeros once stopped)."""
    target, running, success, seeds = args
    T = vals[0]
    k, n_img = z.shape[1], z.shape[0]
    t = target[n]
    best = _argmax(z, n)
    if running[n] and best == t:
        success[n] = 1
        running[n] = 0
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


@cuda.jit(device=True)
def _cw(z, n, args, vals):
    """f(z) = const * max(margin + kappa, 0), its gradient and the success flag."""
    labels, const, loss, dz, success = args
    targeted, kappa = vals[0] != 0, vals[1]
    zero = z[n, 0] * 0
    k = z.shape[1]
    t = labels[n]
    j = -1
    for c in range(k):                 # the best other logit: the label left out, first on ties
        if c != t and (j < 0 or z[n, c] > z[n, j]):
            j = c
    z_label, z_other = z[n, t], z[n, j]
    margin = z_other - z_label if targeted else z_label - z_other
    hinge = margin + kappa
    active = hinge > 0
    loss[n] = const[n] * hinge if active else zero
    step = zero
    if active:
        step = const[n] if targeted else -const[n]
    for c in range(k):
        dz[n, c] = zero
    dz[n, j] = step
    dz[n, t] = -step
    if targeted:
        success[n] = 1 if z_label - kappa > z_other else 0
    else:
        success[n] = 1 if z_label + kappa < z_other else 0


@cuda.jit(device=True)
def _jsma_softmax(z, n, args, vals):
    _jsma(z, n, args, vals, True)


@cuda.jit(device=True)
def _jsma_logits(z, n, args, vals):
    _jsma(z, n, args, vals, False)


@cuda.jit(device=True)
def _no_row(z, n, args, vals):
    pass


_ROW_FUNCTIONS = {NONE: _no_row, CE_HARD: _ce_hard, CE_SOFT: _ce_soft, JSMA_SOFTMAX: _jsma_softmax,
                  JSMA_LOGITS: _jsma_logits, CW: _cw}


def _make_rows(kind):
    row = _ROW_FUNCTIONS[kind]

    @cuda.jit
    def rows_kernel(z, args, vals):
        for n in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
            row(z, n, args, vals)
    return rows_kernel


# ---- the head's passes

@cuda.jit(device=True)
def _pool_flatten(src, size, x0, argmax, row0, rows, tid, step):
    """Max-pool the block's images of the channels-last map src into x0's rows, flattened
    in NCHW order as Flatten does (size 1: Flatten alone); argmax keeps each window's
    place (as kernels/reference/pool.py)."""
    n_img, width = x0.shape
    h, w = src.shape[1] // size, src.shape[2] // size
    for idx in range(tid, rows * width, step):
        n = row0 + idx // width
        if n < n_img:
            k = idx % width
            ch, i, j = k // (h * w), (k // w) % h, k % w
            best, where = window_max(src, n, i, j, ch, size)
            x0[n, k] = best
            argmax[n, i, j, ch] = where
    cuda.syncthreads()


@cuda.jit(device=True)
def _rows_given(src, size, x0, argmax, row0, rows, tid, step):
    pass


@cuda.jit(device=True)
def _write_rows(dx, argmax, act_in, mask_in, flags, n, k, g, n_fwd, zero, one):
    dx[n, k] = g


@cuda.jit(device=True)
def _write_windows(dx, argmax, act_in, mask_in, flags, n, k, g, n_fwd, zero, one):
    """g, the gradient of pooled-and-flattened element k (NCHW order) of image n, to its
    window in dx (S * N, H, W, C), times the derivative of the layer that was pooled."""
    h, w = argmax.shape[1], argmax.shape[2]
    scatter_to_window(dx, n, (k // w) % h, k % w, k // (h * w), g, argmax, act_in, mask_in,
                      flags, zero, one)


@cuda.jit(device=True, inline="always")
def _block_rows():
    """(images per block, the block's first image, thread index, threads): a block of
    (x, HEAD_ROWS) threads owns HEAD_ROWS images."""
    rows = cuda.blockDim.y
    return (rows, cuda.blockIdx.x * rows, cuda.threadIdx.x + cuda.blockDim.x * cuda.threadIdx.y,
            cuda.blockDim.x * rows)


def _make_forward(source, kind):
    gather = _pool_flatten if source == NHWC else _rows_given
    row = _ROW_FUNCTIONS[kind]

    @cuda.jit
    def head_forward(src, size, x0, argmax, params, table, rates, acts, masks, u, logits,
                     args, vals, zero, one):
        n_img = x0.shape[0]
        rows, row0, tid, step = _block_rows()
        gather(src, size, x0, argmax, row0, rows, tid, step)
        for layer in range(table.shape[0]):
            w_off, d_in, d_out = table[layer, W_OFF], table[layer, IN], table[layer, OUT]
            out_off, relu, dropout = table[layer, ACT_OFF], table[layer, RELU], table[layer, DROPOUT]
            in_off = table[max(layer - 1, 0), ACT_OFF]
            for idx in range(tid, rows * d_out, step):
                n = row0 + idx // d_out
                if n < n_img:
                    j = idx % d_out
                    acc = zero
                    for k in range(d_in):
                        x = x0[n, k] if layer == 0 else acts[in_off + n * d_in + k]
                        acc += x * params[w_off + k * d_out + j]
                    acc += params[w_off + d_in * d_out + j]          # the bias row
                    if relu:
                        acc = zero if acc <= zero else acc      # NaN kept, as on the host
                    at = out_off + n * d_out + j
                    if dropout:
                        keep = rates[layer, 1] if u[at] >= rates[layer, 0] else zero
                        masks[at] = keep
                        acc = acc * keep
                    acts[at] = acc
            cuda.syncthreads()
        n = row0 + tid
        if tid < rows and n < n_img:
            row(logits, n, args, vals)
    return head_forward


def _make_backward(target):
    write = _write_windows if target == NHWC else _write_rows

    @cuda.jit
    def head_backward(dz, params, table, acts, masks, deltas, n_fwd, dx, argmax, act_in,
                      mask_in, flags, zero, one):
        # dz (S * n_fwd, K): the gradient of the head's output; deltas: each layer's
        # pre-activation gradient (flat, at S times the acts' offsets); dx: the gradient of
        # the head's input, written when flags[3] (flags: relu, dropout, pool size, write)
        n_rows = dz.shape[0]
        rows, row0, tid, step = _block_rows()
        seeds = n_rows // n_fwd
        last = table.shape[0] - 1
        for layer in range(last, -1, -1):
            d_out, off = table[layer, OUT], table[layer, ACT_OFF]
            relu, dropout = table[layer, RELU], table[layer, DROPOUT]
            above = min(layer + 1, last)
            w_off, d_above, a_off = table[above, W_OFF], table[above, OUT], table[above, ACT_OFF]
            for idx in range(tid, rows * d_out, step):
                n = row0 + idx // d_out
                if n < n_rows:
                    j = idx % d_out
                    if layer == last:
                        g = dz[n, j]
                    else:                       # the layer above's delta times its W^T
                        g = zero
                        for k in range(d_above):
                            g += deltas[a_off * seeds + n * d_above + k] * \
                                params[w_off + j * d_above + k]
                    at = off + (n % n_fwd) * d_out + j
                    deltas[off * seeds + n * d_out + j] = \
                        g * activation_derivative(acts, masks, at, relu, dropout, zero, one)
            cuda.syncthreads()
        if flags[3]:
            d0, w_off, off0, width = table[0, OUT], table[0, W_OFF], table[0, ACT_OFF], table[0, IN]
            for idx in range(tid, rows * width, step):
                n = row0 + idx // width
                if n < n_rows:
                    k = idx % width
                    g = zero
                    for j in range(d0):
                        g += deltas[off0 * seeds + n * d0 + j] * params[w_off + k * d0 + j]
                    write(dx, argmax, act_in, mask_in, flags, n, k, g, n_fwd, zero, one)
    return head_backward


_ROWS = {kind: _make_rows(kind) for kind in (CE_HARD, CE_SOFT, JSMA_SOFTMAX, JSMA_LOGITS, CW)}
_FORWARD = {(source, kind): _make_forward(source, kind) for source in (FLAT, NHWC)
            for kind in _ROW_FUNCTIONS}
_BACKWARD = {target: _make_backward(target) for target in (FLAT, NHWC)}


def _block(rows):
    """(threads (x, HEAD_ROWS), blocks): a block per HEAD_ROWS images."""
    return (max(1, THREADS // HEAD_ROWS), HEAD_ROWS), max(1, -(-rows // HEAD_ROWS))


def rows(kind, z, args, vals, outputs=()):
    """Row function ``kind`` over every row of the logits z (N, K), alone (no head).
    NumPy arrays among z and ``args`` are moved to the device, and those of ``args`` at
    the indices ``outputs`` copied back."""
    if not len(z):
        return
    moved = tuple(cuda.to_device(np.ascontiguousarray(a)) if is_host(a) else a for a in args)
    launch(_ROWS[kind], blocks(len(z)), THREADS, (z, moved, tuple(vals)))
    for i in outputs:
        if is_host(args[i]):
            moved[i].copy_to_host(args[i])


def forward(source, kind, src, size, x0, argmax, params, table, rates, acts, masks, u, logits,
            args=(), vals=()):
    """The head's forward over x0's images (source NHWC: pooled from src first), then row
    function ``kind`` on the logits (a (N, K) view of acts)."""
    threads, grid = _block(len(x0))
    t = x0.dtype.type
    launch(_FORWARD[(source, kind)], grid, threads,
           (src, int(size), x0, argmax, params, table, rates, acts, masks, u, logits,
            tuple(args), tuple(vals), t(0), t(1)))


def backward(target, dz, params, table, acts, masks, deltas, n_fwd, dx, argmax, act_in,
             mask_in, flags):
    """The head's backward from dz (S * n_fwd, K); see head_backward."""
    threads, grid = _block(len(dz))
    t = dz.dtype.type
    launch(_BACKWARD[target], grid, threads,
           (dz, params, table, acts, masks, deltas, int(n_fwd), dx, argmax, act_in, mask_in,
            tuple(int(f) for f in flags), t(0), t(1)))
