"""The convolution's kernels, pass by pass: im2col / col2im and the weight gradient by
im2col + GEMM, the direct correlation (float32, AVX-512 or AVX2) and Winograd F(2x2, 3x3) /
F(4x4, 3x3). Each checks and allocates, then calls the active backend (reference/conv.py,
direct.py, winograd.py; ext/). kernels/convolution.py puts them together per algorithm.
"""
import numpy as np

from .backends import implementation, isa_level
from .layout import channels_last, contiguous, conv_output_size, empty_nchw, reusable_buffer
from .products import chunks
from .reference import conv as _numpy_conv
from .reference import direct as _numpy_direct
from .reference import winograd as _numpy_winograd
from .reference.conv import (flipped, gemm_weights, gradient_padding,  # noqa: F401
                             layer_weights)


def im2col(x, kh, kw, pads, out=None):
    """x (N, C, H, W) -> cols (N*oh*ow, kh*kw*C), columns in (a, b, c) order.

    pads = (top, bottom, left, right); ``out``: a buffer to reuse (see ``reusable_buffer``).
    """
    if x.ndim != 4:
        raise ValueError(f"im2col expects x of shape (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    oh = conv_output_size(h, kh, top, bottom)
    ow = conv_output_size(w, kw, left, right)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} image with padding {pads}")
    out = reusable_buffer((n * oh * ow, kh * kw * c), x.dtype, out)
    implementation("conv").im2col(channels_last(x), kh, kw, top, left, oh, ow, out)
    return out


def col2im(cols, x_shape, kh, kw, pads, out=None):
    """Adjoint of im2col: cols (N*oh*ow, kh*kw*C) -> dx (N, C, H, W) of ``x_shape``.

    ``out``: an NCHW view of channels-last memory to write into (see ``empty_nchw``).
    """
    n, c, h, w = x_shape
    top, bottom, left, right = pads
    oh = conv_output_size(h, kh, top, bottom)
    ow = conv_output_size(w, kw, left, right)
    if cols.shape != (n * oh * ow, c * kh * kw):
        raise ValueError(f"col2im expects cols of shape {(n * oh * ow, c * kh * kw)} "
                         f"for an input of shape {tuple(x_shape)}, got {cols.shape}")
    dx = empty_nchw(x_shape, cols.dtype) if out is None else out
    target = dx.transpose(0, 2, 3, 1)
    if dx.shape != tuple(x_shape) or not target.flags.c_contiguous:
        raise ValueError(f"col2im out must be a channels-last {tuple(x_shape)} array")
    implementation("conv").col2im(np.ascontiguousarray(cols), kh, kw, top, left, oh, ow, target)
    return dx


def im2col_weight_gradient(x, dy, kh, kw, pads, block):
    """dL/dW as (F, kh*kw*C) (``gemm_weights``'s layout) of the convolution at x (N, C, H, W)
    given dy (N*oh*ow, F), by im2col + GEMM ``block`` images at a time: chunks of images
    fixed by N are summed apart and added in order (the same bits on any thread count)."""
    if x.ndim != 4:
        raise ValueError(f"im2col_weight_gradient expects x of shape (N, C, H, W), got {x.shape}")
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    oh, ow = conv_output_size(h, kh, top, bottom), conv_output_size(w, kw, left, right)
    if dy.shape[0] != n * oh * ow or dy.ndim != 2 or dy.dtype != x.dtype:
        raise ValueError(f"im2col_weight_gradient expects dy of shape ({n * oh * ow}, F) "
                         f"{x.dtype}, got {dy.shape} {dy.dtype}")
    conv = implementation("conv")
    if not hasattr(conv, "weight_gradient"):
        conv = _numpy_conv                                      # cuda: on the host
    acc = np.zeros((chunks(n), dy.shape[1], kh * kw * c), x.dtype)
    conv.weight_gradient(channels_last(x), np.ascontiguousarray(dy), kh, kw, top, left, oh, ow,
                         block, acc)
    return acc.sum(axis=0)


# The direct input gradient writes C channels in vectors of 16: with fewer (an image
# net's first layer) im2col's col2im is faster (bench/direct_checks.py: conv 1->32's input
# gradient 2.6 ms direct, 0.8 ms im2col).
DIRECT_MIN_CHANNELS = 16


def direct_correlate(x, W, pads, bias=None, rectify=False):
    """x (N, H, W, C) channels-last, float32, correlated with W (F, C, kh, kw) by the
    direct kernels, padding (top, bottom, left, right) -> (N, oh, ow, F) channels-last,
    plus ``bias`` (F,); rectify: max(., 0) in the same pass (the ReLU after the layer)."""
    contiguous("x", x, np.float32, 4)
    F, C, kh, kw = W.shape
    if x.shape[3] != C:
        raise ValueError(f"x has {x.shape[3]} channels, the weights {C}")
    oh = conv_output_size(x.shape[1], kh, pads[0], pads[1])
    ow = conv_output_size(x.shape[2], kw, pads[2], pads[3])
    y = np.empty((len(x), oh, ow, F), np.float32)
    bias = np.zeros(F, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    implementation("direct").correlate(x, _numpy_direct.packed(W.astype(np.float32, copy=False)),
                                       bias, kh, kw, pads[0], pads[2], y, rectify, isa_level())
    return y


def direct_input_gradient(dy, W, pads):
    """dL/dx (N, H, W, C) channels-last of ``direct_correlate`` given dy (N, oh, ow, F)."""
    return direct_correlate(dy, flipped(W), gradient_padding(pads, W.shape[-1]))


def direct_weight_gradient(x, dy, pads, kernel_size):
    """dL/dW (F, C, k, k) of ``direct_correlate`` at x (N, H, W, C) given dy (N, oh, ow, F),
    both channels-last float32; chunks of images fixed by N are summed apart and added in
    order (the same bits on any thread count)."""
    contiguous("x", x, np.float32, 4)
    contiguous("dy", dy, np.float32, 4)
    k, C, F = kernel_size, x.shape[3], dy.shape[3]
    acc = np.zeros((chunks(len(x)), k * k * C, F), np.float32)
    implementation("direct").weight_gradient(x, dy, k, k, pads[0], pads[2], acc, isa_level())
    return np.ascontiguousarray(acc.sum(axis=0).reshape(k, k, C, F).transpose(3, 2, 0, 1))


WINOGRAD_TILE = {"winograd2": 2, "winograd4": 4}
_WINOGRAD_BLOCK_BYTES = 1 << 21     # a thread's transformed tiles and products, in cache


def _winograd_block(n, c, f, itemsize):
    """Tiles per block: the n*n transformed tiles (C values) and products (F) of a
    block fill _WINOGRAD_BLOCK_BYTES."""
    return max(4, _WINOGRAD_BLOCK_BYTES // (n * n * (c + f) * itemsize))


def winograd_correlate(x, W, m, pads, bias=None):
    """x (N, H, W, C) channels-last (*) W (F, C, 3, 3) with F(m x m, 3 x 3), padding
    (top, bottom, left, right) -> (N, oh, ow, F) channels-last, plus ``bias``."""
    contiguous("x", x, x.dtype, 4)
    F, C, r = W.shape[0], W.shape[1], W.shape[-1]
    if x.shape[3] != C:
        raise ValueError(f"x has {x.shape[3]} channels, the weights {C}")
    AT, _, BT = _numpy_winograd.transforms(m, r, x.dtype)
    oh = x.shape[1] + pads[0] + pads[1] - r + 1
    ow = x.shape[2] + pads[2] + pads[3] - r + 1
    y = np.empty((len(x), oh, ow, F), x.dtype)
    bias = np.zeros(F, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    implementation("winograd").correlate(
        x, _numpy_winograd.transform_weights(W.astype(x.dtype, copy=False), m), bias, AT, BT,
        pads[0], pads[2], y, _winograd_block(len(BT), C, F, x.dtype.itemsize))
    return y


def winograd_input_gradient(dy, W, m, pads):
    """dL/dx (N, H, W, C) channels-last of ``winograd_correlate`` given dy (N, oh, ow, F)."""
    return winograd_correlate(dy, flipped(W), m, gradient_padding(pads, W.shape[-1]))


def winograd_weight_gradient(x, dy, m, pads, r=3):
    """dL/dW (F, C, r, r) of ``winograd_correlate`` at x (N, H, W, C) given dy (N, oh, ow, F),
    both channels-last."""
    contiguous("x", x, x.dtype, 4)
    contiguous("dy", dy, x.dtype, 4)
    _, G, BT = _numpy_winograd.transforms(r, m, x.dtype)
    n, C, F = len(G), x.shape[3], dy.shape[3]
    tiles = len(x) * -(-dy.shape[1] // m) * -(-dy.shape[2] // m)
    blocks = -(-tiles // _winograd_block(n, C, F, x.dtype.itemsize))
    acc = np.zeros((chunks(blocks), n * n, F, C), x.dtype)
    implementation("winograd").filter_products(x, dy, G, BT, pads[0], pads[2], acc,
                                               _winograd_block(n, C, F, x.dtype.itemsize))
    return _numpy_winograd.weight_gradient_from(acc, m, r)
