"""Max pooling on the GPU, channels-last, one thread per output element (see kernels/reference/pool.py)."""
from numba import cuda

from ._launch import THREADS, blocks, launch


@cuda.jit(device=True, inline="always")
def window_max(x, n, i, j, ch, size):
    """(maximum, its place a * size + b) of window (i, j) of channel ch of image n of the
    channels-last x; ties: the first in row-major order; a window holding NaN: NaN at its
    first NaN (a value taken where not at most the maximum so far, a number)."""
    best = x[n, i * size, j * size, ch]
    where = 0
    for a in range(size):
        for b in range(size):
            v = x[n, i * size + a, j * size + b, ch]
            if not v <= best and best == best:
                best = v
                where = a * size + b
    return best, where


@cuda.jit
def _maxpool_forward(x, size, out, argmax):
    n_img, oh, ow, c = out.shape
    for idx in range(cuda.grid(1), n_img * oh * ow * c, cuda.gridsize(1)):
        ch = idx % c
        j = (idx // c) % ow
        i = (idx // (c * ow)) % oh
        n = idx // (c * ow * oh)
        best, where = window_max(x, n, i, j, ch, size)
        out[n, i, j, ch] = best
        argmax[n, i, j, ch] = where


@cuda.jit
def _maxpool_backward(dy, argmax, size, dx, zero):
    n_img, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    forward_batch = argmax.shape[0]
    for idx in range(cuda.grid(1), n_img * h * w * c, cuda.gridsize(1)):
        ch = idx % c
        xx = (idx // c) % w
        y = (idx // (c * w)) % h
        n = idx // (c * w * h)
        i = y // size
        j = xx // size
        value = zero
        if i < oh and j < ow and argmax[n % forward_batch, i, j, ch] == (y % size) * size + xx % size:
            value = dy[n, i, j, ch]
        dx[n, y, xx, ch] = value


def maxpool_forward(x, size, out, argmax):
    """Fill out (N, H//size, W//size, C) with the window maxima of x, argmax (int64) with their place."""
    launch(_maxpool_forward, blocks(out.size), THREADS, (x, size, out, argmax), outputs=(2, 3))


def maxpool_backward(dy, argmax, size, dx):
    """Overwrite dx (N, H, W, C) with dy (N, oh, ow, C) routed to the argmax of each window;
    dy may stack S seeds per forward sample (N = S * len(argmax))."""
    launch(_maxpool_backward, blocks(dx.size), THREADS, (dy, argmax, size, dx, dx.dtype.type(0)),
           outputs=(3,))
