"""The layers' matrix products and sums, cut into pieces fixed by the shapes: the same bits
on any thread count (reference/gemm.py says why; ext/gemm.pyx computes them)."""
import numpy as np

from .backends import has, implementation
from .reference import gemm as _numpy_gemm


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
    """a (M, K) @ b (K, N) -> (M, N), cut into pieces fixed by M and N (kernels/reference/gemm.py):
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
    """a (R, F) summed over its rows, (F,) (a bias gradient): the rows cut into pieces fixed
    by R, each piece summed in order by one thread, the pieces added in order (the same bits
    on any thread count)."""
    if a.ndim != 2:
        raise ValueError(f"column_sums needs a 2-D array, got shape {a.shape}")
    rows, columns = a.shape
    a, transposed = _operand("a", a, a.dtype)
    partial = np.empty((chunks(rows), columns), a.dtype)
    _gemm_kernels().column_sum_pieces(a, transposed, partial)
    return partial.sum(axis=0)


def chunks(items):
    """How many chunks a sum over ``items`` (images, blocks) is cut into: fixed by the
    count, never by the thread count, so that the chunks' sums added in order give the
    same bits on any number of threads."""
    return max(1, min(items, _numpy_gemm.PIECES))
