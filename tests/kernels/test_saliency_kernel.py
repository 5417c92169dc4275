"""The compiled JSMA pair search picks exactly the pair of its NumPy reference."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npdistill import kernels
from npdistill.kernels.reference import saliency as reference

cython_saliency = pytest.importorskip("npdistill._ext.saliency", reason="compiled kernels not built")

cases = st.tuples(st.integers(1, 6), st.integers(1, 60), st.floats(0.0, 1.0),
                  st.sampled_from([np.float32, np.float64]), st.booleans(),
                  st.sampled_from(["normal", "ties", "tiny", "beta=-alpha"]), st.integers(0, 2**31))


def draw(case):
    n, m, density, dtype, increase, kind, seed = case
    rng = np.random.default_rng(seed)
    alpha = rng.standard_normal((n, m))
    beta = rng.standard_normal((n, m))
    if kind == "ties":                 # few distinct values: many equal scores
        alpha, beta = np.round(alpha), np.round(beta)
    elif kind == "tiny":               # the magnitudes of a distilled net's gradients
        alpha, beta = alpha * 1e-36, beta * 1e-36
    elif kind == "beta=-alpha":        # softmax saliency: outputs sum to 1
        beta = -alpha
    domain = rng.random((n, m)) < density
    return alpha.astype(dtype), beta.astype(dtype), domain, increase


def brute_force(alpha, beta, domain, increase):
    """Every pair by hand, in order; strict > keeps the first of equal scores."""
    best, pair = None, (-1, -1)
    for p, q in itertools.combinations(np.flatnonzero(domain), 2):
        A, B = alpha[p] + alpha[q], beta[p] + beta[q]
        if (A > 0 and B < 0) if increase else (A < 0 and B > 0):
            score = -(A * B)
            if best is None or score > best:
                best, pair = score, (p, q)
    return pair


@given(cases)
def test_cython_pair_search_equals_the_reference(case):
    alpha, beta, domain, increase = draw(case)
    sign = 1 if increase else -1
    expected = np.empty((len(alpha), 2), np.int64)
    got = np.empty_like(expected)
    reference.pair_search(sign * alpha, sign * beta, domain.astype(np.uint8), expected)
    cython_saliency.pair_search(sign * alpha, sign * beta, domain.astype(np.uint8), got)
    np.testing.assert_array_equal(got, expected)
    for row in range(len(alpha)):
        assert tuple(expected[row]) == brute_force(alpha[row], beta[row], domain[row], increase)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_dispatch_handles_both_variants_and_empty_domains(backend):
    with kernels.using(backend):
        alpha = np.array([[0.5, 0.4, -1.0, 0.1], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
        beta = -alpha
        beta[2] = 1.0                                          # B > 0 everywhere: inadmissible
        domain = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
        np.testing.assert_array_equal(kernels.saliency_pairs(alpha, beta, domain),
                                      [[0, 1], [-1, -1], [-1, -1]])
        # decreasing: A < 0 and B > 0; the pairs with pixel 2 qualify, (2, 3) has the largest |A|
        np.testing.assert_array_equal(kernels.saliency_pairs(alpha, beta, domain, increase=False),
                                      [[2, 3], [-1, -1], [-1, -1]])
