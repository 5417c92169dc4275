"""Max pooling, non-overlapping windows, on NCHW views of channels-last memory
(reference/pool.py; ext/pool.pyx)."""
import numpy as np

from .backends import implementation
from .layout import channels_last, empty_nchw
from .reference.pool import pool_windows


def maxpool_forward(x, size, argmax=None):
    """x (N, C, H, W) -> (window maxima (N, C, H//size, W//size), their argmax, int64).

    ``argmax``: the array a previous call returned, reused when the shape matches.
    """
    n, c, h, w = x.shape
    out = empty_nchw((n, c, h // size, w // size), x.dtype)
    if argmax is None or argmax.shape != out.shape:
        argmax = empty_nchw(out.shape, np.int64)
    implementation("pool").maxpool_forward(channels_last(x), size, channels_last(out),
                                           channels_last(argmax))
    return out, argmax


def maxpool_gather(x, argmax, size):
    """x (N, C, H, W) read at a forward's argmax (N, C, oh, ow): the pooling's derivative along x.

    NumPy only: a gather as cheap as the pooling itself (it serves the
    forward-mode pass of input-gradient regularization, not the hot loops).
    """
    if len(x) != len(argmax) or x.shape[1] != argmax.shape[1]:
        raise ValueError(f"x of shape {x.shape} does not match argmax of shape {argmax.shape}")
    oh, ow = argmax.shape[2:]
    windows = pool_windows(channels_last(x), size, oh, ow)     # (N, oh, ow, s*s, C)
    picked = np.take_along_axis(windows, channels_last(argmax)[:, :, :, None, :], axis=3)
    return picked[:, :, :, 0, :].transpose(0, 3, 1, 2)


def maxpool_backward(dy, argmax, x_shape, size):
    """dx of ``x_shape`` from dy (S * N, C, oh, ow) and the forward's argmax (N, C, oh, ow)."""
    if len(dy) % len(argmax) or dy.shape[1:] != argmax.shape[1:]:
        raise ValueError(f"dy of shape {dy.shape} does not match argmax of shape {argmax.shape}")
    dx = empty_nchw(x_shape, dy.dtype)
    implementation("pool").maxpool_backward(channels_last(dy), channels_last(argmax), size,
                                            channels_last(dx))
    return dx
