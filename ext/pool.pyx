# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Non-overlapping max pooling on channels-last images, the compiled twin of
npdistill/kernels/reference/pool.py: images in parallel, each by the vectorised loops of
pool_kernels.h.

Ties go to the first maximum in row-major window order (strict >), and a window holding
NaN gives NaN at its first NaN, as in the reference; argmax holds a * size + b of the
maximum of each window.
"""
from cython.parallel cimport prange
from _types cimport floating

cdef extern from "pool_kernels.h" nogil:
    void npd_maxpool_forward_f32(const float *x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t size,
                                 float *out, long long *argmax, Py_ssize_t oh, Py_ssize_t ow)
    void npd_maxpool_forward_f64(const double *x, Py_ssize_t W, Py_ssize_t C, Py_ssize_t size,
                                 double *out, long long *argmax, Py_ssize_t oh, Py_ssize_t ow)
    void npd_maxpool_backward_f32(const float *dy, const long long *argmax, Py_ssize_t size,
                                  float *dx, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                                  Py_ssize_t oh, Py_ssize_t ow)
    void npd_maxpool_backward_f64(const double *dy, const long long *argmax, Py_ssize_t size,
                                  double *dx, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                                  Py_ssize_t oh, Py_ssize_t ow)


def maxpool_forward(const floating[:, :, :, ::1] x,   # IN  (N, H, W, C)
                    Py_ssize_t size,
                    floating[:, :, :, ::1] out,        # OUT (N, oh, ow, C)
                    long long[:, :, :, ::1] argmax):   # OUT (N, oh, ow, C)
    cdef Py_ssize_t N = out.shape[0], oh = out.shape[1], ow = out.shape[2], C = out.shape[3]
    cdef Py_ssize_t W = x.shape[2], n
    for n in prange(N, nogil=True, schedule="static"):
        if floating is float:
            npd_maxpool_forward_f32(&x[n, 0, 0, 0], W, C, size, &out[n, 0, 0, 0],
                                    &argmax[n, 0, 0, 0], oh, ow)
        else:
            npd_maxpool_forward_f64(&x[n, 0, 0, 0], W, C, size, &out[n, 0, 0, 0],
                                    &argmax[n, 0, 0, 0], oh, ow)


def maxpool_backward(const floating[:, :, :, ::1] dy,       # IN  (N', oh, ow, C)
                     const long long[:, :, :, ::1] argmax,  # IN  (N, oh, ow, C), N' = S * N
                     Py_ssize_t size,
                     floating[:, :, :, ::1] dx):            # OUT (N', H, W, C), overwritten
    cdef Py_ssize_t N = dy.shape[0], oh = dy.shape[1], ow = dy.shape[2], C = dy.shape[3]
    cdef Py_ssize_t H = dx.shape[1], W = dx.shape[2], n_fwd = argmax.shape[0], n
    for n in prange(N, nogil=True, schedule="static"):
        # stacked seeds share the forward's argmax
        if floating is float:
            npd_maxpool_backward_f32(&dy[n, 0, 0, 0], &argmax[n % n_fwd, 0, 0, 0], size,
                                     &dx[n, 0, 0, 0], H, W, C, oh, ow)
        else:
            npd_maxpool_backward_f64(&dy[n, 0, 0, 0], &argmax[n % n_fwd, 0, 0, 0], size,
                                     &dx[n, 0, 0, 0], H, W, C, oh, ow)
