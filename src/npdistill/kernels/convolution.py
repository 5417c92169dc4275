"""The convolution behind one seam: ``choose(...)`` picks the algorithm for a layer's
shape and dtype (``conv_algorithm``, which ``use_conv`` or ``NPDISTILL_CONV`` steer) and
returns the object that runs its passes.

Each algorithm -- im2col + GEMM, the direct kernels (float32, AVX-512 or AVX2), Winograd
F(2x2, 3x3) / F(4x4, 3x3) -- is a class with the same two methods:

- ``forward(x, W, bias=None, rectify=False)``: x (N, C, H, W) correlated with W (F, C, k, k),
  plus ``bias``, then max(., 0) where ``rectify`` -> (N * oh * ow, F), rows in (n, i, j)
  order (channels-last memory);
- ``gradients(x, dy, W, param_grads, input_grad)``: given dy (N * oh * ow, F) at input x,
  (dL/dW (F, C, k, k) or None, dL/dx (N, C, H, W) or None); dy may stack S seeds
  (S * N images) when only the input gradient is asked.

Their blocks, buffers and fallbacks (the direct input gradient of a layer with few input
channels is im2col's) live here; nn.layers.Conv2D holds the parameters and calls them.
"""
import contextlib
import os

import numpy as np

from .backends import has
from .conv import (DIRECT_MIN_CHANNELS, WINOGRAD_TILE, col2im, direct_correlate,
                   direct_input_gradient, direct_weight_gradient, im2col,
                   im2col_weight_gradient, winograd_correlate, winograd_input_gradient,
                   winograd_weight_gradient)
from .layout import channels_last, empty_nchw, reusable_buffer
from .products import matmul
from .reference.conv import gemm_weights, layer_weights

CONV_ALGORITHMS = ("auto", "im2col", "direct", "winograd2", "winograd4")
_conv_algorithm = None              # set by use_conv; None: NPDISTILL_CONV, else "auto"


def use_conv(name):
    """Make every convolution run as ``name``: "auto" (the default: ``conv_algorithm``'s
    rule), "im2col", "direct" (ext/direct_conv.h), or for 3x3 kernels "winograd2"
    (F(2x2, 3x3)) or "winograd4" (F(4x4, 3x3)). Overrides ``NPDISTILL_CONV``. Where the
    active backend lacks an algorithm's kernels (float64 and CPUs with neither AVX-512F
    nor AVX2 have no direct kernels, cuda has neither), the convolution runs im2col."""
    global _conv_algorithm
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"unknown convolution algorithm {name!r}: expected one of "
                         f"{CONV_ALGORITHMS}")
    _conv_algorithm = name


@contextlib.contextmanager
def using_conv(name):
    """``with using_conv("winograd4"):`` runs the block's convolutions so, then restores."""
    previous = _conv_algorithm
    use_conv(name)
    try:
        yield name
    finally:
        globals()["_conv_algorithm"] = previous


def conv_algorithm(in_channels, out_channels, kernel_size, out_h, out_w, dtype=np.float32):
    """The algorithm a convolution of this shape and dtype runs now: "im2col", "direct",
    "winograd2" or "winograd4". "auto" (the default) takes the direct kernels wherever
    they run (float32, the "cython" backend on a CPU with AVX-512F or AVX2, under
    NPDISTILL_ISA), else im2col: on the machines of bench/RESULTS.md the direct kernels
    beat im2col and Winograd on the paper's net (AVX2: 1.4x im2col's training step), and
    Winograd does not beat im2col."""
    chosen = _conv_algorithm or os.environ.get("NPDISTILL_CONV", "auto")
    if chosen not in CONV_ALGORITHMS:
        raise ValueError(f"NPDISTILL_CONV={chosen!r}: expected one of {CONV_ALGORITHMS}")
    if chosen in ("auto", "direct"):
        return "direct" if has("direct") and np.dtype(dtype) == np.float32 else "im2col"
    if kernel_size != 3 or chosen == "im2col" or not has("winograd"):
        return "im2col"
    return chosen


# im2col runs block by block: the im2col of a block of images (at most this many bytes) is
# multiplied while it is still in cache. `python -m bench.blocking` (2 cores): 2 MB was the
# best of 1, 2, 4 MB and one block for the whole batch, e.g. training step 131 vs 146 ms,
# JSMA-like pass 107 vs 114 ms.
BLOCK_BYTES = 1 << 21
# The weight gradient's blocks are a thread's own (each sums a chunk of the images, the
# same bits on any thread count): `python -m bench.blocking --weight` (2 cores, AVX-512
# Xeon): 512 kB was the best of 256 kB - 2 MB on the paper's four layers.
WEIGHT_BLOCK_BYTES = 1 << 19


class Im2col:
    """im2col + GEMM, one block of images at a time: a block's im2col is multiplied while
    it is in cache (the weight gradient copies it again, block by block, in
    ``im2col_weight_gradient``: cheaper than keeping it all)."""

    name = "im2col"

    def __init__(self, in_channels, kernel_size, pads, out_h, out_w):
        self.in_channels, self.kernel_size, self.pads = in_channels, kernel_size, pads
        self.rows = out_h * out_w
        self._cols = self._dcols = None       # reusable block buffers

    def _block_images(self, nbytes, itemsize):
        """How many images' im2col fits ``nbytes``."""
        row_bytes = self.kernel_size ** 2 * self.in_channels * itemsize
        return max(1, nbytes // (self.rows * row_bytes))

    def _blocks(self, n, itemsize):
        """Image ranges whose im2col fits BLOCK_BYTES."""
        step = self._block_images(BLOCK_BYTES, itemsize)
        return [(s, min(n, s + step)) for s in range(0, n, step)]

    def forward(self, x, W, bias=None, rectify=False):
        k, rows, W2 = self.kernel_size, self.rows, gemm_weights(W)
        y = np.empty((len(x) * rows, len(W)), dtype=x.dtype)
        for s, e in self._blocks(len(x), W.itemsize):
            self._cols = im2col(x[s:e], k, k, self.pads, out=self._cols)
            matmul(self._cols, W2.T, out=y[s * rows:e * rows])
        if bias is not None:
            y += bias
        if rectify:
            np.maximum(y, y.dtype.type(0), out=y)
        return y

    def gradients(self, x, dy, W, param_grads, input_grad):
        k, rows = self.kernel_size, self.rows
        n = len(dy) // rows
        dW = dx = None
        if param_grads:
            block = self._block_images(WEIGHT_BLOCK_BYTES, W.itemsize)
            dW = layer_weights(im2col_weight_gradient(x, dy, k, k, self.pads, block),
                               self.in_channels, k)
        if input_grad:
            W2 = gemm_weights(W)
            dx = empty_nchw((n,) + x.shape[1:], dy.dtype)
            for s, e in self._blocks(n, W.itemsize):
                self._dcols = reusable_buffer(((e - s) * rows, W2.shape[1]), dy.dtype,
                                              self._dcols)
                matmul(dy[s * rows:e * rows], W2, out=self._dcols)
                col2im(self._dcols, (e - s,) + x.shape[1:], k, k, self.pads, out=dx[s:e])
        return dW, dx


class Direct:
    """The direct kernels (float32, AVX-512 or AVX2: no im2col matrix); the input gradient of a
    layer with fewer than DIRECT_MIN_CHANNELS input channels is im2col's."""

    name = "direct"

    def __init__(self, in_channels, kernel_size, pads, out_h, out_w):
        self.kernel_size, self.pads, self.shape = kernel_size, pads, (out_h, out_w)
        self._small = (Im2col(in_channels, kernel_size, pads, out_h, out_w)
                       if in_channels < DIRECT_MIN_CHANNELS else None)

    def forward(self, x, W, bias=None, rectify=False):
        return direct_correlate(channels_last(x), W, self.pads, bias, rectify).reshape(-1, len(W))

    def gradients(self, x, dy, W, param_grads, input_grad):
        dy4 = np.ascontiguousarray(dy.reshape((-1,) + self.shape + (len(W),)))
        dW = dx = None
        if param_grads:
            dW = direct_weight_gradient(channels_last(x), dy4, self.pads, self.kernel_size)
        if input_grad and self._small is None:
            dx = direct_input_gradient(dy4, W, self.pads).transpose(0, 3, 1, 2)
        elif input_grad:
            dx = self._small.gradients(x, dy, W, False, True)[1]
        return dW, dx


class Winograd:
    """Winograd F(m x m, 3 x 3), all three passes (m = 2 or 4)."""

    def __init__(self, m, pads, out_h, out_w):
        self.name = f"winograd{m}"
        self.m, self.pads, self.shape = m, pads, (out_h, out_w)

    def forward(self, x, W, bias=None, rectify=False):
        y = winograd_correlate(channels_last(x), W, self.m, self.pads, bias).reshape(-1, len(W))
        if rectify:
            np.maximum(y, y.dtype.type(0), out=y)
        return y

    def gradients(self, x, dy, W, param_grads, input_grad):
        dy4 = np.ascontiguousarray(dy.reshape((-1,) + self.shape + (len(W),)))
        dW = dx = None
        if param_grads:
            dW = np.ascontiguousarray(
                winograd_weight_gradient(channels_last(x), dy4, self.m, self.pads))
        if input_grad:
            dx = winograd_input_gradient(dy4, W, self.m, self.pads).transpose(0, 3, 1, 2)
        return dW, dx


def choose(in_channels, out_channels, kernel_size, pads, out_h, out_w, dtype, previous=None):
    """The object running a convolution of this shape and dtype by the algorithm
    ``conv_algorithm`` picks now; ``previous`` (what an earlier call returned) is given
    back when it still fits, its buffers with it."""
    name = conv_algorithm(in_channels, out_channels, kernel_size, out_h, out_w, dtype)
    key = (name, in_channels, kernel_size, pads, out_h, out_w)
    if previous is not None and previous.key == key:
        return previous
    if name in WINOGRAD_TILE:
        chosen = Winograd(WINOGRAD_TILE[name], pads, out_h, out_w)
    else:
        chosen = (Direct if name == "direct" else Im2col)(in_channels, kernel_size, pads,
                                                          out_h, out_w)
    chosen.key = key
    return chosen
