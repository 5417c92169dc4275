"""NumPy reference of JSMA's saliency-map pair search (Papernot et al., 2016,
"The Limitations of Deep Learning in Adversarial Settings", Algorithm 3, eq. 8-9).

For every pair p < q of the search domain:
    A = alpha_p + alpha_q    (alpha = dF_t/dX, the target's derivative)
    B = beta_p + beta_q      (beta = sum_{j != t} dF_j/dX)
admissible when A > 0 and B < 0 (increasing variant), score = -(A * B) = A |B|.
The decreasing variant (A < 0, B > 0) is the increasing one on (-alpha, -beta),
which gives the same floating-point scores. Ties go to the first pair in
lexicographic order of (p, q). No admissible pair, or fewer than two pixels in
the domain, gives (-1, -1).
"""
import numpy as np


def pair_search(alpha, beta, domain, pairs):
    """Fill ``pairs`` (N, 2) int64 with the best (p, q) of every row (increasing variant).

    alpha, beta : (N, M) float; domain : (N, M) uint8, 1 where a pixel may be picked.
    Builds the M x M score matrix of each image: the specification, not the fast path.
    """
    pairs[...] = -1
    for row in range(len(alpha)):
        idx = np.flatnonzero(domain[row])
        if len(idx) < 2:
            continue
        a, b = alpha[row, idx], beta[row, idx]
        A = a[:, None] + a[None, :]
        B = b[:, None] + b[None, :]
        admissible = np.triu((A > 0) & (B < 0), k=1)
        if not admissible.any():
            continue
        score = np.where(admissible, -(A * B), -np.inf)
        i, j = np.unravel_index(np.argmax(score), score.shape)   # first maximum, row-major
        pairs[row] = idx[i], idx[j]
