"""NumPy reference of the elementwise pieces the GPU backend computes itself
(npdistill/cuda/elementwise.py): the same arithmetic as the layers, the loss and
the optimizer of nn/, in the buffer-filling form of the kernels.

Masks are uint8 (ReLU) or of the activations' dtype (dropout). A backward's dy
may stack S seeds per forward sample (seed-major, see nn/layers.py): the mask
of a forward of R elements applies to element i of dy as mask[i % R].
"""
import numpy as np


def relu_forward(x, y, mask):
    """y = max(x, 0); mask = 1 where x > 0 (uint8)."""
    np.maximum(x, x.dtype.type(0), out=y)
    mask[...] = x > 0


def mask_backward(dy, mask, dx):
    """dx = dy * mask, the mask repeated over stacked seeds."""
    repeats = dy.size // mask.size
    dx.reshape(repeats, -1)[...] = dy.reshape(repeats, -1) * mask.reshape(1, -1)


def dropout_forward(x, u, rate, y, mask):
    """Inverted dropout from uniforms u in [0, 1): mask = (u >= rate) / (1 - rate); y = x * mask."""
    mask[...] = (u >= rate).astype(x.dtype) / x.dtype.type(1.0 - rate)
    y[...] = x * mask


def nhwc_to_flat(x, out):
    """out (N, C*H*W) = x (N, H, W, C) flattened in NCHW order (what Flatten gives on the CPU)."""
    out[...] = x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def flat_to_nhwc(dy, out):
    """The inverse of nhwc_to_flat: dy (N, C*H*W) into out (N, H, W, C)."""
    n, h, w, c = out.shape
    out[...] = dy.reshape(n, c, h, w).transpose(0, 2, 3, 1)


def softmax_cross_entropy(z, target, T, scale, loss, dz):
    """Per-row cross-entropy of softmax(z / T) and the scaled mean-loss gradient.

    z : (N, K); target : (N,) int64 labels or (N, K) soft rows; T > 0
    loss : (N,) OUT, -sum_k q_k log softmax(z / T)_k
    dz : (N, K) OUT, scale * (softmax(z / T) - q) / (T N): nn.cross_entropy's dlogits
        times train()'s loss_scale.
    """
    s = z / z.dtype.type(T)
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    n = len(z)
    q = np.zeros_like(z)
    if target.ndim == 1:
        q[np.arange(n), target] = 1
    else:
        q[...] = target
    loss[...] = -(q * logp).sum(axis=1)
    dz[...] = (np.exp(logp) - q) / z.dtype.type(T * n) * z.dtype.type(scale)


def sgd_update(p, v, g, lr, momentum):
    """Momentum SGD as nn.optim.SGD: v = momentum * v - lr * g; p += v (in place)."""
    v *= p.dtype.type(momentum)
    v -= p.dtype.type(lr) * g
    p += v


def take_rows(src, idx, out):
    """out = src[idx] along the first axis (a training batch gathered on the device)."""
    out[...] = src[idx]


def batch_stats(z, labels, loss, totals):
    """totals (2,) float64 += (sum of loss, number of rows whose argmax of z is its label)."""
    totals[0] += loss.sum(dtype=np.float64)
    totals[1] += (z.argmax(axis=1) == labels).sum()
