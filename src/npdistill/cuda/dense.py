"""Dense algebra on the GPU: the GEMM of kernels/reference/cuda_dense.py (its specification), as
cuda/fused.py's product of two plain (or transposed) matrices."""
import numpy as np

from . import fused
from .fused import MIN_SPLIT_DEPTH, SPLIT_TARGET, WORK, split_count

__all__ = ["gemm", "split_count", "SPLIT_TARGET", "MIN_SPLIT_DEPTH", "WORK"]


def gemm(a, b, out, trans_a=False, trans_b=False, accumulate=False, splits=None, work=WORK):
    """out = op(a) @ op(b) (or out += ... when ``accumulate``); op transposes when asked.

    splits: how many blocks share the inner dimension (None: chosen by split_count);
    work: outputs per thread along each side of a tile (1 or 4).
    """
    rows_a, inner = (a.shape[1], a.shape[0]) if trans_a else a.shape
    inner_b, cols_b = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if inner != inner_b or out.shape != (rows_a, cols_b) or a.dtype != b.dtype != out.dtype:
        raise ValueError(f"gemm: op(a) {rows_a}x{inner} @ op(b) {inner_b}x{cols_b} into out "
                         f"{out.shape} ({a.dtype}, {b.dtype}, {out.dtype})")
    if isinstance(out, np.ndarray) and not out.flags.c_contiguous:
        raise ValueError(f"gemm: out must be C-contiguous, got strides {out.strides}")
    fused.product(fused.MAT_T if trans_a else fused.MAT, np.ascontiguousarray(a)
                  if isinstance(a, np.ndarray) else a,
                  fused.MAT_T if trans_b else fused.MAT, np.ascontiguousarray(b)
                  if isinstance(b, np.ndarray) else b,
                  rows_a, inner, cols_b, out, epilogue=fused.ACCUM if accumulate else fused.STORE,
                  splits=splits, work=work)
