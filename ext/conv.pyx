# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im for stride-1 convolution on channels-last images, and the weight
gradient by im2col + GEMM (the compiled twin of npdistill/kernels/reference/conv.py, which is the
specification).

A row of ``cols`` is one output position (n, i, j); its columns run over
(a, b, c) of the receptive field. With channels last, the part of a window in
image row y is the contiguous run x[n, y, j0:j1, :], copied (or, in col2im,
added back) in one pass. Zero padding is implicit: the parts of a window
outside the image are zero in cols and dropped by col2im.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from _blas cimport gemm
from _types cimport floating


cdef void _im2col_image(const floating *x,  # IN  one image (H, W, C)
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top, Py_ssize_t pad_left,
                        Py_ssize_t out_h, Py_ssize_t out_w,
                        floating *cols) noexcept nogil:   # OUT its out_h*out_w rows
    cdef Py_ssize_t i, j, a, y, b0, b1
    cdef floating *dst
    for i in range(out_h):
        for j in range(out_w):
            # the kernel columns b in [b0, b1) fall inside the image
            b0 = max(0, pad_left - j)
            b1 = min(kw, W + pad_left - j)
            for a in range(kh):
                y = i + a - pad_top
                dst = cols + ((i * out_w + j) * kh + a) * kw * C
                if y < 0 or y >= H or b1 <= b0:
                    memset(dst, 0, kw * C * sizeof(floating))
                    continue
                if b0 > 0:
                    memset(dst, 0, b0 * C * sizeof(floating))
                memcpy(dst + b0 * C, x + (y * W + j + b0 - pad_left) * C,
                       (b1 - b0) * C * sizeof(floating))
                if b1 < kw:
                    memset(dst + b1 * C, 0, (kw - b1) * C * sizeof(floating))


def im2col(const floating[:, :, :, ::1] x,  # IN  (N, H, W, C)
           Py_ssize_t kh, Py_ssize_t kw,
           Py_ssize_t pad_top, Py_ssize_t pad_left,
           Py_ssize_t out_h, Py_ssize_t out_w,
           floating[:, ::1] cols):          # OUT (N*out_h*out_w, kh*kw*C)
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3], n
    for n in prange(N, nogil=True, schedule="static"):
        _im2col_image(&x[n, 0, 0, 0], H, W, C, kh, kw, pad_top, pad_left, out_h, out_w,
                      &cols[n * out_h * out_w, 0])


def weight_gradient(const floating[:, :, :, ::1] x,  # IN  (N, H, W, C)
                    const floating[:, ::1] dy,       # IN  (N*out_h*out_w, F)
                    Py_ssize_t kh, Py_ssize_t kw,
                    Py_ssize_t pad_top, Py_ssize_t pad_left,
                    Py_ssize_t out_h, Py_ssize_t out_w,
                    Py_ssize_t block,                # images an im2col buffer holds
                    floating[:, :, ::1] acc):        # OUT (chunks, F, kh*kw*C), zeroed
    """acc[c] = dy.T @ im2col(x) summed over chunk c of the images (acc.shape[0] chunks of
    consecutive images, fixed by the shapes), ``block`` images at a time: each thread
    copies a block's receptive fields into a buffer of its own and adds its product in
    one single-threaded BLAS call, so a chunk's sum has the same bits whichever thread
    makes it; the caller adds the chunks in order."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t F = dy.shape[1], rows = out_h * out_w, width = kh * kw * C
    cdef Py_ssize_t chunks = acc.shape[0], chunk, last, s, e, n
    cdef floating *buf = NULL
    cdef int failed = 0
    if N == 0 or rows == 0:
        return
    block = max(1, min(block, (N + chunks - 1) // chunks))    # a chunk's images at most
    with nogil, parallel():
        buf = <floating *> malloc(block * rows * width * sizeof(floating))
        for chunk in prange(chunks, schedule="static"):
            last = (chunk + 1) * N // chunks
            s = chunk * N // chunks
            if buf == NULL:
                failed += 1             # a reduction: any thread
                s = last
            while s < last:
                e = min(last, s + block)
                for n in range(s, e):
                    _im2col_image(&x[n, 0, 0, 0], H, W, C, kh, kw, pad_top, pad_left,
                                  out_h, out_w, buf + (n - s) * rows * width)
                # acc[chunk] (F, width) += dy[rows of s..e].T @ buf: column-major,
                # acc^T (width, F) += buf^T (width, R) dy (R, F)
                gemm("N", "T", <int> width, <int> F, <int> ((e - s) * rows), buf,
                     <int> width, &dy[s * rows, 0], <int> F, 1, &acc[chunk, 0, 0],
                     <int> width)
                s = e
        free(buf)
    if failed:
        raise MemoryError(f"no memory for an im2col block of {block} images "
                          f"({block * rows * width * sizeof(floating)} bytes)")


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
