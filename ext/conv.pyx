# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for stride-1 convolution on channels-last images (the
compiled twin of npdistill/kernels/conv.py, which is the specification).

A row of ``cols`` is one output position (n, i, j); its columns run over
(a, b, c) of the receptive field. With channels last, the part of a window in
image row y is the contiguous run x[n, y, j0:j1, :], copied (or, in col2im,
added back) in one pass. Zero padding is implicit: the parts of a window
outside the image are zero in cols and dropped by col2im.
"""
from cython.parallel cimport prange
from libc.string cimport memcpy, memset
from _types cimport floating


def im2col(const floating[:, :, :, ::1] x,  # IN  (N, H, W, C)
           Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, ::1] cols):          # OUT (N*out_h*out_w, kh*kw*C)
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t n, i, j, a, row, y, b0, b1
    cdef floating *dst
    for n in prange(N, nogil=True, schedule="static"):
        for i in range(out_h):
            for j in range(out_w):
                row = (n * out_h + i) * out_w + j
                # the kernel columns b in [b0, b1) fall inside the image
                b0 = max(0, pad_left - j)
                b1 = min(kw, W + pad_left - j)
                for a in range(kh):
                    y = i + a - pad_top
                    dst = &cols[row, a * kw * C]
                    if y < 0 or y >= H or b1 <= b0:
                        memset(dst, 0, kw * C * sizeof(floating))
                        continue
                    if b0 > 0:
                        memset(dst, 0, b0 * C * sizeof(floating))
                    memcpy(dst + b0 * C, &x[n, y, j + b0 - pad_left, 0],
                           (b1 - b0) * C * sizeof(floating))
                    if b1 < kw:
                        memset(dst + b1 * C, 0, (kw - b1) * C * sizeof(floating))


def col2im(const floating[:, ::1] cols,     # IN  (N*out_h*out_w, kh*kw*C)
           Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, :, :, ::1] dx):      # OUT (N, H, W, C), overwritten
    cdef Py_ssize_t N = dx.shape[0], H = dx.shape[1], W = dx.shape[2], C = dx.shape[3]
    cdef Py_ssize_t n, i, j, a, row, y, b0, b1, k, length
    cdef floating *dst
    cdef const floating *src
    for n in prange(N, nogil=True, schedule="static"):
        # each image is written by one thread only: no race on dx[n]
        memset(&dx[n, 0, 0, 0], 0, H * W * C * sizeof(floating))
        for i in range(out_h):
            for j in range(out_w):
                row = (n * out_h + i) * out_w + j
                b0 = max(0, pad_left - j)
                b1 = min(kw, W + pad_left - j)
                if b1 <= b0:
                    continue
                length = (b1 - b0) * C
                for a in range(kh):
                    y = i + a - pad_top
                    if y < 0 or y >= H:
                        continue
                    dst = &dx[n, y, j + b0 - pad_left, 0]
                    src = &cols[row, (a * kw + b0) * C]
                    for k in range(length):
                        dst[k] += src[k]
