"""Metrics: adversarial-gradient amplitude (float64), exactly-zero gradients (float32), ROC AUC."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers


@pytest.fixture(scope="module")
def model_and_x():
    model = nd.Sequential([layers.Conv2D(1, 4, 3), layers.ReLU(), layers.Flatten(),
                           layers.Dense(4 * 6 * 6, 5)], seed=3)
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    return model, x


def test_amplitude_is_the_mean_absolute_jacobian_row_of_the_predicted_class(model_and_x):
    model, x = model_and_x
    amplitude = nd.metrics.adversarial_gradient_amplitude(model, x, T=2.0)
    m64, x64 = model.astype(np.float64), x.astype(np.float64)
    J = nd.jacobian(m64, x64, T=2.0)
    c = m64.predict(x64)
    expected = np.abs(J[np.arange(6), c]).reshape(6, -1).mean(axis=1)
    np.testing.assert_allclose(amplitude, expected, rtol=1e-12)
    assert amplitude.dtype == np.float64


def test_saturated_softmax_underflows_in_float32_but_not_in_float64(model_and_x):
    model, x = model_and_x
    hot = model.copy()                   # logits scaled up, as a distilled net deployed at T = 1
    z = np.sort(hot.logits(x), axis=1)
    gap = z[:, -1] - z[:, -2]
    # scale the top-2 logit gaps of the kept samples into [150, 600]: exp(-gap) is exactly 0
    # in float32 (below 1e-45) and still a normal float64 (above 1e-300)
    keep = (gap > np.median(gap) / 2) & (gap < np.median(gap) * 2)
    x = x[keep]
    for value in hot.layers[-1].params.values():
        value *= np.float32(300.0 / np.median(gap))
    amplitude = nd.metrics.adversarial_gradient_amplitude(hot, x)
    zero = nd.metrics.zero_gradient_fraction(hot, x)
    assert np.all(amplitude > 0) and np.all(amplitude < 1e-38)       # measured, not flushed
    np.testing.assert_array_equal(zero, 1.0)                          # float32: exactly 0
    assert np.all(nd.metrics.zero_gradient_fraction(model, x) < 1.0)  # the unscaled net is fine
    histogram = nd.metrics.amplitude_histogram(amplitude)
    assert histogram.sum() == pytest.approx(1.0) and histogram[-2:].sum() == 0


def test_histogram_bins_are_the_papers():
    bins = nd.metrics.AMPLITUDE_BINS
    assert bins[0] == 0 and bins[1] == 1e-40 and bins[-2] == 1.0 and bins[-1] == np.inf
    np.testing.assert_allclose(np.diff(np.log10(bins[1:-1])), 5.0)
    h = nd.metrics.amplitude_histogram([0.0, 1e-41, 1e-37, 0.5, 3.0])
    np.testing.assert_allclose(h, [0.4, 0.2, 0, 0, 0, 0, 0, 0, 0.2, 0.2])
    with pytest.raises(ValueError):
        nd.metrics.amplitude_histogram([-1.0])


@given(st.lists(st.integers(0, 5), min_size=1, max_size=12),
       st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_roc_auc_is_the_pairwise_win_rate(neg, pos):
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert nd.metrics.roc_auc(neg, pos) == pytest.approx(wins / (len(neg) * len(pos)))


def test_roc_auc_extremes_and_bad_input():
    assert nd.metrics.roc_auc([0, 0.1], [0.5, 0.9]) == 1.0
    assert nd.metrics.roc_auc([0.5, 0.9], [0, 0.1]) == 0.0
    with pytest.raises(ValueError, match="both kinds"):
        nd.metrics.roc_auc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        nd.metrics.roc_auc([np.nan], [1.0])
