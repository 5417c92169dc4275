"""The hot loops, and the dispatch that picks their implementation.

Each kernel has one signature in ``npdistill.kernels.<module>`` (NumPy, the
specification) and in the compiled ``npdistill._ext.<module>`` (Cython), for
the modules ``conv`` (im2col / col2im), ``direct`` (the direct convolution, float32,
AVX-512), ``winograd`` (Winograd's 3x3 convolution), ``pool`` (max pooling),
``saliency`` (JSMA's pair search) and ``cw`` (the Carlini-Wagner step). The
functions here check and allocate, then call the active backend, which only
computes into the buffers it is given.

Pick a backend with ``use("numpy" | "cython" | "cuda")`` (for a block: ``with
using(name):``) or the environment variable ``NPDISTILL_BACKEND``; the default is
the fastest available: "cuda" where numba-cuda is installed and an NVIDIA device
is present, else "cython".
If the compiled extension is missing the library warns once and runs on the
NumPy reference. With "cython", NumPy's BLAS runs on the kernels' OpenMP threads
(``blas_threads()``; kernels/threads.py says why and how to keep OpenBLAS's own). The CUDA kernels (npdistill/cuda) are imported only when
"cuda" is asked for or chosen: importing npdistill never needs numba.
With "cuda", the functions below move NumPy arguments to the device and back;
``train`` and the attacks keep their arrays there (npdistill.placement says how).
"""
import contextlib
import os

import numpy as np

from . import conv as _numpy_conv
from . import cw as _numpy_cw
from . import direct as _numpy_direct
from . import gemm as _numpy_gemm
from . import relu as _numpy_relu
from . import winograd as _numpy_winograd
from .conv import flipped, gemm_weights, gradient_padding
from .backends import (BACKENDS, WAIT_POLICY_SET_HERE, available, backend, has, implementation,
                       use, using)
from .layout import channels_last, conv_output_size, empty_nchw, reusable_buffer
from .pool import pool_windows
from .threads import BLAS_THREADS, blas_threads
from . import provenance as _provenance
from .provenance import summary as environment_summary

# backends.py: the registry (use, using, backend, available); layout.py: NCHW <->
# channels-last; below: the validating wrappers, which check and allocate, then call the
# active backend's kernel.
__all__ = ["BACKENDS", "WAIT_POLICY_SET_HERE", "available", "backend", "implementation", "use",
           "using", "channels_last", "conv_output_size", "empty_nchw", "reusable_buffer",
           "im2col", "col2im", "im2col_weight_gradient", "gemm_weights", "relu_forward", "relu_backward", "saliency_pairs",
           "maxpool_forward", "maxpool_gather", "maxpool_backward", "CW_L2", "CW_LINF",
           "cw_margin", "cw_update", "cw_track", "matmul", "column_sums",
           "CONV_ALGORITHMS", "use_conv", "using_conv",
           "conv_algorithm", "DIRECT_MIN_CHANNELS", "direct_correlate", "direct_input_gradient",
           "direct_weight_gradient", "WINOGRAD_TILE", "winograd_correlate",
           "winograd_input_gradient", "winograd_weight_gradient", "BLAS_THREADS", "blas_threads",
           "environment", "environment_summary"]


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
    acc = np.zeros((_chunks(n), dy.shape[1], kh * kw * c), x.dtype)
    conv.weight_gradient(channels_last(x), np.ascontiguousarray(dy), kh, kw, top, left, oh, ow,
                         block, acc)
    return acc.sum(axis=0)


def environment():
    """What a run's numbers depend on (kernels/provenance.py): versions, BLAS, backend,
    the convolution algorithm of the paper's layers (3x3, 32 -> 64 channels), threads, CPU."""
    return _provenance.environment({dtype.__name__: conv_algorithm(32, 64, 3, 10, 10, dtype)
                                    for dtype in (np.float32, np.float64)})


# -- the layers' products: pieces fixed by the shapes, the same bits on any thread count
def _gemm_kernels():
    return implementation("gemm") if has("gemm") else _numpy_gemm   # cuda: on the host


def _operand(name, a, dtype):
    """(array with contiguous rows, transposed?): ``a`` as it lies where it or its
    transpose has contiguous rows (``W.T`` is taken as W, transposed), else a copy."""
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if a.dtype == dtype:
        for stored, transposed in ((a, False), (a.T, True)):
            if stored.strides[1] == a.itemsize and stored.strides[0] >= stored.shape[1] * a.itemsize:
                return stored, transposed
    return np.ascontiguousarray(a, dtype), False


def matmul(a, b, out=None):
    """a (M, K) @ b (K, N) -> (M, N), cut into pieces fixed by M and N (kernels/gemm.py):
    the same bits on any number of threads. ``a`` and ``b`` are taken as they lie where
    their rows or their columns are contiguous (``x.T``, ``W.T``); ``out``: where to write
    (rows contiguous)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (M, K) @ (K, N), got {a.shape} @ {b.shape}")
    dtype = np.result_type(a.dtype, b.dtype)
    shape = (a.shape[0], b.shape[1])
    (a, a_transposed), (b, b_transposed) = _operand("a", a, dtype), _operand("b", b, dtype)
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or out.strides[1] != out.itemsize:
        raise ValueError(f"matmul out must be a {shape} {dtype} array with contiguous rows")
    _gemm_kernels().product(a, b, a_transposed, b_transposed, *_numpy_gemm.plan(*shape), out)
    return out


def column_sums(a):
    """a (R, F) summed over its rows, (F,) (a bias gradient): a row of ones times ``a``,
    the rows cut into pieces fixed by R, each piece summed by one thread, the pieces
    added in order (the same bits on any thread count)."""
    if a.ndim != 2:
        raise ValueError(f"column_sums needs a 2-D array, got shape {a.shape}")
    rows, columns = a.shape
    a, transposed = _operand("a", a, a.dtype)
    partial = np.empty((_chunks(rows), 1, columns), a.dtype)
    _gemm_kernels().inner_pieces(np.ones((1, rows), a.dtype), a, False, transposed, partial)
    return partial.sum(axis=0)[0]


def _in_memory_order(a):
    """a's values as a 1-D view in the order they lie in memory, or None where they are not
    one dense block (a slice with gaps)."""
    flat = a.ravel(order="K")
    return flat if np.may_share_memory(flat, a) else None


def _relu_kernels():
    return implementation("relu") if has("relu") else _numpy_relu   # cuda: arrays on the host


def relu_forward(x):
    """(max(x, 0), x > 0) of a float array, both in x's memory layout (an NCHW view of
    channels-last memory gives NCHW views of channels-last memory)."""
    flat = _in_memory_order(x)
    if flat is None:
        x = np.copy(x, order="K")
        flat = _in_memory_order(x)
    out = np.empty_like(x)
    mask = np.empty_like(x, dtype=bool)
    _relu_kernels().forward(flat, _in_memory_order(out), _in_memory_order(mask).view(np.uint8))
    return out, mask


def relu_backward(dy, mask):
    """dy * mask for dy (S * N, ...) holding S stacked copies of mask's shape (N, ...),
    in mask's memory layout."""
    if len(dy) % len(mask) or dy.shape[1:] != mask.shape[1:]:
        raise ValueError(f"dy of shape {dy.shape} does not stack copies of the mask's shape "
                         f"{mask.shape}")
    dx = np.empty_like(mask, dtype=dy.dtype, shape=dy.shape)
    if dx.strides != dy.strides or _in_memory_order(dy) is None:
        dx[...] = dy                            # dy in the mask's layout, then in place
        dy = dx
    _relu_kernels().backward(_in_memory_order(dy), _in_memory_order(mask).view(np.uint8),
                             _in_memory_order(dx))
    return dx


def saliency_pairs(alpha, beta, domain, increase=True):
    """JSMA's best pixel pair of every image: (N, 2) int64, (-1, -1) where none is admissible.

    alpha, beta : (N, M) float (same dtype); domain : (N, M) bool search domain.
    increase=False is the decreasing variant (A < 0, B > 0), searched as the
    increasing one on (-alpha, -beta).
    """
    if alpha.ndim != 2 or alpha.shape != beta.shape or alpha.shape != domain.shape:
        raise ValueError(f"alpha, beta and domain must share one (N, M) shape, got "
                         f"{alpha.shape}, {beta.shape}, {domain.shape}")
    if alpha.dtype != beta.dtype or alpha.dtype.kind != "f":
        raise TypeError(f"alpha and beta must share one float dtype, got {alpha.dtype}, {beta.dtype}")
    if not increase:
        alpha, beta = -alpha, -beta
    pairs = np.empty((len(alpha), 2), dtype=np.int64)
    implementation("saliency").pair_search(
        np.ascontiguousarray(alpha), np.ascontiguousarray(beta),
        np.ascontiguousarray(domain, dtype=np.uint8), pairs)
    return pairs


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


# -- Carlini-Wagner ----------------------------------------------------------
CW_L2, CW_LINF = _numpy_cw.L2, _numpy_cw.LINF


def _contiguous(name, a, dtype, ndim):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim \
            or not a.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {ndim}-d {np.dtype(dtype)} array, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
    return a


def cw_margin(z, labels, targeted, kappa, const, loss, dz, success):
    """Carlini & Wagner's f_6 on logits z (N, K): fills loss = const * f (N,),
    dz = d loss / dz (N, K) and success (N,) uint8. See kernels/cw.py."""
    dtype = z.dtype
    _contiguous("z", z, dtype, 2)
    _contiguous("labels", labels, np.int64, 1)
    for name, a in (("const", const), ("loss", loss)):
        _contiguous(name, a, dtype, 1)
    _contiguous("dz", dz, dtype, 2)
    _contiguous("success", success, np.uint8, 1)
    implementation("cw").cw_margin(z, labels, bool(targeted), float(kappa), const, loss, dz,
                                   success)


def cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, *, norm, step, lr, boxmul, lo, hi):
    """One Adam step of the CW attack on (N, M) arrays, in place. See kernels/cw.py."""
    dtype = w.dtype
    for name, a in (("w", w), ("m", m), ("v", v), ("s0", s0), ("x0", x0), ("grad_x", grad_x),
                    ("mask", mask), ("x", x)):
        _contiguous(name, a, dtype, 2)
        if a.shape != w.shape:
            raise ValueError(f"{name} must have shape {w.shape}, got {a.shape}")
    _contiguous("tau", tau, dtype, 1)
    _contiguous("dist", dist, dtype, 1)
    implementation("cw").cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm=norm,
                                   step=int(step), lr=float(lr), boxmul=float(boxmul),
                                   lo=float(lo), hi=float(hi), beta1=_numpy_cw.ADAM_BETA1,
                                   beta2=_numpy_cw.ADAM_BETA2, epsilon=_numpy_cw.ADAM_EPSILON)


def cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w):
    """Best-so-far bookkeeping of CW L2, in place. See kernels/cw.py."""
    dtype = x.dtype
    for name, a in (("x", x), ("w", w), ("best_x", best_x), ("best_w", best_w)):
        _contiguous(name, a, dtype, 2)
        if a.shape != x.shape:
            raise ValueError(f"{name} must have shape {x.shape}, got {a.shape}")
    for name, a in (("dist", dist), ("step_best", step_best), ("best_dist", best_dist)):
        _contiguous(name, a, dtype, 1)
    _contiguous("success", success, np.uint8, 1)
    implementation("cw").cw_track(x, w, dist, success, step_best, best_dist, best_x, best_w)


# -- the convolution's algorithm: im2col + GEMM, direct, or Winograd F(2x2, 3x3) / F(4x4, 3x3)
CONV_ALGORITHMS = ("auto", "im2col", "direct", "winograd2", "winograd4")
_conv_algorithm = None              # set by use_conv; None: NPDISTILL_CONV, else "auto"


def use_conv(name):
    """Make every convolution run as ``name``: "auto" (the default: ``conv_algorithm``'s
    rule), "im2col", "direct" (ext/direct_conv.h), or for 3x3 kernels "winograd2"
    (F(2x2, 3x3)) or "winograd4" (F(4x4, 3x3)). Overrides ``NPDISTILL_CONV``. Where the
    active backend lacks an algorithm's kernels (float64 and CPUs without AVX-512F have no
    direct kernels, cuda has neither), the convolution runs im2col."""
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
    they run (float32, the "cython" backend on a CPU with AVX-512F), else im2col: on
    the machine of bench/RESULTS.md the direct kernels beat im2col and Winograd on every
    layer of the paper's net, and Winograd does not beat im2col."""
    chosen = _conv_algorithm or os.environ.get("NPDISTILL_CONV", "auto")
    if chosen not in CONV_ALGORITHMS:
        raise ValueError(f"NPDISTILL_CONV={chosen!r}: expected one of {CONV_ALGORITHMS}")
    if chosen in ("auto", "direct"):
        return "direct" if has("direct") and np.dtype(dtype) == np.float32 else "im2col"
    if kernel_size != 3 or chosen == "im2col" or not has("winograd"):
        return "im2col"
    return chosen


# The direct input gradient writes C channels in vectors of 16: with fewer (an image
# net's first layer) im2col's col2im is faster (bench/direct_checks.py: conv 1->32's input
# gradient 2.6 ms direct, 0.8 ms im2col).
DIRECT_MIN_CHANNELS = 16


def direct_correlate(x, W, pads, bias=None, rectify=False):
    """x (N, H, W, C) channels-last, float32, correlated with W (F, C, kh, kw) by the
    direct kernels, padding (top, bottom, left, right) -> (N, oh, ow, F) channels-last,
    plus ``bias`` (F,); rectify: max(., 0) in the same pass (the ReLU after the layer)."""
    _contiguous("x", x, np.float32, 4)
    F, C, kh, kw = W.shape
    if x.shape[3] != C:
        raise ValueError(f"x has {x.shape[3]} channels, the weights {C}")
    oh = conv_output_size(x.shape[1], kh, pads[0], pads[1])
    ow = conv_output_size(x.shape[2], kw, pads[2], pads[3])
    y = np.empty((len(x), oh, ow, F), np.float32)
    bias = np.zeros(F, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    implementation("direct").correlate(x, _numpy_direct.packed(W.astype(np.float32, copy=False)),
                                       bias, kh, kw, pads[0], pads[2], y, rectify)
    return y


def direct_input_gradient(dy, W, pads):
    """dL/dx (N, H, W, C) channels-last of ``direct_correlate`` given dy (N, oh, ow, F)."""
    return direct_correlate(dy, flipped(W), gradient_padding(pads, W.shape[-1]))


def direct_weight_gradient(x, dy, pads, kernel_size):
    """dL/dW (F, C, k, k) of ``direct_correlate`` at x (N, H, W, C) given dy (N, oh, ow, F),
    both channels-last float32; chunks of images fixed by N are summed apart and added in
    order (the same bits on any thread count)."""
    _contiguous("x", x, np.float32, 4)
    _contiguous("dy", dy, np.float32, 4)
    k, C, F = kernel_size, x.shape[3], dy.shape[3]
    acc = np.zeros((_chunks(len(x)), k * k * C, F), np.float32)
    implementation("direct").weight_gradient(x, dy, k, k, pads[0], pads[2], acc)
    return np.ascontiguousarray(acc.sum(axis=0).reshape(k, k, C, F).transpose(3, 2, 0, 1))


WINOGRAD_TILE = {"winograd2": 2, "winograd4": 4}
_WINOGRAD_BLOCK_BYTES = 1 << 21     # a thread's transformed tiles and products, in cache


def _winograd_block(n, c, f, itemsize):
    """Tiles per block: the n*n transformed tiles (C values) and products (F) of a
    block fill _WINOGRAD_BLOCK_BYTES."""
    return max(4, _WINOGRAD_BLOCK_BYTES // (n * n * (c + f) * itemsize))


def _chunks(items):
    """How many chunks a sum over ``items`` (images, blocks) is cut into: fixed by the
    count, never by the thread count, so that the chunks' sums added in order give the
    same bits on any number of threads."""
    return max(1, min(items, _numpy_gemm.PIECES))


def winograd_correlate(x, W, m, pads, bias=None):
    """x (N, H, W, C) channels-last (*) W (F, C, 3, 3) with F(m x m, 3 x 3), padding
    (top, bottom, left, right) -> (N, oh, ow, F) channels-last, plus ``bias``."""
    _contiguous("x", x, x.dtype, 4)
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
    _contiguous("x", x, x.dtype, 4)
    _contiguous("dy", dy, x.dtype, 4)
    _, G, BT = _numpy_winograd.transforms(r, m, x.dtype)
    n, C, F = len(G), x.shape[3], dy.shape[3]
    tiles = len(x) * -(-dy.shape[1] // m) * -(-dy.shape[2] // m)
    blocks = -(-tiles // _winograd_block(n, C, F, x.dtype.itemsize))
    acc = np.zeros((_chunks(blocks), n * n, F, C), x.dtype)
    implementation("winograd").filter_products(x, dy, G, BT, pads[0], pads[2], acc,
                                               _winograd_block(n, C, F, x.dtype.itemsize))
    return _numpy_winograd.weight_gradient_from(acc, m, r)
