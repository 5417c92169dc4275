"""The compiled ReLU kernels (ext/relu.pyx) equal their NumPy reference, and the wrappers
keep a layer's memory layout."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdistill import kernels
from npdistill.kernels.reference import relu as reference

compiled = pytest.importorskip("npdistill._ext.relu", reason="compiled kernels not built")

values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 3),
       hnp.arrays(np.float32, st.integers(1, 300), elements=values))
def test_the_compiled_kernels_equal_the_reference(dtype, repeats, x):
    x = x.astype(dtype)
    want_out, want_mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    got_out, got_mask = np.full_like(x, 7), np.full(x.shape, 7, np.uint8)
    reference.forward(x, want_out, want_mask)
    compiled.forward(x, got_out, got_mask)
    np.testing.assert_array_equal(got_out, want_out)           # NaN where x is NaN
    np.testing.assert_array_equal(got_mask, want_mask)
    dy = np.tile(x[::-1], repeats)
    want, got = np.empty_like(dy), np.full_like(dy, 7)
    with np.errstate(invalid="ignore"):                     # inf * 0 = NaN, as in NumPy
        reference.backward(dy, want_mask, want)
    compiled.backward(dy, got_mask, got)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_the_wrappers_keep_the_layout_and_stack_seeds(backend):
    rng = np.random.default_rng(0)
    x = kernels.empty_nchw((3, 4, 5, 6), np.float32)        # NCHW view, channels-last memory
    x[...] = rng.standard_normal(x.shape)
    with kernels.using(backend):
        y, mask = kernels.relu_forward(x)
        assert y.strides == x.strides and kernels.channels_last(mask).flags.c_contiguous
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        np.testing.assert_array_equal(mask, x > 0)
        dy = rng.standard_normal((6, 4, 5, 6)).astype(np.float32)    # C-contiguous: copied
        dx = kernels.relu_backward(dy, mask)
        np.testing.assert_array_equal(dx, (dy.reshape(2, *x.shape) * mask).reshape(dy.shape))
        gappy = x[:, :, ::2]                                # not one block of memory
        np.testing.assert_array_equal(kernels.relu_forward(gappy)[0], np.maximum(gappy, 0))
        with pytest.raises(ValueError, match="stack copies of the mask's shape"):
            kernels.relu_backward(dy[:5], mask)
