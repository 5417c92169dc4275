"""JSMA's search for the best pixel pair of every image (reference/saliency.py;
ext/saliency.pyx)."""
import numpy as np

from .backends import implementation


def saliency_pairs(alpha, beta, domain, increase=True):
    """JSMA's best pixel pair of every image: (N, 2) int64, (-1, -1) where none is admissible.

    alpha, beta : (N, M) float (same dtype); domain : (N, M) bool search domain.
    increase=False is the decreasing variant (A < 0, B > 0), searched as the
    increasing one on (-alpha, -beta).
    """
    if alpha.ndim != 2 or alpha.shape != beta.shape or alpha.shape != domain.shape:
        raise ValueError(f"alpha, beta and domain must share one (N, M) shape, got "
                         f"{alpha.shape}, {beta.shape}, {domain.shape}")
    if alpha.dtype != beta.dtype or alpha.dtype.kind != "f":
        raise TypeError(f"alpha and beta must share one float dtype, got {alpha.dtype}, {beta.dtype}")
    if not increase:
        alpha, beta = -alpha, -beta
    pairs = np.empty((len(alpha), 2), dtype=np.int64)
    implementation("saliency").pair_search(
        np.ascontiguousarray(alpha), np.ascontiguousarray(beta),
        np.ascontiguousarray(domain, dtype=np.uint8), pairs)
    return pairs
