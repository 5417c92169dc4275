"""im2col and col2im on the GPU: one thread per output element (see kernels/reference/conv.py)."""
from numba import cuda

from ._launch import THREADS, blocks, launch


@cuda.jit
def _im2col(x, kh, kw, top, left, oh, ow, cols):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    width = cols.shape[1]
    for idx in range(cuda.grid(1), cols.shape[0] * width, cuda.gridsize(1)):
        r = idx // width
        col = idx - r * width
        n = r // (oh * ow)
        i = (r // ow) % oh
        j = r % ow
        a = col // (kw * c)
        b = (col // c) % kw
        ch = col % c
        y = i + a - top
        xx = j + b - left
        if 0 <= y < h and 0 <= xx < w:
            cols[r, col] = x[n, y, xx, ch]
        else:
            cols[r, col] = 0


@cuda.jit
def _col2im(cols, kh, kw, top, left, oh, ow, dx, zero):
    # One thread per pixel gathers its kh * kw contributions, in the reference's
    # (a, b) order: no atomics, and the same sums as kernels/reference/conv.py.
    n_img, h, w, c = dx.shape
    for idx in range(cuda.grid(1), n_img * h * w * c, cuda.gridsize(1)):
        ch = idx % c
        xx = (idx // c) % w
        y = (idx // (c * w)) % h
        n = idx // (c * w * h)
        total = zero                     # of dx's dtype: sums stay in it
        for a in range(kh):
            i = y + top - a
            if 0 <= i < oh:
                for b in range(kw):
                    j = xx + left - b
                    if 0 <= j < ow:
                        total += cols[(n * oh + i) * ow + j, (a * kw + b) * c + ch]
        dx[n, y, xx, ch] = total


def im2col(x, kh, kw, pad_top, pad_left, out_h, out_w, cols):
    """Fill ``cols`` (N*out_h*out_w, kh*kw*C) with the receptive fields of x (N, H, W, C)."""
    launch(_im2col, blocks(cols.size), THREADS,
           (x, kh, kw, pad_top, pad_left, out_h, out_w, cols), outputs=(7,))


def col2im(cols, kh, kw, pad_top, pad_left, out_h, out_w, dx):
    """Overwrite dx (N, H, W, C) with the adjoint of im2col applied to ``cols``."""
    launch(_col2im, blocks(dx.size), THREADS,
           (cols, kh, kw, pad_top, pad_left, out_h, out_w, dx, dx.dtype.type(0)), outputs=(7,))
