# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Winograd F(m x m, 3 x 3) correlation on channels-last images, fused per block of
tiles (the compiled twin of npdistill/kernels/reference/winograd.py's ``correlate``).

The tiles are cut in blocks of ``block`` tiles; each thread of the ``prange``
takes a block and, with buffers of its own that stay in cache:

1. gathers every tile's n x n x C input (zeros outside the image: the padding)
   and writes B^T d B into V[xi][p][c];
2. runs the n * n products M[xi] = V[xi] (block x C) @ U[xi] (C x F) through
   scipy's BLAS (``cython_blas``), one single-threaded call each;
3. transforms every tile back, A^T M A, adds the bias and writes the m x m x F
   outputs that fall inside the image.

The transforms loop over channels innermost (contiguous with channels last, so
the compiler vectorises them) and skip the matrices' zero coefficients.
U = G W G^T (n * n, C, F) comes transformed from the caller, once per call.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm
from _types cimport floating


def correlate(const floating[:, :, :, ::1] x,      # IN  (N, H, W, C) channels last
              const floating[:, :, ::1] U,         # IN  (n*n, C, F) transformed weights
              const floating[::1] bias,            # IN  (F,) (zeros for none)
              const floating[:, ::1] at,           # IN  (m, n) A^T
              const floating[:, ::1] bt,           # IN  (n, n) B^T
              Py_ssize_t pad_top, Py_ssize_t pad_left,
              floating[:, :, :, ::1] y,            # OUT (N, oh, ow, F)
              Py_ssize_t block):
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oh = y.shape[1], ow = y.shape[2], F = y.shape[3]
    cdef Py_ssize_t m = at.shape[0], n = at.shape[1], nn = n * n
    cdef Py_ssize_t th = (oh + m - 1) // m, tw = (ow + m - 1) // m
    cdef Py_ssize_t tiles = N * th * tw, blocks = (tiles + block - 1) // block
    cdef Py_ssize_t b, p, p0, count, t, img, ty, tx, i, j, k, l, c, f, xi, yy, xx
    cdef floating *d
    cdef floating *tmp
    cdef floating *V
    cdef floating *M
    cdef floating *src
    cdef floating *dst
    cdef floating coef
    cdef floating one = 1, zero = 0
    cdef int gm, gn, gk, lda, ldb, ldc
    with nogil, parallel():
        d = <floating *> malloc(nn * C * sizeof(floating))
        tmp = <floating *> malloc(nn * (C if C > F else F) * sizeof(floating))
        V = <floating *> malloc(nn * block * C * sizeof(floating))
        M = <floating *> malloc(nn * block * F * sizeof(floating))
        for b in prange(blocks, schedule="dynamic"):
            p0 = b * block
            count = block if p0 + block <= tiles else tiles - p0
            for p in range(count):                       # 1. input transform
                _input_tile(x, bt, p0 + p, th, tw, m, pad_top, pad_left, d, tmp,
                            V + p * C, block * C)
            gm, gn, gk = <int> F, <int> count, <int> C   # 2. M[xi] = V[xi] @ U[xi]
            lda, ldb, ldc = <int> F, <int> C, <int> F
            for xi in range(nn):
                if floating is float:
                    sgemm("N", "N", &gm, &gn, &gk, &one, <float *> &U[xi, 0, 0], &lda,
                          V + xi * block * C, &ldb, &zero, M + xi * block * F, &ldc)
                else:
                    dgemm("N", "N", &gm, &gn, &gk, &one, <double *> &U[xi, 0, 0], &lda,
                          V + xi * block * C, &ldb, &zero, M + xi * block * F, &ldc)
            for p in range(count):                       # 3. output transform + bias
                t = p0 + p
                img = t // (th * tw)
                ty = (t // tw) % th
                tx = t % tw
                for i in range(m):                       # tmp = A^T M (m x n x F)
                    for l in range(n):
                        dst = tmp + (i * n + l) * F
                        for f in range(F):
                            dst[f] = 0
                        for j in range(n):
                            coef = at[i, j]
                            if coef != 0:
                                src = M + ((j * n + l) * block + p) * F
                                for f in range(F):
                                    dst[f] = dst[f] + coef * src[f]
                for i in range(m):
                    yy = ty * m + i
                    if yy >= oh:
                        break
                    for k in range(m):
                        xx = tx * m + k
                        if xx >= ow:
                            break
                        dst = &y[img, yy, xx, 0]
                        for f in range(F):
                            dst[f] = bias[f]
                        for l in range(n):
                            coef = at[k, l]
                            if coef != 0:
                                src = tmp + (i * n + l) * F
                                for f in range(F):
                                    dst[f] = dst[f] + coef * src[f]
        free(d)
        free(tmp)
        free(V)
        free(M)



def filter_products(const floating[:, :, :, ::1] x,   # IN  (N, H, W, C) channels last
                    const floating[:, :, :, ::1] dy,  # IN  (N, oh, ow, F) channels last
                    const floating[:, ::1] g,         # IN  (n, m) G of F(3, m)
                    const floating[:, ::1] bt,        # IN  (n, n) B^T of F(3, m)
                    Py_ssize_t pad_top, Py_ssize_t pad_left,
                    floating[:, :, :, ::1] acc,       # INOUT (chunks, n*n, F, C)
                    Py_ssize_t block):
    """The weight gradient's products in the transformed domain (the compiled twin of
    the sum over tiles in kernels/reference/winograd.py's ``weight_gradient``): for every n x n
    input tile d and the m x m tile of dy it produced, acc[chunk, xi] += (G dy G^T)[xi]
    (F) outer (B^T d B)[xi] (C), as one GEMM (F x tiles) @ (tiles x C) per block and xi.
    The blocks are cut into acc.shape[0] chunks of consecutive blocks, fixed by the
    shapes: a chunk's sum is the same whichever thread makes it, and the caller adds the
    chunks in order (the same bits on any thread count) and applies A^T . A."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oh = dy.shape[1], ow = dy.shape[2], F = dy.shape[3]
    cdef Py_ssize_t n = g.shape[0], m = g.shape[1], nn = n * n
    cdef Py_ssize_t th = (oh + m - 1) // m, tw = (ow + m - 1) // m
    cdef Py_ssize_t tiles = N * th * tw, blocks = (tiles + block - 1) // block
    cdef Py_ssize_t b, p, p0, count, t, img, ty, tx, i, j, k, l, c, f, xi, yy, xx
    cdef floating *d
    cdef floating *e
    cdef floating *tmp
    cdef floating *V
    cdef floating *Ug
    cdef floating *src
    cdef floating *dst
    cdef floating coef
    cdef floating one = 1
    cdef int gm, gn, gk, lda, ldb, ldc
    cdef Py_ssize_t chunks = acc.shape[0], chunk
    with nogil, parallel():
        d = <floating *> malloc(nn * C * sizeof(floating))
        e = <floating *> malloc(m * m * F * sizeof(floating))
        tmp = <floating *> malloc(nn * (C if C > F else F) * sizeof(floating))
        V = <floating *> malloc(nn * block * C * sizeof(floating))
        Ug = <floating *> malloc(nn * block * F * sizeof(floating))
        for chunk in prange(chunks, schedule="static"):   # chunk: blocks fixed by N
            for b in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
                p0 = b * block
                count = block if p0 + block <= tiles else tiles - p0
                for p in range(count):
                    t = p0 + p
                    _input_tile(x, bt, t, th, tw, m, pad_top, pad_left, d, tmp, V + p * C,
                                block * C)
                    img, ty, tx = t // (th * tw), (t // tw) % th, t % tw
                    for k in range(m):                       # the dy tile (zeros past oh, ow)
                        yy = ty * m + k
                        for j in range(m):
                            xx = tx * m + j
                            dst = e + (k * m + j) * F
                            if yy >= oh or xx >= ow:
                                memset(dst, 0, F * sizeof(floating))
                            else:
                                src = <floating *> &dy[img, yy, xx, 0]
                                for f in range(F):
                                    dst[f] = src[f]
                    _transform(g, e, tmp, Ug + p * F, n, m, F, block * F)
                gm, gn, gk = <int> C, <int> F, <int> count
                lda, ldb, ldc = <int> C, <int> F, <int> C
                for xi in range(nn):
                    if floating is float:
                        sgemm("N", "T", &gm, &gn, &gk, &one, <float *> (V + xi * block * C), &lda,
                              <float *> (Ug + xi * block * F), &ldb, &one,
                              <float *> &acc[chunk, xi, 0, 0], &ldc)
                    else:
                        dgemm("N", "T", &gm, &gn, &gk, &one, <double *> (V + xi * block * C), &lda,
                              <double *> (Ug + xi * block * F), &ldb, &one,
                              <double *> &acc[chunk, xi, 0, 0], &ldc)
        free(d)
        free(e)
        free(tmp)
        free(V)
        free(Ug)


cdef inline void _input_tile(const floating[:, :, :, ::1] x, const floating[:, ::1] bt,
                             Py_ssize_t t, Py_ssize_t th, Py_ssize_t tw, Py_ssize_t m,
                             Py_ssize_t pad_top, Py_ssize_t pad_left, floating *d,
                             floating *tmp, floating *out, Py_ssize_t stride) noexcept nogil:
    """B^T d B of tile t (tiles run image by image, row by row) into out (stride apart)."""
    cdef Py_ssize_t n = bt.shape[0]
    _gather(x, t // (th * tw), (t // tw) % th * m - pad_top, t % tw * m - pad_left, n, d)
    _transform(bt, d, tmp, out, n, n, x.shape[3], stride)


cdef inline void _gather(const floating[:, :, :, ::1] x, Py_ssize_t img, Py_ssize_t top,
                         Py_ssize_t left, Py_ssize_t n, floating *d) noexcept nogil:
    """d (n, n, C) = the n x n window of image ``img`` whose corner is (top, left), with
    zeros where it leaves the image (the padding)."""
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], C = x.shape[3], k, j, c, yy, xx
    cdef floating *dst
    cdef const floating *src
    for k in range(n):
        yy = top + k
        for j in range(n):
            xx = left + j
            dst = d + (k * n + j) * C
            if yy < 0 or yy >= H or xx < 0 or xx >= W:
                memset(dst, 0, C * sizeof(floating))
            else:
                src = &x[img, yy, xx, 0]
                for c in range(C):
                    dst[c] = src[c]


cdef inline void _transform(const floating[:, ::1] T, const floating *src, floating *tmp,
                            floating *out, Py_ssize_t n, Py_ssize_t k, Py_ssize_t C,
                            Py_ssize_t stride) noexcept nogil:
    """out[(i n + l) * stride + c] = (T s T^T)[i, l, c] for s (k, k, C) at src, T (n, k):
    T s into tmp (n * k * C values), then (T tmp^T)^T into out."""
    _left(T, src, k * C, C, tmp, k * C, C, n, k, k, C)
    _left(T, tmp, C, k * C, out, stride, n * stride, n, k, n, C)


cdef inline void _left(const floating[:, ::1] T, const floating *src, Py_ssize_t src_q,
                       Py_ssize_t src_j, floating *dst, Py_ssize_t dst_i, Py_ssize_t dst_j,
                       Py_ssize_t rows, Py_ssize_t k, Py_ssize_t cols,
                       Py_ssize_t C) noexcept nogil:
    """dst[i, j] = sum_q T[i, q] src[q, j] for i < rows, j < cols, every entry a vector of
    C values at the given strides (in values); zero coefficients skipped."""
    cdef Py_ssize_t i, j, q, c
    cdef floating coef
    cdef floating *out
    cdef const floating *row
    for i in range(rows):
        for j in range(cols):
            out = dst + i * dst_i + j * dst_j
            for c in range(C):
                out[c] = 0
            for q in range(k):
                coef = T[i, q]
                if coef != 0:
                    row = src + q * src_q + j * src_j
                    for c in range(C):
                        out[c] = out[c] + coef * row[c]
