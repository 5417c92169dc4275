"""The compiled im2col / col2im equal their NumPy reference, and the dispatch behaves."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npdistill import kernels
from npdistill.kernels.reference import conv as reference

cython_conv = pytest.importorskip("npdistill._ext.conv", reason="compiled kernels not built")

cases = st.tuples(
    st.integers(1, 8), st.integers(1, 16), st.integers(3, 16), st.integers(3, 16),  # N C H W
    st.integers(1, 5), st.sampled_from(["valid", "same"]),
    st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))


def geometry(h, w, k, padding):
    pads = (0, 0, 0, 0) if padding == "valid" else ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)
    return pads, h + pads[0] + pads[1] - k + 1, w + pads[2] + pads[3] - k + 1


@given(cases)
def test_cython_im2col_and_col2im_equal_the_reference(case):
    n, c, h, w, k, padding, dtype, seed = case
    assume(padding == "same" or k <= min(h, w))
    pads, oh, ow = geometry(h, w, k, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)        # the kernels work channels-last
    expected = np.full((n * oh * ow, k * k * c), np.nan, dtype)
    got = np.full_like(expected, np.nan)
    reference.im2col(x, k, k, pads[0], pads[2], oh, ow, expected)
    cython_conv.im2col(x, k, k, pads[0], pads[2], oh, ow, got)
    np.testing.assert_array_equal(got, expected)

    cols = rng.standard_normal(expected.shape).astype(dtype)
    dx_ref = np.full_like(x, np.nan)
    dx = np.full_like(x, np.nan)                 # col2im must overwrite, not accumulate
    reference.col2im(cols, k, k, pads[0], pads[2], oh, ow, dx_ref)
    cython_conv.col2im(cols, k, k, pads[0], pads[2], oh, ow, dx)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, dx_ref, rtol=rtol, atol=rtol)


@given(cases)
def test_col2im_is_the_adjoint_of_im2col(case):
    n, c, h, w, k, padding, dtype, seed = case
    assume(padding == "same" or k <= min(h, w))
    pads, _, _ = geometry(h, w, k, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    cols = kernels.im2col(x, k, k, pads)
    r = rng.standard_normal(cols.shape)
    back = kernels.col2im(r, x.shape, k, k, pads)
    assert np.vdot(cols, r) == pytest.approx(np.vdot(x, back), rel=1e-10, abs=1e-10)


@given(cases, st.integers(1, 3), st.integers(1, 4), st.integers(1, 8))
def test_cython_weight_gradient_equals_the_reference(case, chunks, block, f):
    """Every chunk of images (1..3 of them, some empty when N < chunks) and block size
    (the last block of a chunk short): the chunks' sums add up to the reference's, to
    rounding; in float64, to 1e-12 of the terms' magnitudes."""
    n, c, h, w, k, padding, dtype, seed = case
    assume(padding == "same" or k <= min(h, w))
    pads, oh, ow = geometry(h, w, k, padding)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    dy = rng.standard_normal((n * oh * ow, f)).astype(dtype)
    got = np.zeros((chunks, f, k * k * c), dtype)
    cython_conv.weight_gradient(x, dy, k, k, pads[0], pads[2], oh, ow, block, got)
    want = np.zeros((1, f, k * k * c))
    reference.weight_gradient(x.astype(np.float64), dy.astype(np.float64), k, k, pads[0],
                              pads[2], oh, ow, block, want)
    bound = np.zeros_like(want)
    reference.weight_gradient(np.abs(x).astype(np.float64), np.abs(dy).astype(np.float64), k,
                              k, pads[0], pads[2], oh, ow, n, bound)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.all(np.abs(got.sum(axis=0) - want[0]) <= rtol * bound[0] + 1e-30)


def test_the_weight_gradient_is_the_convolutions_by_im2col():
    """kernels.im2col_weight_gradient (NCHW in, gemm_weights' layout out) is dy.T @ im2col(x)
    on either backend, and refuses a dy of the wrong rows or dtype by name."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 7, 6))
    dy = rng.standard_normal((5 * 7 * 6, 4))
    want = dy.T @ kernels.im2col(x, 3, 3, (1, 1, 1, 1))
    for backend in ("numpy", "cython"):
        with kernels.using(backend):
            got = kernels.im2col_weight_gradient(x, dy, 3, 3, (1, 1, 1, 1), 2)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"dy of shape \(210, F\) float64, got \(209, 4\)"):
        kernels.im2col_weight_gradient(x, dy[1:], 3, 3, (1, 1, 1, 1), 2)
    with pytest.raises(ValueError, match="float64, got .* float32"):
        kernels.im2col_weight_gradient(x, dy.astype(np.float32), 3, 3, (1, 1, 1, 1), 2)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dispatch_accepts_non_contiguous_inputs(backend, dtype):
    rng = np.random.default_rng(0)
    x = rng.random((3, 5, 9, 2)).astype(dtype).transpose(0, 1, 3, 2)   # (3, 5, 2, 9) view
    x = np.concatenate([x, x], axis=2)[:, ::2]                           # strided channels
    assert not x.flags.c_contiguous
    with kernels.using(backend):
        got = kernels.im2col(x, 2, 2, (0, 1, 0, 1))
    expected = kernels.im2col(np.ascontiguousarray(x), 2, 2, (0, 1, 0, 1))
    np.testing.assert_array_equal(got, expected)


def test_use_rejects_unknown_backends():
    with pytest.raises(ValueError, match="unknown backend 'fortran'"):
        kernels.use("fortran")
    assert kernels.backend() in kernels.available()


def test_missing_extension_warns_once_and_runs_on_numpy():
    code = ("import sys, warnings; sys.modules['npdistill._ext.conv'] = None\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import npdistill as nd, numpy as np\n"
            "    import npdistill.kernels\n"
            "    m = nd.architectures.papernot_mnist(seed=0)\n"
            "    m.predict(np.zeros((2, 1, 28, 28), np.float32))\n"
            "print(nd.kernels.backend(), sum('compiled kernels not found' in str(w.message) "
            "for w in caught))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "1"]
