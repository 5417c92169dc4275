# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Matrix products and column sums whose bits do not depend on the thread count (the
compiled twin of npdistill/kernels/reference/gemm.py, which is the specification).

out = op(a) @ op(b) is cut into pieces along the larger of its two dimensions, with
boundaries fixed by the shapes alone; each piece is one single-threaded BLAS call over
the whole inner dimension (SciPy's ``cython_blas``, set to one thread by
kernels/threads.py) and the pieces run side by side on the OpenMP team. A piece computes
the same bits whichever thread runs it, so the product is the same on 1, 2 or N threads.

BLAS is column-major: a row-major (m, n) array is the column-major (n, m) matrix, so
out = op(a) @ op(b) is computed as out^T = op(b)^T op(a)^T.
"""
from cython.parallel cimport prange
from libc.string cimport memset
from _blas cimport gemm
from _types cimport floating


def product(const floating[:, :] a,   # IN  op(a) (M, K): a itself, or a.T when a_transposed
            const floating[:, :] b,   # IN  op(b) (K, N): b itself, or b.T when b_transposed
            bint a_transposed, bint b_transposed,
            bint split_rows,          # pieces of rows of out (else of its columns)
            Py_ssize_t piece,         # rows (columns) of out a BLAS call computes
            floating[:, :] out):      # OUT (M, N); every array's rows contiguous
    cdef Py_ssize_t M = out.shape[0], N = out.shape[1]
    cdef Py_ssize_t K = a.shape[0] if a_transposed else a.shape[1]
    cdef Py_ssize_t extent = M if split_rows else N
    cdef Py_ssize_t pieces = (extent + piece - 1) // piece, p, s, size
    cdef int lda = <int> (a.strides[0] // sizeof(floating))
    cdef int ldb = <int> (b.strides[0] // sizeof(floating))
    cdef int ldc = <int> (out.strides[0] // sizeof(floating))
    cdef const floating *pa
    cdef const floating *pb
    cdef floating *pc
    if M == 0 or N == 0:
        return
    if K == 0:
        out[:, :] = 0
        return
    for p in prange(pieces, nogil=True, schedule="static"):
        s = p * piece
        size = piece if s + piece <= extent else extent - s
        pa, pb, pc = &a[0, 0], &b[0, 0], &out[0, 0]
        if split_rows:           # rows s.. of op(a) and of out
            pa = pa + (s if a_transposed else s * lda)
            pc = pc + s * ldc
        else:                    # columns s.. of op(b) and of out
            pb = pb + (s * ldb if b_transposed else s)
            pc = pc + s
        gemm("T" if b_transposed else "N", "T" if a_transposed else "N",
             <int> (N if split_rows else size), <int> (size if split_rows else M), <int> K,
             pb, ldb, pa, lda, 0, pc, ldc)


def column_sum_pieces(const floating[:, :] a,   # IN  op(a) (R, F): a, or a.T when transposed
                      bint transposed,
                      floating[:, ::1] out):        # OUT (pieces, F)
    """out[p] = the rows R_p = p*R//pieces .. (p+1)*R//pieces of op(a) added one after
    another from the first (the order of the reference's running sum: the same bits), 0
    for an empty piece; the pieces side by side on the OpenMP team, the caller adds them
    in order. A bias gradient: the columns of dy summed (as a 1 x R product with a row of
    ones through OpenBLAS, as it was, 3.5-4x slower: bench/direct_checks.py)."""
    cdef Py_ssize_t pieces = out.shape[0], F = out.shape[1]
    cdef Py_ssize_t R = a.shape[1] if transposed else a.shape[0], p, s, e, r, f
    cdef Py_ssize_t ld = a.strides[0] // sizeof(floating)
    cdef const floating *row
    cdef floating *acc
    if F == 0:
        return
    for p in prange(pieces, nogil=True, schedule="static"):
        s, e = p * R // pieces, (p + 1) * R // pieces
        acc = &out[p, 0]
        if e == s:
            memset(acc, 0, F * sizeof(floating))
        elif transposed:            # column f of op(a) is row f of a, contiguous
            for f in range(F):
                row = &a[0, 0] + f * ld
                acc[f] = row[s]
                for r in range(s + 1, e):
                    acc[f] = acc[f] + row[r]
        else:                       # every row contiguous: the channels in vectors
            row = &a[0, 0] + s * ld
            for f in range(F):
                acc[f] = row[f]
            for r in range(s + 1, e):
                row = &a[0, 0] + r * ld
                for f in range(F):
                    acc[f] = acc[f] + row[f]
