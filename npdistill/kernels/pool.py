"""NumPy reference of non-overlapping max pooling (window = stride = ``size``).

Rows and columns beyond the last whole window are not pooled (as Keras'
'valid' pooling); their gradient is 0. Ties go to the first maximum in the
window's row-major order, in forward and backward alike.
"""
import numpy as np


def _windows(x, size):
    n, c, h, w = x.shape
    oh, ow = h // size, w // size
    blocks = x[:, :, :oh * size, :ow * size].reshape(n, c, oh, size, ow, size)
    return blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, size * size)


def maxpool_forward(x, size):
    """x (N, C, H, W) -> (out (N, C, H//size, W//size), argmax of each window, int64)."""
    windows = _windows(x, size)
    argmax = windows.argmax(axis=-1)
    out = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]
    return out, argmax


def maxpool_backward(dy, argmax, x_shape, size):
    """Route dy (N, C, oh, ow) to the argmax of each window; returns dx of ``x_shape``."""
    n, c, oh, ow = dy.shape
    dwindows = np.zeros((n, c, oh, ow, size * size), dtype=dy.dtype)
    np.put_along_axis(dwindows, argmax[..., None], dy[..., None], axis=-1)
    dx = np.zeros(x_shape, dtype=dy.dtype)
    dx[:, :, :oh * size, :ow * size] = (
        dwindows.reshape(n, c, oh, ow, size, size).transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, c, oh * size, ow * size))
    return dx
