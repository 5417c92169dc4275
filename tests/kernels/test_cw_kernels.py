"""The Carlini-Wagner step: the reference's maths checked directly, the compiled kernels equal to it."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npdistill.kernels.reference import cw as reference
from tests.gradcheck import gradcheck

cython_cw = pytest.importorskip("npdistill._ext.cw", reason="compiled kernels not built")

DTYPES = st.sampled_from([np.float32, np.float64])


def margin_buffers(n, k, dtype):
    return (np.full(n, np.nan, dtype), np.full((n, k), np.nan, dtype), np.full(n, 7, np.uint8))


def run_margin(impl, z, labels, targeted, kappa, const):
    loss, dz, success = margin_buffers(*z.shape, z.dtype)
    impl.cw_margin(z, labels, targeted, kappa, const, loss, dz, success)
    return loss, dz, success


@given(st.integers(1, 8), st.integers(2, 12), st.booleans(), st.sampled_from([0.0, 0.5, 5.0]),
       st.booleans(), st.booleans(), DTYPES, st.integers(0, 2**31))
def test_margin_matches_its_definition_and_the_compiled_kernel(n, k, targeted, kappa, negative,
                                                               ties, dtype, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * 3
    if ties:
        z = np.round(z)
    if negative:                                   # every logit negative (a peer's bug)
        z = -np.abs(z) - 1
    z = z.astype(dtype)
    labels = rng.integers(0, k, n)
    const = rng.uniform(0.1, 10, n).astype(dtype)
    loss, dz, success = run_margin(reference, z, labels, targeted, kappa, const)
    for i in range(n):                             # the definition, one image at a time
        others = [z[i, j] for j in range(k) if j != labels[i]]
        best_other = max(others)
        margin = best_other - z[i, labels[i]] if targeted else z[i, labels[i]] - best_other
        np.testing.assert_allclose(loss[i], const[i] * max(margin + kappa, 0), rtol=1e-6)
        assert success[i] == (margin < -kappa)
        if margin + kappa > 0:                     # the gradient moves exactly two logits
            j = [c for c in range(k) if c != labels[i] and z[i, c] == best_other][0]
            sign = 1 if targeted else -1
            assert dz[i, j] == const[i] * sign and dz[i, labels[i]] == -const[i] * sign
            assert np.count_nonzero(dz[i]) == 2
        else:
            assert not dz[i].any()
    compiled = run_margin(cython_cw, z, labels, targeted, kappa, const)
    for got, want in zip(compiled, (loss, dz, success)):
        np.testing.assert_array_equal(got, want)


def update_inputs(rng, n, m, dtype, *, lo=0.0, hi=1.0, frozen=True):
    boxmul, boxplus = (hi - lo) / 2, (hi + lo) / 2
    x0 = rng.uniform(lo + 0.05, hi - 0.05, (n, m))
    w0 = np.arctanh((x0 - boxplus) / boxmul * 0.999999)
    w = w0 + rng.normal(0, 0.3, (n, m))
    mask = (rng.random((n, m)) > 0.2).astype(float) if frozen else np.ones((n, m))
    x = np.clip(x0 + mask * boxmul * (np.tanh(w) - np.tanh(w0)), lo, hi)
    arrays = dict(w=w, m=rng.normal(0, 0.1, (n, m)), v=rng.uniform(0, 0.1, (n, m)),
                  s0=np.tanh(w0), x0=x0, grad_x=rng.normal(0, 1, (n, m)), mask=mask,
                  tau=rng.uniform(0.05, 0.4, n), x=x, dist=np.full(n, np.nan))
    return {name: a.astype(dtype) for name, a in arrays.items()}, boxmul


@given(st.integers(1, 8), st.integers(1, 300), st.sampled_from([reference.L2, reference.LINF]),
       st.integers(1, 50), DTYPES, st.integers(0, 2**31))
def test_compiled_update_equals_the_reference(n, m, norm, step, dtype, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (0.0, 1.0) if seed % 2 else (-1.0, 2.0)
    arrays, boxmul = update_inputs(rng, n, m, dtype, lo=lo, hi=hi)
    copies = {name: a.copy() for name, a in arrays.items()}
    options = dict(norm=norm, step=step, lr=1e-2, boxmul=boxmul, lo=lo, hi=hi,
                   beta1=reference.ADAM_BETA1, beta2=reference.ADAM_BETA2,
                   epsilon=reference.ADAM_EPSILON)
    reference.cw_update(**arrays, **options)
    cython_cw.cw_update(**copies, **options)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    for name in ("w", "m", "v", "x", "dist"):
        np.testing.assert_allclose(copies[name], arrays[name], rtol=rtol, atol=atol, err_msg=name)
    assert arrays["x"].min() >= lo and arrays["x"].max() <= hi
    frozen = arrays["mask"] == 0
    np.testing.assert_array_equal(arrays["x"][frozen], arrays["x0"][frozen])


@given(st.integers(1, 4), st.integers(1, 20), st.sampled_from([reference.L2, reference.LINF]),
       st.integers(0, 2**31))
def test_update_follows_the_gradient_of_the_objective_in_w(n, m, norm, seed):
    """From m = 0 Adam's first moment is (1 - beta1) g: g must be d/dw of
    grad_x . x(w) + penalty(x(w)), checked by central differences in float64."""
    rng = np.random.default_rng(seed)
    arrays, boxmul = update_inputs(rng, n, m, np.float64)
    arrays["m"][...] = 0
    x0, s0, mask, tau, a = (arrays[k] for k in ("x0", "s0", "mask", "tau", "grad_x"))
    delta = np.abs(arrays["x"] - x0)
    if norm == reference.LINF and np.any(np.abs(delta - tau[:, None]) < 1e-4):
        return                                     # too close to the penalty's kink
    w = arrays["w"].copy()

    def objective():
        x = x0 + mask * boxmul * (np.tanh(w) - s0)
        d = x - x0
        penalty = (d * d).sum() if norm == reference.L2 else \
            np.maximum(np.abs(d) - tau[:, None], 0).sum()
        return (a * x).sum() + penalty

    reference.cw_update(**arrays, norm=norm, step=1, lr=1e-2, boxmul=boxmul, lo=0.0, hi=1.0)
    gradcheck(objective, w, arrays["m"] / (1 - 0.9), rtol=1e-5, atol=1e-8)


@given(st.integers(1, 8), st.integers(1, 100), DTYPES, st.integers(0, 2**31))
def test_track_keeps_the_least_successful_distance(n, m, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.random((n, m)).astype(dtype), rng.normal(size=(n, m)).astype(dtype)
    dist = rng.random(n).astype(dtype)
    success = (rng.random(n) > 0.4).astype(np.uint8)
    state = [rng.random(n).astype(dtype), rng.random(n).astype(dtype),
             rng.random((n, m)).astype(dtype), rng.normal(size=(n, m)).astype(dtype)]
    before = [s.copy() for s in state]
    copies = [s.copy() for s in state]
    reference.cw_track(x, w, dist, success, *state)
    cython_cw.cw_track(x, w, dist, success, *copies)
    for got, want in zip(copies, state):
        np.testing.assert_array_equal(got, want)
    step_best, best_dist, best_x, best_w = state
    for i in range(n):
        np.testing.assert_equal(step_best[i], min(before[0][i], dist[i]) if success[i] else before[0][i])
        replaced = success[i] and dist[i] < before[1][i]
        np.testing.assert_array_equal(best_x[i], x[i] if replaced else before[2][i])
        np.testing.assert_array_equal(best_w[i], w[i] if replaced else before[3][i])
