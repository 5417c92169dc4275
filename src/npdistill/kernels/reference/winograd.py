"""Winograd's minimal filtering for 3x3 convolutions, NumPy reference (Lavin & Gray,
2016, "Fast Algorithms for Convolutional Neural Networks").

A convolution layer's output is a sum over input channels of 2-D correlations
y[i, j] = sum_{a, b} d[i + a, j + b] g[a, b]. im2col computes each output with
r * r multiplies (9 for a 3x3 kernel). Winograd's F(m x m, r x r) computes an
m x m tile of outputs from an n x n tile of inputs (n = m + r - 1) with n * n
multiplies:

    Y = A^T [ (G g G^T) * (B^T d B) ] A            (* elementwise)

so 16 multiplies for 4 outputs with F(2x2, 3x3) (2.25x fewer than 36) and 36 for
16 with F(4x4, 3x3) (4x fewer). In a layer the elementwise product becomes, for
each of the n * n positions, one matrix product over channels: U[F, C] @ V[C,
tiles], which is where the work goes; the transforms are additions and small
multiplications done once per tile (B^T d B per input tile and channel, A^T M A
per output tile and channel) or once per layer (G g G^T).

Why it is exact. In one dimension, the correlation of d (n values) with g (r
values) is the transpose of the product of two polynomials, h(x) g(x), with h of
degree m - 1. That product has degree n - 1 and is fixed by its values at n
points: evaluate h and g at n - 1 distinct points p_i and "at infinity" (the
leading coefficients), multiply the n pairs of values (the n multiplies), and
interpolate. Evaluation is a Vandermonde matrix, interpolation its inverse, all
of which ``matrices`` builds in exact rational arithmetic; transposing the
bilinear algorithm turns the convolution into the correlation a layer computes.
In exact arithmetic the result is the im2col result whatever points are chosen.

What it costs in floating point. The transforms multiply by the points' powers
and divide by products of their differences: larger or closer points mean larger
coefficients and more cancellation. F(2x2, 3x3) with points 0, 1, -1 has
coefficients 0, +-1/2, +-1 and loses almost nothing. For F(4x4, 3x3) the
choice matters more: measured as max |error| / sum(|x| |W|) over the receptive
field, against the direct convolution in float64, on random shapes, float32
(tests/kernels/test_winograd.py holds the bound):

    points                  worst error    median
    F(2): 0, 1, -1            2.6e-7        1.3e-8
    F(4): 0, +-1, +-2         2.7e-6        4.4e-8    (Lavin & Gray's)
    F(4): 0, +-1, +-1/2       6.3e-6        5.4e-8
    F(4): 0, +-1, 1/2, -2     1.2e-6        4.7e-8    (used here)

(on a single channel, where the sum has few terms, tests/kernels/test_winograd.py's
hypothesis search found 8.8e-6 for F(4)), so F(4) loses about one decimal digit to
F(2) and to im2col in the worst case
(see Barabasz et al., 2020, "Error analysis and improving the accuracy of
Winograd convolution", on choosing the points).

Layout here is NCHW throughout; weights (F, C, 3, 3) as Conv2D holds them; a
padding is (top, bottom, left, right), stride 1. The three passes of a layer:
``forward`` (y = x * W), ``input_gradient`` (the "full" correlation of dy with
the flipped kernels) and ``weight_gradient`` (F(3x3, m x m): the m x m tiles of dy
are the filters, the same n x n input tiles the data).
"""
from fractions import Fraction
from functools import lru_cache
from math import lcm

import numpy as np

from .conv import flipped, gradient_padding

# the finite interpolation points of F(m x m, 3 x 3): n - 1 = m + 1 of them
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, Fraction(1, 2), -2)}


@lru_cache(maxsize=None)
def matrices(m, r, points):
    """(A^T (m, n), G (n, r), B^T (n, n)) of F(m, r), n = m + r - 1, as float64, built
    exactly from ``points`` (n - 1 distinct numbers; the n-th point is infinity):

        A^T = V_m^T,  G = V_r,  B^T = (V_n^{-1})^T,   V_k[i] = (1, p_i, ..., p_i^(k-1)),

    the last row of each V_k being (0, ..., 0, 1). Row i of B^T is then scaled to
    integers and row i of G divided by the same factor (the product is unchanged).
    """
    n = m + r - 1
    points = tuple(Fraction(p) for p in points)
    if len(points) != n - 1 or len(set(points)) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct points, got {points}")

    def vandermonde(k):
        rows = [[p ** j for j in range(k)] for p in points]
        return rows + [[Fraction(int(j == k - 1)) for j in range(k)]]

    AT = [list(col) for col in zip(*vandermonde(m))]
    G = vandermonde(r)
    BT = [list(col) for col in zip(*_inverse(vandermonde(n)))]
    for i, row in enumerate(BT):
        scale = lcm(*(x.denominator for x in row))
        BT[i] = [x * scale for x in row]
        G[i] = [x / scale for x in G[i]]
    return tuple(np.array([[float(x) for x in row] for row in M]) for M in (AT, G, BT))


def _inverse(M):
    """The inverse of a square matrix of Fractions (Gauss-Jordan, exact)."""
    n = len(M)
    A = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(M)]
    for col in range(n):
        pivot = next(i for i in range(col, n) if A[i][col] != 0)
        A[col], A[pivot] = A[pivot], A[col]
        A[col] = [x / A[col][col] for x in A[col]]
        for i in range(n):
            if i != col and A[i][col] != 0:
                A[i] = [a - A[i][col] * b for a, b in zip(A[i], A[col])]
    return [row[n:] for row in A]


def _input_tiles(x, n, m, pad_top, pad_left, oh, ow):
    """The n x n input tiles (stride m) of x (N, H, W, C) placed at (pad_top, pad_left) in
    zeros large enough for whole tiles: (N, th, tw, C, n, n)."""
    N, H, W, C = x.shape
    th, tw = -(-oh // m), -(-ow // m)
    padded = np.zeros((N, th * m + n - m, tw * m + n - m, C), x.dtype)
    rows, cols = min(H, padded.shape[1] - pad_top), min(W, padded.shape[2] - pad_left)
    padded[:, pad_top:pad_top + rows, pad_left:pad_left + cols] = x[:, :rows, :cols]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (n, n), axis=(1, 2))
    return windows[:, ::m, ::m]


def correlate(x, U, bias, at, bt, pad_top, pad_left, y, block):
    """y = bias + sum_c x[..., c] (*) W[:, c] with F(m x m, r x r), channels last.

    x : (N, H, W, C) IN; U : (n*n, C, F) IN, the weights transformed (``transform_weights``)
    bias : (F,) IN; at : (m, n) A^T and bt : (n, n) B^T IN, in x's dtype
    pad_top, pad_left : the zeros before the image (those after follow from y's size)
    y : (N, oh, ow, F) OUT;  block : tiles per block (the compiled kernel's cache
    blocking; no effect here)
    """
    m, n = at.shape
    N, oh, ow, F = y.shape
    d = _input_tiles(x, n, m, pad_top, pad_left, oh, ow)
    th, tw = d.shape[1:3]
    V = np.einsum("ij,nstcjk,lk->ilnstc", bt, d, bt, optimize=True).reshape(n * n, -1, x.shape[3])
    M = (V @ U).reshape(n, n, -1, F)                   # n * n products (tiles, C) @ (C, F)
    Y = np.einsum("ij,jkpf,lk->pilf", at, M, at, optimize=True)        # (tiles, m, m, F)
    Y = Y.reshape(N, th, tw, m, m, F).transpose(0, 1, 3, 2, 4, 5).reshape(N, th * m, tw * m, F)
    y[...] = Y[:, :oh, :ow] + bias


def filter_products(x, dy, g, bt, pad_top, pad_left, acc, block):
    """The weight gradient's products in the transformed domain, F(r x r, m x m): for
    each n x n input tile d and the m x m tile e of dy it produced,

        acc[0, xi] += (G e G^T)[xi] (F,) outer (B^T d B)[xi] (C,)

    summed over tiles as n * n products (F, tiles) @ (tiles, C). x : (N, H, W, C) IN;
    dy : (N, oh, ow, F) IN; g : (n, m) G and bt : (n, n) B^T of F(r, m) IN;
    acc : (chunks, n*n, F, C) INOUT (the compiled kernel adds chunk c of the blocks into row c;
    the caller sums them: ``weight_gradient_from``); block as ``correlate``'s.
    """
    n, m = g.shape
    N, oh, ow, F = dy.shape
    d = _input_tiles(x, n, m, pad_top, pad_left, oh, ow)
    th, tw = d.shape[1:3]
    V = np.einsum("ij,nstcjk,lk->ilnstc", bt, d, bt, optimize=True).reshape(n * n, -1, x.shape[3])
    e = np.zeros((N, th * m, tw * m, F), dy.dtype)
    e[:, :oh, :ow] = dy
    e = e.reshape(N, th, m, tw, m, F).transpose(0, 1, 3, 2, 4, 5)      # (N, th, tw, m, m, F)
    Ug = np.einsum("ij,nstjkf,lk->ilnstf", g, e, g, optimize=True).reshape(n * n, -1, F)
    acc[0] += Ug.transpose(0, 2, 1) @ V


# -- the three passes of a layer, NCHW (the readable face of the kernels above) ----------
def transforms(m, r=3, dtype=np.float64):
    """(A^T, G, B^T) of F(m, r) with this module's points, in ``dtype``."""
    return tuple(M.astype(dtype) for M in matrices(m, r, POINTS[m if r == 3 else r]))


def transform_weights(W, m):
    """U = G W G^T for every (output, input) channel pair: (n*n, C, F) for ``correlate``."""
    _, G, _ = transforms(m, W.shape[-1], W.dtype)
    n = len(G)
    return np.ascontiguousarray(
        np.einsum("ij,fcjk,lk->ilcf", G, W, G, optimize=True).reshape(n * n, W.shape[1], -1))


def weight_gradient_from(acc, m, r=3):
    """dL/dW (F, C, r, r) from ``filter_products``' sums: A^T (sum over threads) A."""
    AT, _, _ = transforms(r, m, acc.dtype)
    n = AT.shape[1]
    total = acc.sum(axis=0).reshape(n, n, *acc.shape[2:])
    return np.einsum("ij,jkfc,lk->fcil", AT, total, AT, optimize=True)


def _output_size(size, pads, r):
    return size + pads[0] + pads[1] - r + 1


def forward(x, W, pads, m):
    """The convolution layer's output without bias, x (N, C, H, W) -> (N, F, oh, ow)."""
    r = W.shape[-1]
    AT, _, BT = transforms(m, r, x.dtype)
    y = np.empty((len(x), _output_size(x.shape[2], pads[:2], r),
                  _output_size(x.shape[3], pads[2:], r), len(W)), x.dtype)
    correlate(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), transform_weights(W, m),
              np.zeros(len(W), x.dtype), AT, BT, pads[0], pads[2], y, 64)
    return y.transpose(0, 3, 1, 2)


def input_gradient(dy, W, pads, m):
    """dL/dx (N, C, H, W) of ``forward`` given dy (N, F, oh, ow): the correlation of dy
    with the flipped kernels, padded so that it comes out the input's size."""
    return forward(dy, flipped(W), gradient_padding(pads, W.shape[-1]), m)


def weight_gradient(x, dy, pads, m, r=3):
    """dL/dW (F, C, r, r) of ``forward`` given dy (N, F, oh, ow): F(r x r, m x m) with
    the m x m tiles of dy as filters over the same n x n tiles of x."""
    AT, G, BT = transforms(r, m, x.dtype)
    acc = np.zeros((1, len(G) ** 2, dy.shape[1], x.shape[1]), x.dtype)
    filter_products(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                    np.ascontiguousarray(dy.transpose(0, 2, 3, 1)), G, BT, pads[0], pads[2],
                    acc, 64)
    return weight_gradient_from(acc, m, r)
