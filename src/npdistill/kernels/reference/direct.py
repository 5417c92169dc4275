"""NumPy reference of the direct convolution kernels (ext/direct.pyx): the same sums as
im2col + GEMM, which is what they are tested against.

The compiled kernels compute them without the im2col matrix: each thread copies one
image, zero-padded, into a buffer of its own and sums its products in AVX-512 or AVX2
registers (ext/direct_conv.h says how). Images are channels-last, x (N, H, W, C); weights come as
``wt`` (kh*kw*C, F), rows in im2col's (a, b, c) order (``packed``). The padding is
(pad_top, pad_left); the bottom and right padding follow from the output's size.
"""
import numpy as np

from .conv import gemm_weights, im2col


def packed(W):
    """Weights (F, C, kh, kw) as the (kh*kw*C, F) matrix the kernels read, C-contiguous:
    im2col's GEMM weights transposed."""
    return np.ascontiguousarray(gemm_weights(W).T)


def _cols(x, kh, kw, pad_top, pad_left, out_h, out_w):
    cols = np.empty((len(x) * out_h * out_w, kh * kw * x.shape[3]), dtype=x.dtype)
    im2col(x, kh, kw, pad_top, pad_left, out_h, out_w, cols)
    return cols


def correlate(x, wt, bias, kh, kw, pad_top, pad_left, y, rectify=False):
    """y (N, oh, ow, F) = bias + x (N, H, W, C) correlated with the packed weights ``wt``;
    rectify: then max(y, 0) (the ReLU after the layer, NaN kept)."""
    n, oh, ow, F = y.shape
    y.reshape(-1, F)[...] = _cols(x, kh, kw, pad_top, pad_left, oh, ow) @ wt + bias
    if rectify:
        np.maximum(y, y.dtype.type(0), out=y)


def weight_gradient(x, dy, kh, kw, pad_top, pad_left, acc):
    """acc[0] (kh*kw*C, F) += the weight gradient (packed) of x (N, H, W, C) given dy
    (N, oh, ow, F); acc (chunks, kh*kw*C, F): one sum per chunk of images in the compiled
    kernel, the caller adds them."""
    n, oh, ow, F = dy.shape
    acc[0] += _cols(x, kh, kw, pad_top, pad_left, oh, ow).T @ dy.reshape(-1, F)
