"""NumPy reference of the device plumbing of the GPU backend (npdistill/cuda/elementwise.py)
that has no twin on the CPU path: the NHWC <-> NCHW-flat reorder of Flatten, the batch
gather and the epoch's running totals.

The elementwise maths the CPU path also runs (ReLU, dropout, the tempered cross-entropy,
the SGD step) has no copy here: the CUDA kernels are tested against the very functions of
nn/ (layers.ReLU, layers.Dropout, softmax.cross_entropy, optim.momentum_step).
"""
import numpy as np


def nhwc_to_flat(x, out):
    """out (N, C*H*W) = x (N, H, W, C) flattened in NCHW order (what Flatten gives on the CPU)."""
    out[...] = x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def flat_to_nhwc(dy, out):
    """The inverse of nhwc_to_flat: dy (N, C*H*W) into out (N, H, W, C)."""
    n, h, w, c = out.shape
    out[...] = dy.reshape(n, c, h, w).transpose(0, 2, 3, 1)


def take_rows(src, idx, out):
    """out = src[idx] along the first axis (a training batch gathered on the device)."""
    out[...] = src[idx]


def batch_stats(z, labels, loss, totals):
    """totals (2,) float64 += (sum of loss, number of rows whose argmax of z is its label)."""
    totals[0] += loss.sum(dtype=np.float64)
    totals[1] += (z.argmax(axis=1) == labels).sum()
