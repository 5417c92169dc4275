# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Non-overlapping max pooling, the compiled twin of npdistill/kernels/pool.py.

Ties go to the first maximum in row-major window order (strict >), as in the
reference; argmax holds a * size + b of the maximum of each window.
"""
from cython.parallel cimport prange
from _types cimport floating


def maxpool_forward(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                    Py_ssize_t size,
                    floating[:, :, :, ::1] out,        # OUT (N, C, oh, ow)
                    long long[:, :, :, ::1] argmax):   # OUT (N, C, oh, ow)
    cdef Py_ssize_t N = out.shape[0], C = out.shape[1], oh = out.shape[2], ow = out.shape[3]
    cdef Py_ssize_t plane, n, c, i, j, a, b, best_at
    cdef floating best, value
    for plane in prange(N * C, nogil=True, schedule="static"):
        n = plane // C
        c = plane % C
        for i in range(oh):
            for j in range(ow):
                best = x[n, c, i * size, j * size]
                best_at = 0
                for a in range(size):
                    for b in range(size):
                        value = x[n, c, i * size + a, j * size + b]
                        if value > best:
                            best = value
                            best_at = a * size + b
                out[n, c, i, j] = best
                argmax[n, c, i, j] = best_at


def maxpool_backward(const floating[:, :, :, ::1] dy,       # IN  (N', C, oh, ow)
                     const long long[:, :, :, ::1] argmax,  # IN  (N, C, oh, ow), N' = S * N
                     Py_ssize_t size,
                     floating[:, :, :, ::1] dx):            # OUT (N', C, H, W), overwritten
    cdef Py_ssize_t N = dy.shape[0], C = dy.shape[1], oh = dy.shape[2], ow = dy.shape[3]
    cdef Py_ssize_t H = dx.shape[2], W = dx.shape[3], n_fwd = argmax.shape[0]
    cdef Py_ssize_t plane, n, c, i, j, y, x, at
    for plane in prange(N * C, nogil=True, schedule="static"):
        n = plane // C
        c = plane % C
        for y in range(H):
            for x in range(W):
                dx[n, c, y, x] = 0
        for i in range(oh):
            for j in range(ow):
                at = argmax[n % n_fwd, c, i, j]        # stacked seeds share the forward's argmax
                dx[n, c, i * size + at // size, j * size + at % size] = dy[n, c, i, j]
