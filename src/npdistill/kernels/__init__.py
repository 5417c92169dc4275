"""The hot loops, and the dispatch that picks their implementation.

Each kernel has one signature in ``npdistill.kernels.<module>`` (NumPy, the
specification) and in the compiled ``npdistill._ext.<module>`` (Cython), for
the modules ``conv`` (im2col / col2im), ``pool`` (max pooling),
``saliency`` (JSMA's pair search) and ``cw`` (the Carlini-Wagner step). The
functions here check and allocate, then call the active backend, which only
computes into the buffers it is given.

Pick a backend with ``use("numpy" | "cython" | "cuda")`` (for a block: ``with
using(name):``) or the environment variable ``NPDISTILL_BACKEND``; the default is
the fastest available: "cuda" where numba-cuda is installed and an NVIDIA device
is present, else "cython".
If the compiled extension is missing the library warns once and runs on the
NumPy reference. The CUDA kernels (npdistill/cuda) are imported only when
"cuda" is asked for or chosen: importing npdistill never needs numba.
With "cuda", the functions below move NumPy arguments to the device and back;
``train`` and the attacks keep their arrays there (npdistill.placement says how).
"""
import contextlib
import glob
import importlib.util
import math
import os
import warnings

import numpy as np

# OpenMP threads that spin after a parallel region steal the cores from
# OpenBLAS's threads in the GEMM that follows: measured 3.9 -> 14 images/s on
# JSMA (bench/jsma_speed.py, 2 cores). libgomp reads this once, when the
# compiled kernels load it below; a value the user set is kept.
WAIT_POLICY_SET_HERE = "OMP_WAIT_POLICY" not in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import conv as _numpy_conv  # noqa: E402
from . import cw as _numpy_cw  # noqa: E402
from . import pool as _numpy_pool  # noqa: E402
from . import saliency as _numpy_saliency  # noqa: E402

BACKENDS = ("numpy", "cython", "cuda")

_impl = {"numpy": {"conv": _numpy_conv, "pool": _numpy_pool, "saliency": _numpy_saliency,
                   "cw": _numpy_cw}}
_missing = {}
try:
    from .._ext import conv as _cython_conv
    from .._ext import cw as _cython_cw
    from .._ext import pool as _cython_pool
    from .._ext import saliency as _cython_saliency
except ImportError as exc:  # a source checkout that was never built
    _missing["cython"] = f"{exc} (build it with `pip install .` or `pip install -e .`)"
else:
    _impl["cython"] = {"conv": _cython_conv, "pool": _cython_pool, "saliency": _cython_saliency,
                       "cw": _cython_cw}


def _load_cuda():
    """Import the CUDA kernels into _impl, or record why they cannot run."""
    if "cuda" in _impl:
        return True
    from .. import cuda
    try:
        _impl["cuda"] = cuda.load()
    except RuntimeError as exc:
        _missing["cuda"] = str(exc)
        return False
    return True


def _gpu_present():
    """numba-cuda installed and an NVIDIA device node here: worth importing numba to check."""
    return (importlib.util.find_spec("numba_cuda") is not None
            and bool(glob.glob("/dev/nvidia[0-9]*")))


def available():
    """The backends that can run here, fastest first ("cuda" only where a GPU is present,
    or when the simulator was asked for with NUMBA_ENABLE_CUDASIM=1 and "cuda" used)."""
    return tuple(name for name in reversed(BACKENDS) if name in _impl)


def _checked(name, variable=None):
    """``name`` if it is a backend that can run here, else a ValueError (naming the
    environment ``variable`` it came from, if any)."""
    said = f"{variable}={name!r}: " if variable else ""
    if name not in BACKENDS:
        raise ValueError(f"{said}unknown backend {name!r}: expected one of {BACKENDS}")
    if name == "cuda":
        _load_cuda()
    if name not in _impl:
        raise ValueError(f"{said}backend {name!r} is not available: {_missing[name]}")
    return name


def use(name):
    """Make ``name`` ("numpy", "cython" or "cuda") the backend of every kernel.

    It overrides ``NPDISTILL_BACKEND``, which is then never read.
    """
    global _active
    _active = _checked(name)


@contextlib.contextmanager
def using(name):
    """``with using("numpy"):`` runs the block on that backend, then restores the one before."""
    previous = backend()
    use(name)
    try:
        yield name
    finally:
        use(previous)


def backend():
    """The name of the active backend, chosen on first use (see the module's docstring)."""
    global _active
    if _active is None:
        _active = _default_backend()
    return _active


def _default_backend():
    requested = os.environ.get("NPDISTILL_BACKEND")
    if requested:
        return _checked(requested, "NPDISTILL_BACKEND")
    if _gpu_present() and _load_cuda():
        return "cuda"
    if "cython" in _missing:
        warnings.warn("npdistill: compiled kernels not found, running on the NumPy reference: "
                      + _missing["cython"], RuntimeWarning, stacklevel=4)
    return available()[0]


# Chosen on first use, not at import: a bad NPDISTILL_BACKEND must not break `import
# npdistill` or `npdistill --help`, and `use()` (the CLI's --backend) overrides it unread.
_active = None


def conv_output_size(in_size, kernel, pad_before, pad_after):
    return in_size + pad_before + pad_after - kernel + 1


# Layout. The layers see NCHW arrays; the convolution and pooling kernels work
# channels-last, where every window row is one contiguous run. Their outputs
# are NCHW views of channels-last memory, so that the next kernel reads them
# without a copy (``channels_last`` is then free) and the GEMM output of a
# convolution is already its result.
def channels_last(x):
    """The (N, H, W, C) C-contiguous array behind x (N, C, H, W); a copy only when needed.

    It has the strides of a new array: NumPy calls the transposed view of single-channel
    images contiguous whatever its last stride, and cuda.to_device keeps such strides,
    which Numba's device reshape then refuses ("operation requires copying").
    """
    xh = x.transpose(0, 2, 3, 1)
    if xh.flags.c_contiguous:
        return xh.reshape(-1).reshape(xh.shape)        # a view still, with standard strides
    return np.ascontiguousarray(xh)


def empty_nchw(shape, dtype):
    """An uninitialised NCHW array of ``shape`` backed by channels-last memory."""
    n, c, h, w = shape
    return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def im2col(x, kh, kw, pads, out=None):
    """x (N, C, H, W) -> cols (N*oh*ow, kh*kw*C), columns in (a, b, c) order.

    pads = (top, bottom, left, right); ``out``: a buffer to reuse (see ``_buffer``).
    """
    if x.ndim != 4:
        raise ValueError(f"im2col expects x of shape (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    oh = conv_output_size(h, kh, top, bottom)
    ow = conv_output_size(w, kw, left, right)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {h}x{w} image with padding {pads}")
    out = _buffer((n * oh * ow, kh * kw * c), x.dtype, out)
    _impl[backend()]["conv"].im2col(channels_last(x), kh, kw, top, left, oh, ow, out)
    return out


def _buffer(shape, dtype, out):
    """The leading entries of ``out``'s storage as an array of ``shape``, or a new array.

    ``out`` is what an earlier call returned: possibly a view of a larger
    storage (a partial last block); its whole storage is reused, so that a
    smaller call never shrinks the buffer and the next full block reallocates.
    """
    if out is not None and out.base is not None:
        out = out.base
    size = math.prod(shape)        # not np.prod: called for every block, its overhead shows
    if out is None or out.dtype != dtype or out.size < size or not out.flags.c_contiguous:
        return np.empty(shape, dtype=dtype)
    return out.reshape(-1)[:size].reshape(shape)


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
    _impl[backend()]["conv"].col2im(np.ascontiguousarray(cols), kh, kw, top, left, oh, ow, target)
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
    _impl[backend()]["saliency"].pair_search(
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
    _impl[backend()]["pool"].maxpool_forward(channels_last(x), size, channels_last(out),
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
    windows = _numpy_pool._windows(channels_last(x), size, oh, ow)     # (N, oh, ow, s*s, C)
    picked = np.take_along_axis(windows, channels_last(argmax)[:, :, :, None, :], axis=3)
    return picked[:, :, :, 0, :].transpose(0, 3, 1, 2)


def maxpool_backward(dy, argmax, x_shape, size):
    """dx of ``x_shape`` from dy (S * N, C, oh, ow) and the forward's argmax (N, C, oh, ow)."""
    if len(dy) % len(argmax) or dy.shape[1:] != argmax.shape[1:]:
        raise ValueError(f"dy of shape {dy.shape} does not match argmax of shape {argmax.shape}")
    dx = empty_nchw(x_shape, dy.dtype)
    _impl[backend()]["pool"].maxpool_backward(channels_last(dy), channels_last(argmax), size,
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
    _impl[backend()]["cw"].cw_margin(z, labels, bool(targeted), float(kappa), const, loss, dz,
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
    _impl[backend()]["cw"].cw_update(w, m, v, s0, x0, grad_x, mask, tau, x, dist, norm=norm,
                                   step=int(step), lr=float(lr), boxmul=float(boxmul),
                                   lo=float(lo), hi=float(hi))


def cw_track(x, dist, success, step_best, best_dist, best_x):
    """Best-so-far bookkeeping of CW L2, in place. See kernels/cw.py."""
    dtype = x.dtype
    _contiguous("x", x, dtype, 2)
    _contiguous("best_x", best_x, dtype, 2)
    for name, a in (("dist", dist), ("step_best", step_best), ("best_dist", best_dist)):
        _contiguous(name, a, dtype, 1)
    _contiguous("success", success, np.uint8, 1)
    _impl[backend()]["cw"].cw_track(x, dist, success, step_best, best_dist, best_x)
