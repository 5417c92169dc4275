"""JSMA's pair search on the GPU: one block per image, a block-wide argmax over its pairs.

Every thread scans the pairs (p, q > p) of the rows p it owns (p = thread,
thread + blockDim, ...), keeping its best admissible score; the block then
reduces (score, p, q) in shared memory, ties going to the first pair in
lexicographic order: exactly the pair of kernels/reference/saliency.py.
"""
import math

from numba import cuda, float64, int64

from ._launch import THREADS, launch


@cuda.jit(device=True)
def _better(score, p, q, best, bp, bq):
    """(score, p, q) beats (best, bp, bq): higher, or equal and lexicographically first."""
    if bp < 0:
        return p >= 0
    if p < 0:
        return False
    if score != best:
        return score > best
    return p < bp or (p == bp and q < bq)


def make_search(load):
    """The block-wide pair search as a device function search(src, g, domain, row, shared...)
    -> (p, q) seen by every thread, ``load(src, g, row, p)`` giving (alpha, beta) of pixel p."""

    @cuda.jit(device=True)
    def search(src, g, domain, row, scores, ps, qs):
        tid = cuda.threadIdx.x
        m = domain.shape[1]
        best, bp, bq = -math.inf, -1, -1
        for p in range(tid, m, cuda.blockDim.x):
            if domain[row, p]:
                ap, bp_ = load(src, g, row, p)
                for q in range(p + 1, m):
                    if domain[row, q]:
                        aq, bq_ = load(src, g, row, q)
                        A = ap + aq
                        B = bp_ + bq_
                        if A > 0 and B < 0:
                            score = -(A * B)           # in the arrays' dtype, as the reference
                            if bp < 0 or score > best:   # p and q grow: strict > keeps the first
                                best, bp, bq = score, p, q
        scores[tid], ps[tid], qs[tid] = best, bp, bq
        cuda.syncthreads()
        stride = cuda.blockDim.x // 2
        while stride > 0:
            if tid < stride:
                other = tid + stride
                if _better(scores[other], ps[other], qs[other], scores[tid], ps[tid], qs[tid]):
                    scores[tid], ps[tid], qs[tid] = scores[other], ps[other], qs[other]
            cuda.syncthreads()
            stride //= 2
        p, q = ps[0], qs[0]
        cuda.syncthreads()
        return p, q
    return search


@cuda.jit(device=True, inline="always")
def _from_arrays(src, g, row, p):
    return src[0][row, p], src[1][row, p]


_search_arrays = make_search(_from_arrays)


@cuda.jit
def pair_search_kernel(alpha, beta, domain, pairs):
    row = cuda.blockIdx.x
    scores = cuda.shared.array(THREADS, float64)
    ps = cuda.shared.array(THREADS, int64)
    qs = cuda.shared.array(THREADS, int64)
    p, q = _search_arrays((alpha, beta), 0, domain, row, scores, ps, qs)
    if cuda.threadIdx.x == 0:
        pairs[row, 0] = p
        pairs[row, 1] = q


def pair_search(alpha, beta, domain, pairs):
    """Fill ``pairs`` (N, 2) int64 with the best (p, q) of every row (increasing variant).

    alpha, beta : (N, M) float; domain : (N, M) uint8. (-1, -1) where no pair is admissible.
    """
    if len(alpha):
        launch(pair_search_kernel, len(alpha), THREADS, (alpha, beta, domain, pairs), outputs=(3,))
