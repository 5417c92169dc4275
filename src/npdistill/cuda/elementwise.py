"""Elementwise kernels of the GPU network: ReLU, dropout, Normalize, the NCHW flatten,
tempered softmax cross-entropy and the SGD step. Their specification is what the CPU path
runs: nn.layers.ReLU, Dropout and Normalize, nn.softmax.cross_entropy, nn.optim.momentum_step; the
device plumbing (flatten, batch gather, totals) kernels/elementwise.py."""
import math

from numba import cuda

from ._launch import THREADS, blocks, launch


@cuda.jit
def _relu_forward(x, y, mask, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        positive = v > 0
        y[i] = v if positive else zero
        mask[i] = 1 if positive else 0


@cuda.jit
def _mask_backward(dy, mask, dx):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = dy[i] * mask[i % mask.size]


@cuda.jit
def _channel_affine(x, shift, scale, y):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        y[i] = (x[i] - shift[i % shift.size]) * scale[i % scale.size]


@cuda.jit
def _dropout_forward(x, u, rate, scale, y, mask, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        keep = scale if u[i] >= rate else zero
        mask[i] = keep
        y[i] = x[i] * keep


@cuda.jit
def _nhwc_to_flat(x, out):
    n_img, h, w, c = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        ch = idx % c
        xx = (idx // c) % w
        y = (idx // (c * w)) % h
        n = idx // (c * w * h)
        out[n, (ch * h + y) * w + xx] = x[n, y, xx, ch]


@cuda.jit
def _flat_to_nhwc(dy, out):
    n_img, h, w, c = out.shape
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ch = idx % c
        xx = (idx // c) % w
        y = (idx // (c * w)) % h
        n = idx // (c * w * h)
        out[n, y, xx, ch] = dy[n, (ch * h + y) * w + xx]


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


@cuda.jit
def _softmax_ce_hard(z, labels, T, denom, scale, loss, dz):
    for n in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        top, lse = _log_normaliser(z, n, T)
        t = labels[n]
        for c in range(z.shape[1]):
            logp = (z[n, c] / T - top) - lse
            p = math.exp(logp)
            if c == t:
                loss[n] = -logp
                p -= 1
            dz[n, c] = p / denom * scale


@cuda.jit
def _softmax_ce_soft(z, q, T, denom, scale, loss, dz):
    for n in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        top, lse = _log_normaliser(z, n, T)
        total = top * 0
        for c in range(z.shape[1]):
            logp = (z[n, c] / T - top) - lse
            total -= q[n, c] * logp
            dz[n, c] = (math.exp(logp) - q[n, c]) / denom * scale
        loss[n] = total


@cuda.jit
def _sgd_update(p, v, g, lr, momentum):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        v[i] = momentum * v[i] - lr * g[i]
        p[i] += v[i]


def _flat(*arrays):
    """1-D views of C-contiguous arrays (elementwise kernels index one axis)."""
    for a in arrays:
        if hasattr(a, "flags") and not a.flags["C_CONTIGUOUS"]:
            raise ValueError(f"elementwise kernels need C-contiguous arrays, got shape {a.shape} "
                             f"with strides {a.strides}")
    return [a.reshape(a.size) for a in arrays]


def relu_forward(x, y, mask):
    """y = max(x, 0); mask = 1 where x > 0 (uint8)."""
    launch(_relu_forward, blocks(x.size), THREADS, (*_flat(x, y, mask), x.dtype.type(0)),
           outputs=(1, 2))


def mask_backward(dy, mask, dx):
    """dx = dy * mask, the mask repeated over stacked seeds."""
    launch(_mask_backward, blocks(dy.size), THREADS, _flat(dy, mask, dx), outputs=(2,))


def channel_affine(x, shift, scale, y):
    """y = (x - shift[c]) * scale[c] over channels-last x (..., C), shift and scale of C
    values (or one): Normalize's forward (mean, 1 / std) and backward (0, 1 / std)."""
    launch(_channel_affine, blocks(x.size), THREADS, (_flat(x)[0], shift, scale, _flat(y)[0]),
           outputs=(3,))


def dropout_forward(x, u, rate, y, mask):
    """Inverted dropout from uniforms u in [0, 1): mask = (u >= rate) / (1 - rate); y = x * mask."""
    t = x.dtype.type
    launch(_dropout_forward, blocks(x.size), THREADS,
           (*_flat(x, u), float(rate), t(1) / t(1.0 - rate), *_flat(y, mask), t(0)),
           outputs=(4, 5))


def nhwc_to_flat(x, out):
    """out (N, C*H*W) = x (N, H, W, C) flattened in NCHW order (what Flatten gives on the CPU)."""
    launch(_nhwc_to_flat, blocks(x.size), THREADS, (x, out), outputs=(1,))


def flat_to_nhwc(dy, out):
    """The inverse of nhwc_to_flat: dy (N, C*H*W) into out (N, H, W, C)."""
    launch(_flat_to_nhwc, blocks(out.size), THREADS, (dy, out), outputs=(1,))


def softmax_cross_entropy(z, target, T, scale, loss, dz):
    """Per-row cross-entropy of softmax(z / T) (loss, (N,)) and scale * its mean's gradient dz."""
    t = z.dtype.type
    kernel = _softmax_ce_hard if target.ndim == 1 else _softmax_ce_soft
    launch(kernel, blocks(len(z)), THREADS, (z, target, t(T), t(T * len(z)), t(scale), loss, dz),
           outputs=(5, 6))


def sgd_update(p, v, g, lr, momentum):
    """Momentum SGD as nn.optim.SGD: v = momentum * v - lr * g; p += v (in place)."""
    t = p.dtype.type
    launch(_sgd_update, blocks(p.size), THREADS, (*_flat(p, v, g), t(lr), t(momentum)),
           outputs=(0, 1))


@cuda.jit
def _take_rows(src, idx, out):
    width = out.shape[1]
    for i in range(cuda.grid(1), out.shape[0] * width, cuda.gridsize(1)):
        r = i // width
        out[r, i - r * width] = src[idx[r], i - r * width]


@cuda.jit
def _batch_stats(z, labels, loss, totals):
    for n in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        best = 0
        for c in range(1, z.shape[1]):
            if z[n, c] > z[n, best]:
                best = c
        cuda.atomic.add(totals, 0, loss[n])
        if best == labels[n]:
            cuda.atomic.add(totals, 1, 1.0)


def take_rows(src, idx, out):
    """out = src[idx] along the first axis (a training batch gathered on the device)."""
    flat_src = src.reshape(src.shape[0], src.size // max(1, src.shape[0]))
    flat_out = out.reshape(out.shape[0], out.size // max(1, out.shape[0]))
    launch(_take_rows, blocks(out.size), THREADS, (flat_src, idx, flat_out), outputs=(2,))


def batch_stats(z, labels, loss, totals):
    """totals (2,) float64 += (sum of loss, number of rows whose argmax of z is its label)."""
    launch(_batch_stats, blocks(len(z)), THREADS, (z, labels, loss, totals), outputs=(3,))
