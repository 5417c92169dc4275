"""NumPy reference of the layers' matrix products and column sums, cut into pieces fixed by
the shapes.

The specification ext/gemm.pyx is tested against. out = op(a) @ op(b) is cut along the
larger of its dimensions into pieces whose boundaries depend on the shapes alone; each
piece is one product over the whole inner dimension (in the compiled twin, one
single-threaded BLAS call). A BLAS call split by the library itself changes its
arithmetic with the thread count (OpenBLAS 0.3.31's one-thread and threaded drivers
differ in the last bits of a product as small as (4096, 8) @ (8, 64)); pieces fixed by
the shapes, each computed whole by one thread, give the same bits on any number of
threads (tests/test_determinism.py).
"""
import numpy as np

PIECES = 8          # the most pieces a product is cut into: enough for 8 cores
MIN_PIECE = 32      # rows (columns) of out a piece computes, at least


def plan(rows, columns):
    """(split_rows, piece): pieces along the larger of out's dimensions, at most PIECES
    of them, each at least MIN_PIECE wide and a multiple of 16 (whole tiles of the BLAS
    kernels)."""
    split_rows = rows >= columns
    extent = rows if split_rows else columns
    piece = max(MIN_PIECE, -(-extent // PIECES))
    return split_rows, -(-piece // 16) * 16


def pieces(extent, piece):
    """The (start, stop) of each piece of ``piece`` over ``extent``."""
    return [(s, min(extent, s + piece)) for s in range(0, extent, piece)]


def product(a, b, a_transposed, b_transposed, split_rows, piece, out):
    """out (M, N) = op(a) (M, K) @ op(b) (K, N); op(a) is a.T when ``a_transposed``
    (a given as (K, M)), op(b) likewise; cut into pieces of ``piece`` rows of out
    (``split_rows``) or columns."""
    op_a = a.T if a_transposed else a
    op_b = b.T if b_transposed else b
    for s, e in pieces(out.shape[0] if split_rows else out.shape[1], piece):
        if split_rows:
            np.matmul(op_a[s:e], op_b, out=out[s:e])
        else:
            np.matmul(op_a, op_b[:, s:e], out=out[:, s:e])


def column_sum_pieces(a, transposed, out):
    """out[p] (F,) = the rows R_p = p*R//pieces .. (p+1)*R//pieces of op(a) (R, F) added one
    after another from the first, 0 for an empty piece (pieces = len(out)); op(a) is a.T
    when ``transposed``; the caller adds the pieces in order. A running sum
    (``np.add.accumulate``) fixes the order, which the compiled twin follows: ``np.sum``
    adds a single column pairwise."""
    op_a = a.T if transposed else a
    rows, pieces = len(op_a), len(out)
    for p in range(pieces):
        s, e = p * rows // pieces, (p + 1) * rows // pieces
        out[p] = np.add.accumulate(op_a[s:e], axis=0)[-1] if e > s else 0
