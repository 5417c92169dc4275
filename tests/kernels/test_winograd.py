"""Winograd F(m x m, 3 x 3) (kernels/reference/winograd.py): exact in exact arithmetic, equal to the
direct convolution in float64, within a measured bound in float32, and its two gradients
checked against central differences."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npdistill.kernels.reference import winograd
from tests.gradcheck import gradcheck


# the float32 error bound: max |winograd32 - direct64| / (sum over the receptive field of
# |x| |W|); the largest measured over 60 random layers (kernels/reference/winograd.py's table) was
# 2.6e-7 for F(2) and 1.2e-6 for F(4), and hypothesis found 8.8e-6 for F(4) on one channel
FLOAT32_BOUND = {2: 2e-6, 4: 2e-5}


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

    gradcheck(loss, x, winograd.input_gradient(dy, W, pads, m))
    gradcheck(loss, W, winograd.weight_gradient(x, dy, pads, m))


def compiled():
    return pytest.importorskip("npdistill._ext.winograd", reason="compiled kernels not built")


@settings(max_examples=40)
@given(**SHAPES, dtype=st.sampled_from([np.float32, np.float64]), block=st.integers(1, 40))
def test_the_compiled_correlation_equals_the_reference(m, pads, seed, n, c, f, h, w, dtype, block):
    """ext/winograd.pyx's correlate, any block size (tiles split across blocks, the last
    one partial), against kernels/reference/winograd.py's, bias included."""
    x, W = case(seed, n, c, f, h, w, dtype)
    bias = np.random.default_rng(seed).standard_normal(f).astype(dtype)
    AT, _, BT = winograd.transforms(m, 3, dtype)
    U = winograd.transform_weights(W, m)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    shape = winograd.forward(x, W, pads, m).transpose(0, 2, 3, 1).shape
    want, got = np.empty(shape, dtype), np.full(shape, np.nan, dtype)
    winograd.correlate(xl, U, bias, AT, BT, pads[0], pads[2], want, block)
    compiled().correlate(xl, U, bias, AT, BT, pads[0], pads[2], got, block)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@settings(max_examples=40)
@given(**SHAPES, dtype=st.sampled_from([np.float32, np.float64]), block=st.integers(1, 40),
       threads=st.integers(1, 3))
def test_the_compiled_filter_products_equal_the_reference(m, pads, seed, n, c, f, h, w, dtype,
                                                          block, threads):
    x, W = case(seed, n, c, f, h, w, dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(
        winograd.forward(x, W, pads, m).shape).astype(dtype)
    _, G, BT = winograd.transforms(3, m, dtype)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dyl = np.ascontiguousarray(dy.transpose(0, 2, 3, 1))
    want = np.zeros((1, len(G) ** 2, f, c), dtype)
    got = np.zeros((threads, len(G) ** 2, f, c), dtype)
    winograd.filter_products(xl, dyl, G, BT, pads[0], pads[2], want, block)
    compiled().filter_products(xl, dyl, G, BT, pads[0], pads[2], got, block)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got.sum(axis=0), want[0], rtol=tol,
                               atol=tol * np.abs(want).max())
