# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Non-overlapping max pooling on channels-last images, the compiled twin of
npdistill/kernels/pool.py.

Ties go to the first maximum in row-major window order (strict >), as in the
reference; argmax holds a * size + b of the maximum of each window. The
channel loop is innermost: contiguous in memory.
"""
from cython.parallel cimport prange
from libc.string cimport memset
from _types cimport floating


def maxpool_forward(const floating[:, :, :, ::1] x,   # IN  (N, H, W, C)
                    Py_ssize_t size,
                    floating[:, :, :, ::1] out,        # OUT (N, oh, ow, C)
                    long long[:, :, :, ::1] argmax):   # OUT (N, oh, ow, C)
    cdef Py_ssize_t N = out.shape[0], oh = out.shape[1], ow = out.shape[2], C = out.shape[3]
    cdef Py_ssize_t n, i, j, a, b, c
    cdef floating value
    for n in prange(N, nogil=True, schedule="static"):
        for i in range(oh):
            for j in range(ow):
                for c in range(C):
                    out[n, i, j, c] = x[n, i * size, j * size, c]
                    argmax[n, i, j, c] = 0
                for a in range(size):
                    for b in range(size):
                        if a == 0 and b == 0:
                            continue
                        for c in range(C):
                            value = x[n, i * size + a, j * size + b, c]
                            if value > out[n, i, j, c]:
                                out[n, i, j, c] = value
                                argmax[n, i, j, c] = a * size + b


def maxpool_backward(const floating[:, :, :, ::1] dy,       # IN  (N', oh, ow, C)
                     const long long[:, :, :, ::1] argmax,  # IN  (N, oh, ow, C), N' = S * N
                     Py_ssize_t size,
                     floating[:, :, :, ::1] dx):            # OUT (N', H, W, C), overwritten
    cdef Py_ssize_t N = dy.shape[0], oh = dy.shape[1], ow = dy.shape[2], C = dy.shape[3]
    cdef Py_ssize_t H = dx.shape[1], W = dx.shape[2], n_fwd = argmax.shape[0]
    cdef Py_ssize_t n, i, j, c, at
    for n in prange(N, nogil=True, schedule="static"):
        memset(&dx[n, 0, 0, 0], 0, H * W * C * sizeof(floating))
        for i in range(oh):
            for j in range(ow):
                for c in range(C):
                    at = argmax[n % n_fwd, i, j, c]   # stacked seeds share the forward's argmax
                    dx[n, i * size + at // size, j * size + at % size, c] = dy[n, i, j, c]
