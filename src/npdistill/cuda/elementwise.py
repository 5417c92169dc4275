"""Elementwise kernels of the GPU network: ReLU, dropout, Normalize, the NCHW flatten,
tempered softmax cross-entropy and the SGD step. Their specification is what the CPU path
runs: nn.layers.ReLU, Dropout and Normalize, nn.softmax.cross_entropy, nn.optim.momentum_step; the
device plumbing (flatten, batch gather, totals) kernels/reference/cuda_elementwise.py."""
import numpy as np
from numba import cuda

from . import head
from ._launch import THREADS, blocks, launch
from .fused import activation_derivative


@cuda.jit
def _relu_forward(x, y, mask, zero):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        y[i] = zero if v <= 0 else v            # NaN stays NaN, as the CPU layer's
        mask[i] = 1 if v > 0 else 0


@cuda.jit
def _mask_backward(dy, mask, dx):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = dy[i] * mask[i % mask.size]


@cuda.jit
def _activation_backward(dy, act, mask, relu, dropout, dx, zero, one):
    for i in range(cuda.grid(1), dy.size, cuda.gridsize(1)):
        dx[i] = dy[i] * activation_derivative(act, mask, i % act.size, relu, dropout, zero, one)


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


@cuda.jit
def _sgd_update(p, v, g, group, lrs, momentum):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        v[i] = momentum * v[i] - lrs[group[i % group.size]] * g[i]
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


def activation_backward(dy, act, mask, relu, dropout, dx):
    """dx = dy times the derivative of a ReLU (read from its output act) and of a dropout
    (its mask), either optional; act and mask repeated over stacked seeds."""
    t = dy.dtype.type
    launch(_activation_backward, blocks(dy.size), THREADS,
           (*_flat(dy, act, mask), bool(relu), bool(dropout), _flat(dx)[0], t(0), t(1)),
           outputs=(5,))


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


def softmax_cross_entropy(z, target, T, scale, loss, dz, labels=None, totals=None):
    """Per-row cross-entropy of softmax(z / T) (loss, (N,)) and scale * its mean's gradient
    dz; with ``labels`` and ``totals`` ((2,) float64), totals += (the loss's sum, the rows
    whose argmax of z is their label). The kernel is cuda/head.py's row function, which a
    net's head runs in its forward pass."""
    t = z.dtype.type
    if labels is None:
        labels = target if target.ndim == 1 else np.zeros(len(z), np.int64)
    if totals is None:
        totals = np.zeros(2)
    vals = (t(T), t(T * len(z)), t(scale))
    if target.ndim == 1:
        head.rows(head.CE_HARD, z, (target, loss, dz, totals), vals, outputs=(1, 2, 3))
    else:
        head.rows(head.CE_SOFT, z, (target, loss, dz, totals, labels), vals, outputs=(1, 2, 3))


def sgd_update(p, v, g, lr, momentum, group=None):
    """Momentum SGD as nn.optim.SGD: v = momentum * v - lr * g; p += v (in place). lr: a
    number, or with ``group`` (an int32 per element) the learning rate of each group."""
    t = p.dtype.type
    if group is None:
        group, lr = np.zeros(1, np.int32), [lr]
    launch(_sgd_update, blocks(p.size), THREADS,
           (*_flat(p, v, g), group, np.asarray(lr, dtype=p.dtype), t(momentum)), outputs=(0, 1))


@cuda.jit
def _take_rows(src, idx, out):
    width = out.shape[1]
    for i in range(cuda.grid(1), out.shape[0] * width, cuda.gridsize(1)):
        r = i // width
        out[r, i - r * width] = src[idx[r], i - r * width]


def take_rows(src, idx, out):
    """out = src[idx] along the first axis (a training batch gathered on the device)."""
    flat_src = src.reshape(src.shape[0], src.size // max(1, src.shape[0]))
    flat_out = out.reshape(out.shape[0], out.size // max(1, out.shape[0]))
    launch(_take_rows, blocks(out.size), THREADS, (flat_src, idx, flat_out), outputs=(2,))
