"""Tempered softmax, log-softmax and cross-entropy: properties and gradients."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from tests.gradcheck import gradcheck

logit_batches = st.tuples(st.integers(1, 5), st.integers(2, 10), st.integers(0, 2**31))
temperatures = st.floats(1.0, 100.0)


def draw_logits(case, scale=5.0):
    n, k, seed = case
    return np.random.default_rng(seed).standard_normal((n, k)) * scale


@given(logit_batches, temperatures)
def test_softmax_rows_sum_to_one_and_ignore_constant_shifts(case, T):
    z = draw_logits(case)
    p = nd.softmax(z, T)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(nd.softmax(z + 123.0, T), p, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.exp(nd.log_softmax(z, T)), p, rtol=1e-10, atol=1e-300)


def test_softmax_limits_in_temperature():
    z = np.array([[3.0, 1.0, -2.0, 0.5]])
    np.testing.assert_allclose(nd.softmax(z, T=1e8), 0.25, atol=1e-7)     # uniform as T -> inf
    np.testing.assert_array_equal(nd.softmax(z, T=1e-3), [[1, 0, 0, 0]])  # one-hot as T -> 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_finite_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    p, logp = nd.softmax(z), nd.log_softmax(z)
    assert p.dtype == dtype and np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    loss, dlogits = nd.cross_entropy(z, np.array([1, 0]))
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx(2e4 / 2 + np.log(3) / 2, rel=1e-6)


@given(logit_batches, st.sampled_from([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]), st.booleans())
def test_cross_entropy_gradient(case, T, soft):
    n, k, seed = case
    z = draw_logits(case, scale=3.0 * T)
    rng = np.random.default_rng(seed + 1)
    target = rng.dirichlet(np.ones(k), size=n) if soft else rng.integers(0, k, n)
    loss, dlogits = nd.cross_entropy(z, target, T)
    # central differences carry a rounding error of about 1e-10 |loss| at eps = 1e-6
    gradcheck(lambda: nd.cross_entropy(z, target, T)[0], z, dlogits, rtol=1e-5,
              atol=1e-9 * max(1.0, abs(loss)))


@given(logit_batches, temperatures)
def test_hard_labels_equal_one_hot_soft_labels(case, T):
    n, k, seed = case
    z = draw_logits(case)
    y = np.random.default_rng(seed).integers(0, k, n)
    hard = nd.cross_entropy(z, y, T)
    soft = nd.cross_entropy(z, np.eye(k)[y], T)
    assert hard[0] == pytest.approx(soft[0], rel=1e-12)
    np.testing.assert_allclose(hard[1], soft[1], rtol=1e-12, atol=1e-15)


def test_gradient_carries_the_one_over_T():
    z = np.array([[2.0, -1.0, 0.5]])
    for T in (1.0, 20.0):
        _, g = nd.cross_entropy(z, np.array([1]), T)
        np.testing.assert_allclose(g, (nd.softmax(z, T) - [0, 1, 0]) / T)


@pytest.mark.parametrize("call, error, match", [
    (lambda: nd.softmax(np.zeros(3)), ValueError, "rank 2"),
    (lambda: nd.softmax(np.zeros((2, 3), dtype=np.int64)), TypeError, "float32 or float64"),
    (lambda: nd.softmax(np.array([[np.nan, 0.0]])), ValueError, "NaN"),
    (lambda: nd.softmax(np.zeros((2, 3)), T=0.0), ValueError, "positive"),
    (lambda: nd.softmax(np.zeros((2, 3)), T="hot"), TypeError, "number"),
    (lambda: nd.cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, r"\[0, 3\)"),
    (lambda: nd.cross_entropy(np.zeros((2, 3)), np.array([0])), ValueError, r"shape \(2,\)"),
    (lambda: nd.cross_entropy(np.zeros((2, 3)), np.full((2, 3), 0.5)), ValueError, "sum to 1"),
    (lambda: nd.cross_entropy(np.zeros((2, 3)), np.array(["a", "b"])), TypeError, "labels"),
])
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()
