"""Every CUDA kernel equals its NumPy reference (on Numba's simulator where no GPU is present).

The simulator runs each GPU thread as a Python thread: the shapes stay small and
the examples few. The same tests run on a real GPU (then with more examples).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import kernels, layers
from npdistill.kernels.reference import conv as ref_conv
from npdistill.kernels.reference import cw as ref_cw
from npdistill.kernels.reference import cuda_dense as ref_dense
from npdistill.kernels.reference import cuda_elementwise as ref_elementwise
from npdistill.kernels.reference import pool as ref_pool
from npdistill.kernels.reference import saliency as ref_saliency
from npdistill.nn.optim import momentum_step
from tests.kernels.test_cw_kernels import update_inputs
from tests.kernels.test_pool_kernels import VALUES as POOL_VALUES
from tests.kernels.test_pool_kernels import pool_input
from tests.kernels.test_saliency_kernel import cases as saliency_cases
from tests.kernels.test_saliency_kernel import draw as draw_saliency

pytest.importorskip("numba.cuda", reason="numba-cuda not installed (pip install -e '.[test]')")
from npdistill.cuda import _launch, conv, cw, dense, elementwise, pool, saliency  # noqa: E402

pytestmark = pytest.mark.cuda
few = settings(max_examples=6 if _launch.SIMULATED else 50)
DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**31)


def nan_like(shape, dtype):
    return np.full(shape, np.nan, dtype) if np.dtype(dtype).kind == "f" else np.full(shape, 7, dtype)


@few
@given(st.integers(1, 2), st.integers(1, 3), st.integers(3, 6), st.integers(3, 6),
       st.integers(1, 3), st.booleans(), DTYPES, SEEDS)
def test_im2col_and_col2im_equal_the_reference(n, c, h, w, k, same, dtype, seed):
    assume(k <= min(h, w))
    top, left = ((k - 1) // 2, (k - 1) // 2) if same else (0, 0)
    oh, ow = (h, w) if same else (h - k + 1, w - k + 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    cols = [nan_like((n * oh * ow, k * k * c), dtype) for _ in range(2)]
    ref_conv.im2col(x, k, k, top, left, oh, ow, cols[0])
    conv.im2col(x, k, k, top, left, oh, ow, cols[1])
    np.testing.assert_array_equal(cols[1], cols[0])
    dcols = rng.standard_normal(cols[0].shape).astype(dtype)
    dx = [nan_like(x.shape, dtype) for _ in range(2)]
    ref_conv.col2im(dcols, k, k, top, left, oh, ow, dx[0])
    conv.col2im(dcols, k, k, top, left, oh, ow, dx[1])
    np.testing.assert_array_equal(dx[1], dx[0])        # same additions in the same order


@few
@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7),
       st.integers(1, 3), st.integers(1, 2), POOL_VALUES, DTYPES, SEEDS)
def test_maxpool_equals_the_reference(n, c, h, w, size, seeds, values, dtype, seed):
    assume(size <= min(h, w))
    rng = np.random.default_rng(seed)
    x = pool_input(rng, (n, h, w, c), values, dtype)
    shape = (n, h // size, w // size, c)
    out = [np.full(shape, np.inf, dtype) for _ in range(2)]   # unwritten: NaN is a result
    argmax = [np.full(shape, -1, np.int64) for _ in range(2)]
    ref_pool.maxpool_forward(x, size, out[0], argmax[0])
    pool.maxpool_forward(x, size, out[1], argmax[1])
    np.testing.assert_array_equal(out[1], out[0])
    np.testing.assert_array_equal(argmax[1], argmax[0])
    dy = rng.standard_normal((seeds * n,) + shape[1:]).astype(dtype)
    dx = [nan_like((seeds * n, h, w, c), dtype) for _ in range(2)]
    ref_pool.maxpool_backward(dy, argmax[0], size, dx[0])
    pool.maxpool_backward(dy, argmax[0], size, dx[1])
    np.testing.assert_array_equal(dx[1], dx[0])


@few
@given(saliency_cases)
def test_pair_search_picks_the_reference_pair(case):
    alpha, beta, domain, increase = draw_saliency(case)
    sign = 1 if increase else -1
    pairs = [np.full((len(alpha), 2), 99, np.int64) for _ in range(2)]
    ref_saliency.pair_search(sign * alpha, sign * beta, domain.astype(np.uint8), pairs[0])
    saliency.pair_search(sign * alpha, sign * beta, domain.astype(np.uint8), pairs[1])
    np.testing.assert_array_equal(pairs[1], pairs[0])


def test_pair_search_breaks_ties_across_threads_like_the_reference():
    # every pair scores the same: the first pair (0, 1) must win although threads
    # other than the first find equal scores
    m = 3 * _launch.THREADS + 1
    alpha = np.ones((2, m))
    beta = -np.ones((2, m))
    domain = np.ones((2, m), np.uint8)
    domain[1, :5] = 0
    pairs = np.empty((2, 2), np.int64)
    saliency.pair_search(alpha, beta, domain, pairs)
    assert pairs.tolist() == [[0, 1], [5, 6]]


@few
@given(st.integers(1, 5), st.integers(2, 6), st.booleans(), st.sampled_from([0.0, 0.5, 5.0]),
       st.booleans(), DTYPES, SEEDS)
def test_cw_margin_equals_the_reference(n, k, targeted, kappa, ties, dtype, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * 3
    z = (np.round(z) if ties else -np.abs(z) - 1).astype(dtype)     # ties, or all negative
    labels = rng.integers(0, k, n)
    const = rng.uniform(0.1, 10, n).astype(dtype)
    out = []
    for impl in (ref_cw, cw):
        buffers = (nan_like(n, dtype), nan_like((n, k), dtype), np.full(n, 7, np.uint8))
        impl.cw_margin(z, labels, targeted, dtype(kappa), const, *buffers)
        out.append(buffers)
    for got, want in zip(out[1], out[0]):
        np.testing.assert_array_equal(got, want)


@few
@given(st.integers(1, 3), st.integers(1, 40), st.sampled_from([ref_cw.L2, ref_cw.LINF]),
       st.integers(1, 30), DTYPES, SEEDS)
def test_cw_update_equals_the_reference(n, m, norm, step, dtype, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (0.0, 1.0) if seed % 2 else (-1.0, 2.0)
    arrays, boxmul = update_inputs(rng, n, m, dtype, lo=lo, hi=hi)
    copies = {name: a.copy() for name, a in arrays.items()}
    options = dict(norm=norm, step=step, lr=1e-2, boxmul=boxmul, lo=lo, hi=hi)
    ref_cw.cw_update(**arrays, **options)
    cw.cw_update(**copies, **options)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    for name in ("w", "m", "v", "x", "dist"):
        np.testing.assert_allclose(copies[name], arrays[name], rtol=rtol, atol=atol, err_msg=name)
    frozen = arrays["mask"] == 0
    np.testing.assert_array_equal(copies["x"][frozen], arrays["x0"][frozen])


@few
@given(st.integers(1, 5), st.integers(1, 40), DTYPES, SEEDS)
def test_cw_track_equals_the_reference(n, m, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.random((n, m)).astype(dtype), rng.normal(size=(n, m)).astype(dtype)
    dist = rng.random(n).astype(dtype)
    success = (rng.random(n) > 0.4).astype(np.uint8)
    state = [rng.random(n).astype(dtype), rng.random(n).astype(dtype),
             rng.random((n, m)).astype(dtype), rng.normal(size=(n, m)).astype(dtype)]
    copies = [s.copy() for s in state]
    ref_cw.cw_track(x, w, dist, success, *state)
    cw.cw_track(x, w, dist, success, *copies)
    for got, want in zip(copies, state):
        np.testing.assert_array_equal(got, want)


@few           # up to 3 x 3 tiles of 16 (work 4 on the simulator's 4 x 4 threads) on its 2 blocks:
@given(st.integers(1, 40), st.integers(1, 80), st.integers(1, 40), st.booleans(),  # grid stride,
       st.booleans(), st.booleans(), st.sampled_from([None, 1, 2, 3]), st.sampled_from([1, 4]),
       DTYPES, SEEDS)
def test_gemm_equals_the_reference(rows, inner, cols, trans_a, trans_b, accumulate, splits, work,
                                   dtype, seed):
    """splits: the inner dimension shared by that many blocks (DEPTH-deep pieces: inner 80
    gives up to 3 splits, the last one shorter), then summed in order; work: outputs per
    thread along each side (WORK = 4 by default)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner)).astype(dtype)
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols)).astype(dtype)
    start = rng.standard_normal((rows, cols)).astype(dtype)
    out = [start.copy(), start.copy()]
    ref_dense.gemm(a, b, out[0], trans_a, trans_b, accumulate)
    dense.gemm(a, b, out[1], trans_a, trans_b, accumulate, splits=splits, work=work)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out[1], out[0], rtol=tol, atol=tol)


def test_gemm_splits_only_small_outputs_with_a_long_inner_dimension():
    """A convolution's weight gradient at batch 128 (32 x 9 outputs over 86,528 rows) is
    split; a forward GEMM with thousands of tiles, or a short inner dimension, is not."""
    assert dense.split_count(1, 86528) == dense.SPLIT_TARGET
    assert dense.split_count(5, 73728) == -(-dense.SPLIT_TARGET // 5)
    assert dense.split_count(1, 600) == 600 // dense.MIN_SPLIT_DEPTH
    assert dense.split_count(1152, 288) == 1
    assert dense.split_count(2, 300) == 1
    with pytest.raises(ValueError, match="splits must be a positive integer, got 0"):
        dense.gemm(np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 2)), splits=0)
    with pytest.raises(ValueError, match="work must be 1 or 4, got 2"):
        dense.gemm(np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 2)), work=2)


def test_gemm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="gemm: op"):
        dense.gemm(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)))


def reference_convolution(x, k, same, f, rng, dtype):
    """x (N, H, W, C) channels-last -> (geometry, pads, its im2col cols, W, b, [W | b])."""
    n, h, w, c = x.shape
    top = left = (k - 1) // 2 if same else 0
    bottom = right = k - 1 - top if same else 0
    oh, ow = h + top + bottom - k + 1, w + left + right - k + 1
    cols = nan_like((n * oh * ow, k * k * c), dtype)
    ref_conv.im2col(x, k, k, top, left, oh, ow, cols)
    W = rng.standard_normal((f, k * k * c)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return (k, k, top, left, oh, ow), cols, W, b, np.ascontiguousarray(np.hstack([W, b[:, None]]))


@few
@given(st.integers(1, 2), st.integers(1, 3), st.integers(3, 6), st.integers(3, 6),
       st.integers(1, 3), st.booleans(), st.integers(1, 5), st.sampled_from([None, 1, 2, 3]),
       st.booleans(), st.booleans(), DTYPES, SEEDS)
def test_fused_convolution_products_equal_the_reference(n, c, h, w, k, same, f, splits, relu,
                                                        dropout, dtype, seed):
    """A convolution's three products as fused.py computes them, without im2col's matrix:
    the forward with its bias, ReLU and dropout; the weight gradient with the bias
    gradient; the input gradient with the backward of the layer before it (ReLU and
    dropout derivatives). The references: kernels/reference/conv.py's im2col and col2im and the
    layers' own arithmetic. splits: the inner dimension shared by blocks (the last block
    to finish a tile adds the partials)."""
    assume(k <= min(h, w))
    from npdistill.cuda import fused
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan          # through the products; the ReLU keeps it
    geometry, cols, W, b, aug = reference_convolution(x, k, same, f, rng, dtype)
    rows, _, top, left, oh, ow = len(cols), *geometry[1:]
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    rate = 0.4
    scale = dtype(1) / dtype(1 - rate)
    u = rng.random((rows, f))
    expected = cols @ W.T + b
    if relu:
        expected = np.where(expected <= 0, 0, expected)       # as layers.ReLU: NaN kept
    mask = np.where(u >= rate, scale, dtype(0)).astype(dtype)
    if dropout:
        expected = expected * mask
    y, got_mask = np.full((rows, f), np.inf, dtype), nan_like((rows, f), dtype)  # y: NaN kept
    fused.product(fused.COLS, x, fused.MAT_T, aug, rows, aug.shape[1], f, y, epilogue=fused.ACT,
                  extra=(u, got_mask), flags=(relu, dropout, 0), vals=(rate, scale),
                  ga=geometry, splits=splits)
    np.testing.assert_allclose(y, expected, **tol)
    if dropout:
        np.testing.assert_array_equal(got_mask, mask)

    dy = rng.standard_normal((rows, f)).astype(dtype)
    grad = nan_like(aug.shape, dtype)
    fused.product(fused.MAT_T, dy, fused.COLS, x, f, rows, aug.shape[1], grad, gb=geometry,
                  splits=splits)
    np.testing.assert_allclose(grad, np.hstack([dy.T @ cols, dy.sum(axis=0)[:, None]]), **tol)

    # the input gradient, times the derivative of a ReLU + dropout stage that made x
    act = np.where(x > 0, x, 0).astype(dtype)
    x_mask = np.where(rng.random(x.shape) >= rate, scale, dtype(0)).astype(dtype)
    dx_ref = nan_like(x.shape, dtype)
    ref_conv.col2im(dy @ W, k, k, top, left, oh, ow, dx_ref)
    dx_ref = dx_ref * (act > 0) * x_mask
    dx = nan_like(x.shape, dtype)
    fused.product(fused.DCOLS, dy.reshape(n, oh, ow, f), fused.WFLIP, aug, n * h * w, k * k * f,
                  c, dx.reshape(n * h * w, c), epilogue=fused.MASK,
                  extra=(act.ravel(), x_mask.ravel()), flags=(1, 1, 0),
                  ga=(k, k, top, left, h, w), gb=(k, k, 0, 0, 0, 0), splits=splits)
    np.testing.assert_allclose(dx, dx_ref, **tol)


@few
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7),
       st.sampled_from([2, 3]), st.integers(1, 2), st.booleans(), DTYPES, SEEDS)
def test_fused_pool_scatter_equals_the_reference(n, c, h, w, size, seeds, relu, dtype, seed):
    """The SCATTER epilogue: a product's rows over a pooled map routed to the windows'
    argmax (kernels/reference/pool.py's maxpool_backward, odd rows and columns left out, S stacked
    seeds sharing one forward), times the ReLU derivative of the map that was pooled."""
    assume(size <= min(h, w))
    from npdistill.cuda import fused
    rng = np.random.default_rng(seed)
    act = np.where(rng.random((n, h, w, c)) < 0.3, 0,
                   rng.standard_normal((n, h, w, c))).astype(dtype)
    oh, ow = h // size, w // size
    pooled, argmax = nan_like((n, oh, ow, c), dtype), np.empty((n, oh, ow, c), np.int64)
    ref_pool.maxpool_forward(act, size, pooled, argmax)
    a = rng.standard_normal((seeds * n * oh * ow, 3)).astype(dtype)
    b = rng.standard_normal((3, c)).astype(dtype)
    expected = np.zeros((seeds * n, h, w, c), dtype)
    ref_pool.maxpool_backward((a @ b).reshape(seeds * n, oh, ow, c), argmax, size, expected)
    if relu:
        expected = expected * np.tile(act > 0, (seeds, 1, 1, 1))
    got = np.zeros((seeds * n, h, w, c), dtype)      # a scatter never writes the odd rows
    fused.product(fused.MAT, a, fused.MAT, b, len(a), 3, c, got, epilogue=fused.SCATTER,
                  extra=(act.ravel(), act.ravel(), argmax), flags=(relu, 0, size))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got, expected, **tol)


@few
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.booleans(), DTYPES, SEEDS)
def test_normalize_kernel_equals_the_layer(n, c, h, w, seeds, per_channel, dtype, seed):
    rng = np.random.default_rng(seed)
    k = c if per_channel else 1
    layer = layers.Normalize(rng.random(k).tolist(), (rng.random(k) + 0.1).tolist())
    x = rng.random((n, c, h, w)).astype(dtype)          # the layer (the reference) takes NCHW
    mean = np.asarray(layer.mean, dtype)
    inverse = np.asarray([1.0 / s for s in layer.std], dtype)
    y = nan_like((n, h, w, c), dtype)                    # the kernel channels-last
    elementwise.channel_affine(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), mean, inverse, y)
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), layer.forward(x))
    dy = rng.standard_normal((seeds * n, c, h, w)).astype(dtype)
    dx = nan_like((seeds * n, h, w, c), dtype)
    elementwise.channel_affine(np.ascontiguousarray(dy.transpose(0, 2, 3, 1)),
                               np.zeros(1, dtype), inverse, dx)
    np.testing.assert_array_equal(dx.transpose(0, 3, 1, 2), layer.backward(dy))


@few
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.floats(0.0, 0.9), DTYPES, SEEDS)
def test_relu_dropout_and_flatten_equal_the_reference(n, c, h, w, seeds, rate, dtype, seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((n, h, w, c)), 1).astype(dtype)     # exact zeros too
    x[rng.random(x.shape) < 0.1] = np.nan                  # NaN stays NaN, its mask 0
    relu = layers.ReLU()                       # the CPU path's layer is the reference
    y, mask = np.full(x.shape, np.inf, dtype), np.full(x.shape, 7, np.uint8)   # NaN kept
    elementwise.relu_forward(x, y, mask)
    np.testing.assert_array_equal(y, relu.forward(x))
    np.testing.assert_array_equal(mask, relu.mask)
    dy = rng.standard_normal((seeds * n, h, w, c)).astype(dtype)
    dx = nan_like(dy.shape, dtype)
    elementwise.mask_backward(dy, mask, dx)
    np.testing.assert_array_equal(dx, relu.backward(dy))

    dropout = layers.Dropout(rate)
    dropout.rng = np.random.default_rng(seed)                  # the uniforms it will draw:
    u = np.random.default_rng(seed).random(x.shape, dtype=np.float64)
    y, mask = nan_like(x.shape, dtype), nan_like(x.shape, dtype)
    elementwise.dropout_forward(x, u, rate, y, mask)
    np.testing.assert_array_equal(y, dropout.forward(x, training=True))
    np.testing.assert_array_equal(mask, np.ones_like(x) if rate == 0 else dropout.mask)

    flat = [nan_like((n, c * h * w), dtype) for _ in range(2)]
    ref_elementwise.nhwc_to_flat(x, flat[0])
    elementwise.nhwc_to_flat(x, flat[1])
    np.testing.assert_array_equal(flat[1], flat[0])
    back = [nan_like(x.shape, dtype) for _ in range(2)]
    ref_elementwise.flat_to_nhwc(flat[0], back[0])
    elementwise.flat_to_nhwc(flat[0], back[1])
    np.testing.assert_array_equal(back[1], back[0])
    np.testing.assert_array_equal(back[0], x)


@few
@given(st.integers(1, 6), st.integers(2, 6), st.booleans(), st.sampled_from([1.0, 2.5, 100.0]),
       st.sampled_from([1.0, 20.0]), DTYPES, SEEDS)
def test_softmax_cross_entropy_equals_the_reference(n, k, soft, T, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, k)) * 30).astype(dtype)
    if soft:
        target = rng.random((n, k)).astype(dtype)
        target /= target.sum(axis=1, keepdims=True)
    else:
        target = rng.integers(0, k, n)
    loss, dz = nan_like(n, dtype), nan_like((n, k), dtype)
    labels = rng.integers(0, k, n)
    totals = np.array([1.5, 2.0])
    elementwise.softmax_cross_entropy(z, target, T, scale, loss, dz, labels, totals)
    # the reference is the loss the CPU path trains with: nd.cross_entropy, row by row for
    # the per-row losses, whole for the gradient (train() multiplies it by loss_scale)
    rows = [nd.cross_entropy(z[i:i + 1], target[i:i + 1], T)[0] for i in range(n)]
    _, dlogits = nd.cross_entropy(z, target, T)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, rows, rtol=tol, atol=tol)
    np.testing.assert_allclose(dz, dlogits * dtype(scale), rtol=tol, atol=tol)
    # the epoch's loss sum and correct count, which the training step adds up on the way
    expected = np.array([1.5, 2.0])
    ref_elementwise.batch_stats(z, target if not soft else labels, loss, expected)
    np.testing.assert_allclose(totals, expected, rtol=1e-6)


@few
@given(st.integers(1, 30), st.floats(0.001, 1.0), st.floats(0.0, 0.95), DTYPES, SEEDS)
def test_sgd_and_take_rows_equal_the_reference(size, lr, momentum, dtype, seed):
    rng = np.random.default_rng(seed)
    p, v, g = (rng.standard_normal(size).astype(dtype) for _ in range(3))
    states = [(p.copy(), v.copy()), (p.copy(), v.copy())]
    momentum_step(*states[0], g, lr, momentum)             # what SGD.step runs on the CPU
    elementwise.sgd_update(*states[1], g, lr, momentum)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for got, want in zip(states[1], states[0]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

    src = rng.standard_normal((size, 2, 3)).astype(dtype)
    idx = rng.integers(0, size, 5)
    rows = [nan_like((5, 2, 3), dtype) for _ in range(2)]
    ref_elementwise.take_rows(src, idx, rows[0])
    elementwise.take_rows(src, idx, rows[1])
    np.testing.assert_array_equal(rows[1], rows[0])

    # one launch for parameters of several learning rates: an int32 group per element
    group = rng.integers(0, 3, size).astype(np.int32)
    lrs = np.array([lr, lr / 10, 2 * lr])
    states = [(p.copy(), v.copy()), (p.copy(), v.copy())]
    for i in range(3):
        sub = [s_[group == i] for s_ in states[0]]
        momentum_step(*sub, g[group == i], float(lrs[i]), momentum)
        for array, part in zip(states[0], sub):
            array[group == i] = part
    elementwise.sgd_update(*states[1], g, lrs, momentum, group=group)
    for got, want in zip(states[1], states[0]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# -- the dispatch ---------------------------------------------------------------
@pytest.fixture
def cuda_backend():
    with kernels.using("cuda"):
        yield


def test_dispatch_routes_to_the_cuda_kernels(cuda_backend):
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 5, 4)).astype(np.float32)
    got = kernels.im2col(x, 2, 2, (0, 1, 0, 1))
    pooled, argmax = kernels.maxpool_forward(x, 2)
    kernels.use("numpy")
    np.testing.assert_array_equal(got, kernels.im2col(x, 2, 2, (0, 1, 0, 1)))
    expected, expected_argmax = kernels.maxpool_forward(x, 2)
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(argmax, expected_argmax)


def test_asking_for_cuda_without_it_names_what_is_missing(monkeypatch):
    import npdistill.cuda
    monkeypatch.setattr(npdistill.cuda, "missing", lambda: "numba-cuda is not installed (test)")
    monkeypatch.delitem(kernels.backends._impl, "cuda", raising=False)
    previous = kernels.backend()              # "cuda" itself where a GPU is present
    with pytest.raises(ValueError, match="'cuda' is not available: .*numba-cuda is not installed"):
        kernels.use("cuda")
    assert kernels.backend() == previous      # the refused request changed nothing


def test_importing_npdistill_does_not_import_numba():
    code = "import sys, npdistill; print('numba' in sys.modules, npdistill.kernels.backend())"
    env = {k: v for k, v in os.environ.items() if k != "NPDISTILL_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    imported, backend = out.stdout.split()
    assert imported == str(backend == "cuda")     # only a GPU machine's default imports it


def test_environment_variable_picks_the_backend():
    code = "import npdistill.kernels as k; print(k.backend())"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    for name in ("numpy", "cython"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**env, "NPDISTILL_BACKEND": name})
        assert out.stdout.strip() == name
    sim = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "NPDISTILL_BACKEND": "cuda", "NUMBA_ENABLE_CUDASIM": "1"})
    assert sim.stdout.strip() == "cuda"
    if _launch.SIMULATED:                          # no GPU here: asking for it must say why
        bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, "NPDISTILL_BACKEND": "cuda"})
        assert bad.returncode != 0 and "NPDISTILL_BACKEND='cuda'" in bad.stderr
        assert "NUMBA_ENABLE_CUDASIM=1" in bad.stderr
