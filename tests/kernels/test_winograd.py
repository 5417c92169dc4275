"""Winograd F(m x m, 3 x 3) (kernels/winograd.py): exact in exact arithmetic, equal to the
direct convolution in float64, within a measured bound in float32, and its two gradients
checked against central differences."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npdistill.kernels import winograd
from tests.gradcheck import gradcheck


# the float32 error bound: max |winograd32 - direct64| / (sum over the receptive field of
# |x| |W|); the largest measured over 60 random layers (kernels/winograd.py's table) was
# 2.6e-7 for F(2) and 1.2e-6 for F(4)
FLOAT32_BOUND = {2: 1e-6, 4: 5e-6}


def direct(x, W, pads):
    """The definition: y[n, f, i, j] = sum_{c, a, b} xpad[n, c, i + a, j + b] W[f, c, a, b]."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    r = W.shape[-1]
    oh, ow = xp.shape[2] - r + 1, xp.shape[3] - r + 1
    y = np.zeros((len(x), len(W), oh, ow), np.result_type(x, W))
    for a in range(r):
        for b in range(r):
            y += np.einsum("nchw,fc->nfhw", xp[:, :, a:a + oh, b:b + ow], W[:, :, a, b])
    return y


def case(seed, n, c, f, h, w, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(dtype),
            rng.standard_normal((f, c, 3, 3)).astype(dtype))


SHAPES = dict(m=st.sampled_from([2, 4]), pads=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1)]),
              seed=st.integers(0, 2**31), n=st.integers(1, 3), c=st.integers(1, 5),
              f=st.integers(1, 5), h=st.integers(3, 11), w=st.integers(3, 11))


@pytest.mark.parametrize("m", [2, 4])
def test_the_transforms_compute_a_1d_correlation_exactly(m):
    """In exact arithmetic: y_i = sum_k d_{i+k} g_k for any d, g (rational: no rounding)."""
    AT, G, BT = winograd.matrices(m, 3, winograd.POINTS[m])
    for values in [(1, 2, 3), (Fraction(1, 3), -2, 7)]:
        g = np.array([float(v) for v in values])
        for trial in range(3):
            d = np.arange(m + 2, dtype=float) * (trial + 1) - 2
            want = [sum(d[i + k] * g[k] for k in range(3)) for i in range(m)]
            np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-14, atol=1e-13)


def test_transforms_need_distinct_points():
    with pytest.raises(ValueError, match="distinct points"):
        winograd.matrices(2, 3, (0, 1, 1))


@given(**SHAPES)
def test_forward_equals_the_direct_convolution_in_float64(m, pads, seed, n, c, f, h, w):
    x, W = case(seed, n, c, f, h, w)
    want = direct(x, W, pads)
    np.testing.assert_allclose(winograd.forward(x, W, pads, m), want, rtol=1e-10,
                               atol=1e-10 * np.abs(want).max())


@settings(max_examples=40)
@given(**SHAPES)
def test_float32_error_stays_within_the_stated_bound(m, pads, seed, n, c, f, h, w):
    x, W = case(seed, n, c, f, h, w)
    want = direct(x, W, pads)
    scale = direct(np.abs(x), np.abs(W), pads)                     # sum of |x| |W| per output
    got = winograd.forward(x.astype(np.float32), W.astype(np.float32), pads, m)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - want) / scale) < FLOAT32_BOUND[m]


@settings(max_examples=25)
@given(**{**SHAPES, "h": st.integers(3, 7), "w": st.integers(3, 7)})
def test_gradients_equal_central_differences(m, pads, seed, n, c, f, h, w):
    x, W = case(seed, n, c, f, h, w)
    dy = np.random.default_rng(seed + 1).standard_normal(direct(x, W, pads).shape)

    def loss():
        return float((winograd.forward(x, W, pads, m) * dy).sum())

    gradcheck(loss, x, winograd.input_gradient(dy, W, pads, m, x.shape))
    gradcheck(loss, W, winograd.weight_gradient(x, dy, pads, m))
