"""NumPy reference of non-overlapping max pooling (window = stride = ``size``),
on channels-last images x (N, H, W, C) like the convolution kernels.

Rows and columns beyond the last whole window are not pooled (as Keras'
'valid' pooling); their gradient is 0. Ties go to the first maximum in the
window's row-major order, in forward and backward alike; a window holding NaN
gives NaN, its gradient going to the first NaN (np.argmax; PyTorch's max pooling
propagates NaN too). ``argmax`` holds, for each output, the position
(a * size + b) of the maximum in its window.
"""
import numpy as np


def pool_windows(x, size, oh, ow):
    n, c = x.shape[0], x.shape[3]
    blocks = x[:, :oh * size, :ow * size, :].reshape(n, oh, size, ow, size, c)
    return blocks.transpose(0, 1, 3, 2, 4, 5).reshape(n, oh, ow, size * size, c)


def maxpool_forward(x, size, out, argmax):
    """Fill out (N, H//size, W//size, C) with the window maxima of x, argmax (int64) with their place."""
    oh, ow = out.shape[1:3]
    windows = pool_windows(x, size, oh, ow)
    argmax[...] = windows.argmax(axis=3)
    out[...] = np.take_along_axis(windows, argmax[:, :, :, None, :], axis=3)[:, :, :, 0, :]


def maxpool_backward(dy, argmax, size, dx):
    """Overwrite dx (N, H, W, C) with dy (N, oh, ow, C) routed to the argmax of each window.

    dy may stack S seeds per forward sample (N = S * len(argmax)); they share its argmax.
    """
    n, oh, ow, c = dy.shape
    argmax = np.tile(argmax, (n // len(argmax), 1, 1, 1))
    dwindows = np.zeros((n, oh, ow, size * size, c), dtype=dy.dtype)
    np.put_along_axis(dwindows, argmax[:, :, :, None, :], dy[:, :, :, None, :], axis=3)
    dx[...] = 0
    dx[:, :oh * size, :ow * size, :] = (
        dwindows.reshape(n, oh, ow, size, size, c).transpose(0, 1, 3, 2, 4, 5)
        .reshape(n, oh * size, ow * size, c))
