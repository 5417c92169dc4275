# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""JSMA pair search, the compiled twin of npdistill/kernels/reference/saliency.py.

O(M^2) time and O(M) extra memory per image (compacted alpha, beta, their
suffix bounds and the pixel indices), parallel over images. Exact: a row p is skipped only when an upper bound of every score in
it, (alpha_p + max_{q>p} alpha_q) * -(beta_p + min_{q>p} beta_q), cannot beat
the best score found so far. Floating-point rounding is monotonic, so the
bound computed in floats is a true bound of the scores computed in floats, and
since rows are visited in order and only a strictly larger score replaces the
best, ties resolve to the first pair (p, q) exactly as in the reference.
"""
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from _types cimport floating


def pair_search(const floating[:, ::1] alpha,        # IN  (N, M)
                const floating[:, ::1] beta,         # IN  (N, M)
                const unsigned char[:, ::1] domain,  # IN  (N, M), 1 = may be picked
                long long[:, ::1] pairs):            # OUT (N, 2), -1 where none is admissible
    cdef Py_ssize_t N = alpha.shape[0], M = alpha.shape[1]
    cdef Py_ssize_t row, p, i, j, m, best_i, best_j
    cdef floating A, B, score, best, bound_a, bound_b, a_i, b_i
    cdef floating *a
    cdef floating *b
    cdef floating *max_a
    cdef floating *min_b
    cdef Py_ssize_t *index
    for row in prange(N, nogil=True, schedule="dynamic"):
        pairs[row, 0] = -1
        pairs[row, 1] = -1
        a = <floating *> malloc(4 * M * sizeof(floating))
        index = <Py_ssize_t *> malloc(M * sizeof(Py_ssize_t))
        if a == NULL or index == NULL:
            free(a)
            free(index)
            continue                       # out of memory: reported as no admissible pair
        b = a + M
        max_a = a + 2 * M
        min_b = a + 3 * M
        m = 0
        for p in range(M):
            if domain[row, p]:
                a[m] = alpha[row, p]
                b[m] = beta[row, p]
                index[m] = p
                m = m + 1
        if m >= 2:
            max_a[m - 1] = a[m - 1]
            min_b[m - 1] = b[m - 1]
            for i in range(m - 2, -1, -1):
                max_a[i] = max(a[i], max_a[i + 1])
                min_b[i] = min(b[i], min_b[i + 1])
            best = 0
            best_i = -1
            best_j = -1
            for i in range(m - 1):
                a_i = a[i]
                b_i = b[i]
                bound_a = a_i + max_a[i + 1]
                bound_b = b_i + min_b[i + 1]
                if bound_a <= 0 or bound_b >= 0:
                    continue               # no admissible pair in this row
                if best_i >= 0 and -(bound_a * bound_b) <= best:
                    continue               # nothing in this row can beat the best
                for j in range(i + 1, m):
                    A = a_i + a[j]
                    B = b_i + b[j]
                    if A > 0 and B < 0:
                        score = -(A * B)
                        if score > best or best_i < 0:
                            best = score
                            best_i = i
                            best_j = j
            if best_i >= 0:
                pairs[row, 0] = index[best_i]
                pairs[row, 1] = index[best_j]
        free(a)
        free(index)
