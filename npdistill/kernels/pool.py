"""NumPy reference of non-overlapping max pooling (window = stride = ``size``).

Rows and columns beyond the last whole window are not pooled (as Keras'
'valid' pooling); their gradient is 0. Ties go to the first maximum in the
window's row-major order, in forward and backward alike. ``argmax`` holds,
for each output, the position (a * size + b) of the maximum in its window.
"""
import numpy as np


def _windows(x, size, oh, ow):
    n, c = x.shape[:2]
    blocks = x[:, :, :oh * size, :ow * size].reshape(n, c, oh, size, ow, size)
    return blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, size * size)


def maxpool_forward(x, size, out, argmax):
    """Fill out (N, C, H//size, W//size) with the window maxima of x, argmax (int64) with their place."""
    oh, ow = out.shape[2:]
    windows = _windows(x, size, oh, ow)
    argmax[...] = windows.argmax(axis=-1)
    out[...] = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]


def maxpool_backward(dy, argmax, size, dx):
    """Overwrite dx (N, C, H, W) with dy (N, C, oh, ow) routed to the argmax of each window.

    dy may stack S seeds per forward sample (N = S * len(argmax)); they share its argmax.
    """
    n, c, oh, ow = dy.shape
    argmax = np.tile(argmax, (n // len(argmax), 1, 1, 1))
    dwindows = np.zeros((n, c, oh, ow, size * size), dtype=dy.dtype)
    np.put_along_axis(dwindows, argmax[..., None], dy[..., None], axis=-1)
    dx[...] = 0
    dx[:, :, :oh * size, :ow * size] = (
        dwindows.reshape(n, c, oh, ow, size, size).transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, c, oh * size, ow * size))
