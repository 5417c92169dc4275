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

so F(4) loses about one decimal digit to F(2) and to im2col in the worst case
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


def _tiles(x, m, r, pads):
    """The n x n input tiles (stride m) of x (N, C, H, W) padded by ``pads`` and then
    with zeros up to whole tiles: (N, C, th, tw, n, n), and the output size (oh, ow)."""
    top, bottom, left, right = pads
    n = m + r - 1
    oh = x.shape[2] + top + bottom - r + 1
    ow = x.shape[3] + left + right - r + 1
    th, tw = -(-oh // m), -(-ow // m)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom + th * m - oh), (left, right + tw * m - ow)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (n, n), axis=(2, 3))
    return windows[:, :, ::m, ::m], (oh, ow)


def correlate(x, W, pads, m):
    """sum_c x[:, c] (*) W[:, c] with F(m x m, r x r): x (N, C, H, W), W (F, C, r, r)
    -> (N, F, oh, ow). The forward pass of a stride-1 convolution layer, without bias."""
    r = W.shape[-1]
    AT, G, BT = (M.astype(x.dtype) for M in matrices(m, r, POINTS[m]))
    d, (oh, ow) = _tiles(x, m, r, pads)
    N, C, th, tw = d.shape[:4]
    V = np.einsum("ij,ncstjk,lk->ilcnst", BT, d, BT, optimize=True).reshape(len(BT), len(BT), C, -1)
    U = np.einsum("ij,fcjk,lk->ilfc", G, W, G, optimize=True)
    M = U @ V                                                  # n * n products (F, C) @ (C, tiles)
    Y = np.einsum("ij,jkfp,lk->filp", AT, M, AT, optimize=True)     # (F, m, m, tiles)
    Y = Y.reshape(-1, m, m, N, th, tw).transpose(3, 0, 4, 1, 5, 2).reshape(N, -1, th * m, tw * m)
    return np.ascontiguousarray(Y[:, :, :oh, :ow])


def forward(x, W, pads, m):
    """The convolution layer's output without bias: (N, F, oh, ow)."""
    return correlate(x, W, pads, m)


def input_gradient(dy, W, pads, m, in_shape):
    """dL/dx (N, C, H, W) of ``forward`` given dy (N, F, oh, ow): the full correlation of
    dy with the kernels flipped and their channels swapped, cropped to the input."""
    r = W.shape[-1]
    flipped = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    full = correlate(dy, flipped, (r - 1,) * 4, m)             # the padded input's gradient
    top, _, left, _ = pads
    return np.ascontiguousarray(full[:, :, top:top + in_shape[2], left:left + in_shape[3]])


def weight_gradient(x, dy, pads, m, r=3):
    """dL/dW (F, C, r, r) of ``forward`` given dy (N, F, oh, ow): F(r x r, m x m) with
    the m x m tiles of dy as filters over the same n x n tiles of x, summed over tiles
    in the transformed domain (n * n products (F, tiles) @ (tiles, C))."""
    n = m + r - 1
    AT, G, BT = (M.astype(x.dtype) for M in matrices(r, m, POINTS[m]))
    d, (oh, ow) = _tiles(x, m, r, pads)
    N, C, th, tw = d.shape[:4]
    g = np.zeros((N, dy.shape[1], th * m, tw * m), dy.dtype)
    g[:, :, :oh, :ow] = dy
    g = g.reshape(N, -1, th, m, tw, m).transpose(0, 1, 2, 4, 3, 5)   # (N, F, th, tw, m, m)
    V = np.einsum("ij,ncstjk,lk->ilnstc", BT, d, BT, optimize=True).reshape(n, n, -1, C)
    U = np.einsum("ij,nfstjk,lk->ilfnst", G, g, G, optimize=True).reshape(n, n, dy.shape[1], -1)
    M = U @ V                                                  # (n, n, F, C)
    return np.einsum("ij,jkfc,lk->fcil", AT, M, AT, optimize=True)
