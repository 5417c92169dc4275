# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for stride-1 convolution (the compiled twin of
npdistill/kernels/conv.py, which is the specification).

Layout: a row of ``cols`` is one output position (n, i, j); its columns run
over (c, a, b) of the receptive field, C-order. Zero padding is implicit:
``pad_top`` / ``pad_left`` shift the window, reads outside the image give 0.
"""
from cython.parallel cimport prange
from _types cimport floating


def im2col(const floating[:, :, :, ::1] x,  # IN  (N, C, H, W)
           Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, ::1] cols):          # OUT (N*out_h*out_w, C*kh*kw)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t n, i, j, c, a, b, row, col, y, xx
    for n in prange(N, nogil=True, schedule="static"):
        for i in range(out_h):
            for j in range(out_w):
                row = (n * out_h + i) * out_w + j
                col = 0
                for c in range(C):
                    for a in range(kh):
                        y = i + a - pad_top
                        for b in range(kw):
                            xx = j + b - pad_left
                            if 0 <= y < H and 0 <= xx < W:
                                cols[row, col] = x[n, c, y, xx]
                            else:
                                cols[row, col] = 0
                            col = col + 1


def col2im(const floating[:, ::1] cols,     # IN  (N*out_h*out_w, C*kh*kw)
           Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, :, :, ::1] dx):      # OUT (N, C, H, W), overwritten
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t n, i, j, c, a, b, row, col, y, xx
    for n in prange(N, nogil=True, schedule="static"):
        # each image is written by one thread only: no race on dx[n]
        for c in range(C):
            for y in range(H):
                for xx in range(W):
                    dx[n, c, y, xx] = 0
        for i in range(out_h):
            for j in range(out_w):
                row = (n * out_h + i) * out_w + j
                col = 0
                for c in range(C):
                    for a in range(kh):
                        y = i + a - pad_top
                        for b in range(kw):
                            xx = j + b - pad_left
                            if 0 <= y < H and 0 <= xx < W:
                                dx[n, c, y, xx] += cols[row, col]
                            col = col + 1
