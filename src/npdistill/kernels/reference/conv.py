"""NumPy reference of the convolution hot loop: im2col, its adjoint col2im, and the
weight gradient by im2col + GEMM.

This is the specification the compiled kernels (ext/conv.pyx) are tested
against. Stride 1; zero padding given as (pad_top, pad_left), the bottom/right
padding follows from the output size.

Layout: images are channels-last, x (N, H, W, C) C-contiguous (the layers keep
NCHW as their logical shape over this memory, see nn/layers.py). A row of
``cols`` is one output position (n, i, j); its columns run over the receptive
field (a, b, c), C-order, so that ``cols @ gemm_weights(W).T`` is the convolution with
weights W (F, C, kh, kw). With channels last, every
window row x[n, y, j:j+kw, :] is one contiguous run of kw * C values.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _padding(in_h, in_w, kh, kw, pad_top, pad_left, out_h, out_w):
    pad_bottom = out_h + kh - 1 - in_h - pad_top
    pad_right = out_w + kw - 1 - in_w - pad_left
    return ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0))


def im2col(x, kh, kw, pad_top, pad_left, out_h, out_w, cols):
    """Fill ``cols`` (N*out_h*out_w, kh*kw*C) with the receptive fields of x (N, H, W, C)."""
    n, h, w, c = x.shape
    padded = np.pad(x, _padding(h, w, kh, kw, pad_top, pad_left, out_h, out_w))
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, oh, ow, C, kh, kw)
    cols.reshape(n, out_h, out_w, kh, kw, c)[...] = windows.transpose(0, 1, 2, 4, 5, 3)


def col2im(cols, kh, kw, pad_top, pad_left, out_h, out_w, dx):
    """Overwrite dx (N, H, W, C) with the adjoint of im2col applied to ``cols``.

    Every receptive-field entry is added back to the pixel it was read from;
    the loop runs over the kh*kw kernel offsets, never over pixels.
    """
    n, h, w, c = dx.shape
    pads = _padding(h, w, kh, kw, pad_top, pad_left, out_h, out_w)
    padded = np.zeros((n, h + sum(pads[1]), w + sum(pads[2]), c), dtype=dx.dtype)
    patches = cols.reshape(n, out_h, out_w, kh, kw, c)
    for a in range(kh):
        for b in range(kw):
            padded[:, a:a + out_h, b:b + out_w, :] += patches[:, :, :, a, b, :]
    dx[...] = padded[:, pad_top:pad_top + h, pad_left:pad_left + w, :]


def weight_gradient(x, dy, kh, kw, pad_top, pad_left, out_h, out_w, block, acc):
    """acc[0] (F, kh*kw*C) += dy.T @ im2col(x), ``block`` images of x (N, H, W, C) at a
    time; dy (N*out_h*out_w, F). acc (chunks, F, kh*kw*C): one sum per chunk of images in
    the compiled kernel, the caller adds them."""
    rows = out_h * out_w
    for s in range(0, len(x), block):
        part = x[s:s + block]
        cols = np.empty((len(part) * rows, acc.shape[2]), x.dtype)
        im2col(part, kh, kw, pad_top, pad_left, out_h, out_w, cols)
        acc[0] += dy[s * rows:(s + len(part)) * rows].T @ cols


def gemm_weights(W):
    """Weights (F, C, kh, kw) as the (F, kh*kw*C) matrix whose columns follow im2col's
    (a, b, c) order (a view where W is contiguous)."""
    return W.transpose(0, 2, 3, 1).reshape(len(W), -1)


def layer_weights(W2, in_channels, kernel_size):
    """The inverse of gemm_weights: (F, kh*kw*C) back to (F, C, kh, kw), C-contiguous."""
    F, k, C = len(W2), kernel_size, in_channels
    return np.ascontiguousarray(W2.reshape(F, k, k, C).transpose(0, 3, 1, 2))


def flipped(W):
    """The kernels of the input gradient: rotated by 180 degrees, channels swapped (the
    input gradient is the correlation of dy with them, under ``gradient_padding``)."""
    return np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def gradient_padding(pads, r=3):
    """The padding under which correlating dy with ``flipped(W)`` gives dL/dx exactly."""
    return tuple(r - 1 - p for p in pads)
