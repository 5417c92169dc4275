"""The compiled max pooling equals its NumPy reference, ties, NaN and stacked seeds included."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npdistill.kernels.reference import pool as reference

cython_pool = pytest.importorskip("npdistill._ext.pool", reason="compiled kernels not built")

VALUES = st.sampled_from(["normal", "ties", "nan"])
cases = st.tuples(st.integers(1, 8), st.integers(1, 16), st.integers(3, 16), st.integers(3, 16),
                  st.integers(1, 4), st.integers(1, 3), VALUES,
                  st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31))


def pool_input(rng, shape, values, dtype):
    """Channels-last images to pool: normal values; "ties": few distinct values (ties in
    most windows); "nan": a fifth of them NaN (windows with none, one, several, all)."""
    x = rng.standard_normal(shape)
    if values == "ties":
        x = np.round(x)
    elif values == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    return x.astype(dtype)


@given(cases)
def test_cython_maxpool_equals_the_reference(case):
    n, c, h, w, size, seeds, values, dtype, seed = case
    assume(size <= min(h, w))
    rng = np.random.default_rng(seed)
    x = pool_input(rng, (n, h, w, c), values, dtype)    # the kernels work channels-last
    shape = (n, h // size, w // size, c)
    out = [np.full(shape, np.inf, dtype) for _ in range(2)]   # unwritten: NaN is a result
    argmax = [np.full(shape, -1, np.int64) for _ in range(2)]
    reference.maxpool_forward(x, size, out[0], argmax[0])
    cython_pool.maxpool_forward(x, size, out[1], argmax[1])
    np.testing.assert_array_equal(out[1], out[0])
    np.testing.assert_array_equal(argmax[1], argmax[0])

    dy = rng.standard_normal((seeds * n,) + shape[1:]).astype(dtype)
    dx = [np.full((seeds * n, h, w, c), np.nan, dtype) for _ in range(2)]
    reference.maxpool_backward(dy, argmax[0], size, dx[0])
    cython_pool.maxpool_backward(dy, argmax[0], size, dx[1])
    np.testing.assert_array_equal(dx[1], dx[0])
    assert np.count_nonzero(dx[0]) == np.count_nonzero(dy)    # one destination per output
