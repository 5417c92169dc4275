# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Direct convolution, float32, AVX-512 or AVX2 + FMA: the compiled twin of
npdistill/kernels/reference/direct.py (the specification), its register tiles in
direct_conv.h / direct_tile.h. ``isa`` picks the instruction set of a call (2: AVX-512,
1: AVX2; ``best()`` is the most this build and CPU run, 0: none); both give the same bits.

Images run in parallel, one per iteration of a static ``prange``; each thread pads
its image into a buffer of its own. The weight gradient sums chunks of consecutive
images, fixed by the shapes, each into its slice of ``acc``; the caller adds the slices
in order, so that a result depends neither on timing nor on the thread count.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

cdef extern from "direct_conv.h" nogil:
    int npd_direct_isa()
    void npd_correlate_image(int isa, const float *x, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t C, const float *wt, const float *bias, Py_ssize_t F,
                             Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top,
                             Py_ssize_t pad_left, float *y, Py_ssize_t oh, Py_ssize_t ow,
                             float *buf, int rectify)
    void npd_weight_gradient_image(int isa, const float *x, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t C, const float *dy, Py_ssize_t oh,
                                   Py_ssize_t ow, Py_ssize_t F, Py_ssize_t kh, Py_ssize_t kw,
                                   Py_ssize_t pad_top, Py_ssize_t pad_left, float *acc,
                                   float *buf)


def best():
    """The most this build and CPU run: 2 AVX-512F, 1 AVX2 + FMA, 0 neither."""
    return npd_direct_isa()


cdef int _checked(int isa) except -1:
    if isa < 1 or isa > npd_direct_isa():
        raise ValueError(f"isa {isa}: this build and CPU run the direct kernels at levels "
                         f"1..{npd_direct_isa()}")
    return isa


def correlate(const float[:, :, :, ::1] x,        # IN  (N, H, W, C) channels last
              const float[:, ::1] wt,             # IN  (kh*kw*C, F), rows in (a, b, c) order
              const float[::1] bias,              # IN  (F,)
              Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top, Py_ssize_t pad_left,
              float[:, :, :, ::1] y,              # OUT (N, oh, ow, F)
              bint rectify=False,                 # y = max(y, 0): the ReLU after the layer
              int isa=2):                         # 2 AVX-512, 1 AVX2 (at most best())
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oh = y.shape[1], ow = y.shape[2], F = y.shape[3], n
    cdef float *buf = NULL
    _checked(isa)
    with nogil, parallel():
        buf = <float *> malloc((oh + kh - 1) * (ow + kw - 1) * C * sizeof(float))
        for n in prange(N, schedule="static"):
            npd_correlate_image(isa, &x[n, 0, 0, 0], H, W, C, &wt[0, 0], &bias[0], F, kh, kw,
                                pad_top, pad_left, &y[n, 0, 0, 0], oh, ow, buf, rectify)
        free(buf)


def weight_gradient(const float[:, :, :, ::1] x,   # IN  (N, H, W, C)
                    const float[:, :, :, ::1] dy,  # IN  (N, oh, ow, F)
                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top, Py_ssize_t pad_left,
                    float[:, :, ::1] acc,          # OUT (chunks, kh*kw*C, F), zeroed
                    int isa=2):
    """acc[c] = the weight gradient summed over chunk c of the images (acc.shape[0]
    chunks of consecutive images, fixed by the shapes: the same bits whichever thread
    sums a chunk); the caller adds the chunks in order."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oh = dy.shape[1], ow = dy.shape[2], F = dy.shape[3], n
    cdef Py_ssize_t chunks = acc.shape[0], chunk
    cdef float *buf = NULL
    _checked(isa)
    with nogil, parallel():
        buf = <float *> malloc((oh + kh - 1) * (ow + kw - 1) * C * sizeof(float))
        for chunk in prange(chunks, schedule="static"):
            for n in range(chunk * N // chunks, (chunk + 1) * N // chunks):
                npd_weight_gradient_image(isa, &x[n, 0, 0, 0], H, W, C, &dy[n, 0, 0, 0], oh,
                                          ow, F, kh, kw, pad_top, pad_left, &acc[chunk, 0, 0],
                                          buf)
        free(buf)
