"""Exact Jacobians against central differences; softmax rows sum to zero."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from tests.gradcheck import numerical_jacobian


def net(seed, padding):
    features = 4 * 3 * 3 if padding == "valid" else 4 * 4 * 4
    return nd.Sequential([layers.Conv2D(1, 4, 3, padding=padding, dtype=np.float64), layers.ReLU(),
                          layers.MaxPool2D(2), layers.Flatten(),
                          layers.Dense(features, 6, dtype=np.float64), layers.ReLU(),
                          layers.Dense(6, 4, dtype=np.float64)], seed=seed)


@settings(max_examples=10)
@given(st.integers(1, 3), st.sampled_from(["valid", "same"]), st.sampled_from(["softmax", "logits"]),
       st.floats(1.0, 50.0), st.integers(0, 2**31))
def test_jacobian_equals_central_differences(n, padding, of, T, seed):
    model = net(seed, padding)
    x = np.random.default_rng(seed).random((n, 1, 8, 8))
    J = nd.jacobian(model, x, T=T, of=of, batch_size=2)
    assert J.shape == (n, 4, 1, 8, 8)
    output = (lambda: model.logits(x)) if of == "logits" else (lambda: nd.softmax(model.logits(x), T))
    numeric = numerical_jacobian(output, x)                  # (n, 4, n, 1, 8, 8)
    for b in range(n):
        np.testing.assert_allclose(J[b], numeric[b, :, b], rtol=1e-5, atol=1e-9)
        assert np.all(numeric[b][:, np.arange(n) != b] == 0)   # images do not mix


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_jacobian_rows_sum_to_zero(dtype):
    model = nd.architectures.papernot_mnist(seed=2).astype(dtype)
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(dtype)
    J = nd.jacobian(model, x, T=2.0)
    assert J.dtype == dtype and J.shape == (3, 10, 1, 28, 28)
    scale = np.abs(J).max()
    np.testing.assert_allclose(J.sum(axis=1), 0.0, atol=scale * (1e-5 if dtype == np.float32 else 1e-12))
    logits_J = nd.jacobian(model, x, of="logits")
    p = nd.softmax(model.logits(x), 2.0)
    # one row by the chain rule written out: dF_0/dX = sum_k p_0 (delta_0k - p_k) / T dZ_k/dX
    manual = np.einsum("bk,bk...->b...", p[:, :1] * ((np.arange(10) == 0) - p) / 2.0, logits_J)
    np.testing.assert_allclose(J[:, 0], manual, rtol=1e-4, atol=scale * 1e-5)


def test_bad_arguments():
    model = nd.architectures.papernot_mnist(seed=0)
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match="of must be one of 'softmax', 'logits'"):
        nd.jacobian(model, x, of="probabilities")
    with pytest.raises(ValueError, match="positive"):
        nd.jacobian(model, x, T=-1.0)
