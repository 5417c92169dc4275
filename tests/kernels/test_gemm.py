"""The compiled products in fixed pieces (ext/gemm.pyx) equal their NumPy reference
(kernels/reference/gemm.py) and NumPy's own product, for every way the operands lie in memory."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npdistill import kernels
from npdistill.kernels.reference import gemm as reference

cython_gemm = pytest.importorskip("npdistill._ext.gemm", reason="compiled kernels not built")

cases = st.tuples(st.integers(0, 300), st.integers(0, 70), st.integers(0, 300),   # M K N
                  st.booleans(), st.booleans(), st.sampled_from([np.float32, np.float64]),
                  st.integers(0, 2**31))


def stored(rng, shape, transposed, dtype):
    """An array of ``shape`` whose rows (or, transposed, columns) lie contiguous."""
    a = rng.standard_normal(shape[::-1] if transposed else shape).astype(dtype)
    return a.T if transposed else a


@given(cases)
def test_the_compiled_pieces_equal_the_reference_and_numpy(case):
    m, k, n, a_t, b_t, dtype, seed = case
    rng = np.random.default_rng(seed)
    a, b = stored(rng, (m, k), a_t, dtype), stored(rng, (k, n), b_t, dtype)
    split_rows, piece = reference.plan(m, n)
    expected = np.full((m, n), np.nan, dtype)
    got = np.full((m, n), np.nan, dtype)
    reference.product(a.T if a_t else a, b.T if b_t else b, a_t, b_t, split_rows, piece,
                      expected)
    cython_gemm.product(a.T if a_t else a, b.T if b_t else b, a_t, b_t, split_rows, piece, got)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1, k))
    with kernels.using("cython"):
        np.testing.assert_allclose(kernels.matmul(a, b), a.astype(np.float64) @ b,
                                   rtol=tol, atol=tol * max(1, k))


def test_pieces_cover_the_product_along_its_larger_side():
    assert reference.plan(1000, 32) == (True, 128)          # 8 pieces of rows
    assert reference.plan(128, 1024) == (False, 128)        # 8 pieces of columns
    assert reference.plan(40, 10) == (True, 32)             # at least MIN_PIECE wide
    assert [e - s for s, e in reference.pieces(300, 128)] == [128, 128, 44]


def test_matmul_writes_into_out_and_refuses_mismatched_shapes():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 7)), rng.standard_normal((7, 3))
    out = np.empty((50, 3))
    assert kernels.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b)
    with pytest.raises(ValueError, match=r"\(M, K\) @ \(K, N\)"):
        kernels.matmul(a, a)
    with pytest.raises(ValueError, match="out must be"):
        kernels.matmul(a, b, out=np.empty((3, 50)))


@given(st.integers(0, 300), st.integers(0, 70), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(1, 9), st.integers(0, 2**31))
def test_the_compiled_column_sum_pieces_equal_the_reference(rows, columns, transposed, dtype,
                                                            pieces, seed):
    """Each piece of rows (some empty when rows < pieces) summed in the reference's order:
    the same bits; the pieces add up to the column sums."""
    a = stored(np.random.default_rng(seed), (rows, columns), transposed, dtype)
    expected = np.full((pieces, columns), np.nan, dtype)
    got = np.full((pieces, columns), np.nan, dtype)
    reference.column_sum_pieces(a.T if transposed else a, transposed, expected)
    cython_gemm.column_sum_pieces(a.T if transposed else a, transposed, got)
    np.testing.assert_array_equal(got, expected)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.sum(axis=0), a.astype(np.float64).sum(axis=0), rtol=tol,
                               atol=tol * max(1, rows))


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_column_sums_add_every_row_whichever_way_the_array_lies(backend):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1000, 7))
    with kernels.using(backend):
        for stored_as in (a, np.asfortranarray(a), a[:3], a[:0]):
            np.testing.assert_allclose(kernels.column_sums(stored_as), stored_as.sum(axis=0),
                                       rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match=r"2-D array, got shape \(1000,\)"):
            kernels.column_sums(a[:, 0])
