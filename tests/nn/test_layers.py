"""Every layer's backward against central differences, in float64."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from tests.gradcheck import gradcheck


def check_layer(layer, x, training=False, reseed=None):
    """gradcheck of sum(R * layer(x)) w.r.t. x and every parameter."""
    rng = np.random.default_rng(0)

    def forward():
        if reseed is not None:
            layer.rng = np.random.default_rng(reseed)
        return layer.forward(x, training)

    y = forward()
    R = rng.standard_normal(y.shape)
    dx = layer.backward(R)
    loss = lambda: float((forward() * R).sum())
    gradcheck(loss, x, dx)
    for name, value in layer.params.items():
        forward()
        layer.backward(R)
        gradcheck(loss, value, layer.grads[name])


conv_cases = st.tuples(
    st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),   # N, C, F
    st.integers(3, 7), st.integers(3, 7), st.integers(1, 4),   # H, W, k
    st.sampled_from(["valid", "same"]), st.integers(0, 2**31))


@given(conv_cases)
def test_conv2d_gradients(case):
    n, c, f, h, w, k, padding, seed = case
    assume(padding == "same" or k <= min(h, w))
    layer = layers.Conv2D(c, f, k, padding=padding, dtype=np.float64, seed=seed)
    layer.params["b"] = np.random.default_rng(seed).standard_normal(f)
    x = np.random.default_rng(seed + 1).random((n, c, h, w))
    check_layer(layer, x)


@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 2, 3, 4]), st.integers(0, 2**31))
def test_conv2d_output_shape(h, w, k, seed):
    assume(k <= min(h, w))
    x = np.random.default_rng(seed).random((2, 1, h, w)).astype(np.float32)
    assert layers.Conv2D(1, 3, k).forward(x).shape == (2, 3, h - k + 1, w - k + 1)
    assert layers.Conv2D(1, 3, k, padding="same").forward(x).shape == (2, 3, h, w)


def test_conv2d_matches_the_convolution_formula(rng):
    # y[n, f, i, j] = b[f] + sum_{c,a,b} W[f, c, a, b] x[n, c, i + a - pad, j + b - pad]
    x = rng.random((2, 3, 6, 5))
    layer = layers.Conv2D(3, 4, 3, padding="same", dtype=np.float64, seed=1)
    layer.params["b"] = rng.standard_normal(4)
    W, b = layer.params["W"], layer.params["b"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 4, 6, 5)) + b[None, :, None, None]
    for a in range(3):
        for bb in range(3):
            expected += np.einsum("fc,nchw->nfhw", W[:, :, a, bb], xp[:, :, a:a + 6, bb:bb + 5])
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7),
       st.integers(1, 3), st.integers(0, 2**31))
def test_maxpool_gradients(n, c, h, w, size, seed):
    assume(size <= min(h, w))
    rng = np.random.default_rng(seed)
    # distinct values 1e-3 apart: no window has a near-tie that eps = 1e-6 could flip
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 1e-3
    check_layer(layers.MaxPool2D(size), x)


def test_maxpool_values_and_remainder():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    pool = layers.MaxPool2D(2)
    np.testing.assert_array_equal(pool.forward(x)[0, 0], [[6, 8], [16, 18]])
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    assert dx[0, 0, 4].sum() == 0 and dx[0, 0, :, 4].sum() == 0   # the unpooled remainder
    assert dx.sum() == 4 and dx[0, 0, 1, 1] == 1


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31))
def test_dense_gradients(n, fan_in, fan_out, seed):
    layer = layers.Dense(fan_in, fan_out, dtype=np.float64, seed=seed)
    layer.params["b"] = np.random.default_rng(seed).standard_normal(fan_out)
    check_layer(layer, np.random.default_rng(seed + 1).standard_normal((n, fan_in)))


@given(st.integers(1, 4), st.integers(1, 8), st.integers(0, 2**31))
def test_relu_gradients(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[np.abs(x) < 1e-3] = 0.5          # central differences are wrong at the kink
    check_layer(layers.ReLU(), x)


@given(st.integers(1, 4), st.integers(1, 8), st.sampled_from([0.0, 0.3, 0.5, 0.9]),
       st.integers(0, 2**31))
def test_dropout_gradients_with_a_fixed_mask(n, d, rate, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    check_layer(layers.Dropout(rate), x, training=True, reseed=seed)


def test_dropout_statistics_and_inference_identity(rng):
    layer = layers.Dropout(0.5, seed=3)
    x = np.ones((200, 500), dtype=np.float32)
    y = layer.forward(x, training=True)
    assert abs((y == 0).mean() - 0.5) < 0.01
    assert set(np.unique(y)) == {0.0, 2.0}             # survivors scaled by 1 / (1 - rate)
    assert layer.forward(x, training=False) is x


def test_flatten_round_trip(rng):
    x = rng.random((3, 2, 4, 5))
    layer = layers.Flatten()
    assert layer.forward(x).shape == (3, 40)
    np.testing.assert_array_equal(layer.backward(layer.forward(x)), x)


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Conv2D(3, 4, 3), (2, 2, 8, 8)),
    (lambda: layers.Conv2D(3, 4, 3), (2, 3, 8)),
    (lambda: layers.Dense(5, 2), (2, 4)),
    (lambda: layers.MaxPool2D(4), (1, 1, 3, 3)),
])
def test_layers_reject_wrong_shapes(make, shape):
    with pytest.raises(ValueError, match="expects"):
        make().forward(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(0, 4, 3), lambda: layers.Conv2D(1, 4, 3, padding="full"),
    lambda: layers.Dense(3, 2.5), lambda: layers.MaxPool2D(0), lambda: layers.Dropout(1.0)])
def test_layers_reject_bad_configuration(make):
    with pytest.raises((ValueError, TypeError)):
        make()


@given(st.integers(1, 3), st.integers(2, 4), st.integers(0, 2**31))
def test_stacked_seeds_equal_separate_backward_passes(n, repeats, seed):
    """backward with S seeds per sample stacked on the batch axis = S separate backward passes."""
    from npdistill import Sequential
    rng = np.random.default_rng(seed)
    model = Sequential([layers.Conv2D(2, 3, 3, dtype=np.float64), layers.ReLU(),
                        layers.MaxPool2D(2), layers.Flatten(), layers.Dense(12, 4, dtype=np.float64),
                        layers.Dropout(0.5), layers.Dense(4, 3, dtype=np.float64)], seed=seed)
    x = rng.random((n, 2, 6, 6))
    seeds = rng.standard_normal((repeats, n, 3))
    model.forward(x)
    stacked = model.backward(seeds.reshape(repeats * n, 3), param_grads=False)
    for s in range(repeats):
        model.forward(x)
        np.testing.assert_allclose(stacked[s * n:(s + 1) * n],
                                   model.backward(seeds[s], param_grads=False), rtol=1e-10, atol=1e-14)
    model.forward(x)
    with pytest.raises(ValueError, match="parameter gradients need dy of batch"):
        model.backward(seeds.reshape(repeats * n, 3))


@given(st.integers(1, 7), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.integers(1, 3), st.integers(0, 2**31))
def test_blocked_convolution_equals_one_block(n, c, repeats, padding, block_images, seed):
    """Conv2D works through image blocks (BLOCK_BYTES, and the weight gradient's
    WEIGHT_BLOCK_BYTES); any block size gives the same results."""
    rng = np.random.default_rng(seed)
    layer = layers.Conv2D(c, 3, 3, padding=padding, dtype=np.float64, seed=seed)
    x = rng.random((n, c, 7, 6))
    dy_shape = layer.forward(x).shape
    dy = rng.standard_normal(dy_shape)
    seeds = rng.standard_normal((repeats * n,) + dy_shape[1:])
    results = []
    image_bytes = dy_shape[2] * dy_shape[3] * 9 * c * 8       # one image's im2col, float64
    for block_bytes in (1 << 40, block_images * image_bytes):
        blocking = nd.kernels.convolution
        old = blocking.BLOCK_BYTES, blocking.WEIGHT_BLOCK_BYTES
        blocking.BLOCK_BYTES = blocking.WEIGHT_BLOCK_BYTES = block_bytes
        try:
            y = layer.forward(x).copy()
            dx = layer.backward(dy)
            grads = {k: v.copy() for k, v in layer.grads.items()}
            layer.forward(x)
            stacked = layer.backward(seeds, param_grads=False)
        finally:
            blocking.BLOCK_BYTES, blocking.WEIGHT_BLOCK_BYTES = old
        results.append((y, dx, grads, stacked))
    (y0, dx0, g0, s0), (y1, dx1, g1, s1) = results
    # blocks change the summation order only: equal up to rounding of the largest terms
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12,
                                                    atol=1e-12 * max(np.abs(b).max(), 1.0))
    close(y1, y0)
    close(dx1, dx0)
    close(s1, s0)
    for key in g0:
        close(g1[key], g0[key])


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.booleans(),
       st.integers(0, 2**31))
def test_normalize_gradients(n, c, h, w, per_channel, seed):
    rng = np.random.default_rng(seed)
    k = c if per_channel else 1
    layer = layers.Normalize(rng.random(k).tolist(), (rng.random(k) + 0.1).tolist())
    x = rng.random((n, c, h, w))
    check_layer(layer, x)
    x_dot = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.jvp(x_dot),
                               (layer.forward(x + 1e-6 * x_dot) - layer.forward(x)) / 1e-6,
                               rtol=1e-5, atol=1e-7)


def test_normalize_is_the_per_channel_standardization_and_refuses_bad_statistics(rng):
    x = rng.random((2, 3, 4, 4))
    layer = layers.Normalize([0.1, 0.2, 0.3], [0.5, 0.25, 2.0])
    mean, std = np.array([0.1, 0.2, 0.3])[:, None, None], np.array([0.5, 0.25, 2.0])[:, None, None]
    expected = (x - mean) / std
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-15)
    assert layers.Normalize(0.5, 0.25).forward(x).shape == x.shape       # one value for all
    for mean, std, match in [([0.1, 0.2], [1.0, 1.0, 1.0], "one value per channel"),
                             ([0.1], [0.0], "std must be positive"), ([], [1.0], "at least one"),
                             (["a"], [1.0], r"mean\[0\] must be a number"),
                             ([0.1], [np.nan], r"std\[0\] must be finite")]:
        with pytest.raises((ValueError, TypeError), match=match):
            layers.Normalize(mean, std)
    with pytest.raises(ValueError, match=r"layer 0, Normalize.*\(N, 3, H, W\)"):
        nd.Sequential([layers.Normalize([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]), layers.Flatten(),
                       layers.Dense(16, 2)]).logits(x[:, :1].astype(np.float32))


@settings(max_examples=30)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(3, 9),
       st.integers(3, 9), st.sampled_from(["valid", "same"]),
       st.sampled_from(["winograd2", "winograd4", "auto"]), st.sampled_from(["numpy", "cython"]),
       st.integers(0, 2**31))
def test_conv2d_by_winograd_equals_im2col(n, c, f, h, w, padding, algorithm, backend, seed):
    """Every pass of a 3x3 Conv2D (forward, input and parameter gradients, stacked seeds)
    gives im2col's results in float64 whichever algorithm and backend runs it."""
    if backend not in nd.kernels.available():
        pytest.skip(f"{backend} not built")
    rng = np.random.default_rng(seed)
    layer = layers.Conv2D(c, f, 3, padding=padding, dtype=np.float64, seed=seed)
    layer.params["b"] = rng.standard_normal(f)
    x = rng.random((n, c, h, w))
    dy = rng.standard_normal(layer.forward(x).shape)
    seeds = rng.standard_normal((2 * n,) + dy.shape[1:])
    results = []
    for name in ("im2col", algorithm):
        with nd.kernels.using(backend), nd.kernels.using_conv(name):
            y = layer.forward(x).copy()
            assert layer.algorithm == nd.kernels.conv_algorithm(c, f, 3, *y.shape[2:], y.dtype)
            dx = layer.backward(dy).copy()
            grads = {k: v.copy() for k, v in layer.grads.items()}
            layer.forward(x)
            results.append((y, dx, grads, layer.backward(seeds, param_grads=False).copy()))
    (y0, dx0, g0, s0), (y1, dx1, g1, s1) = results
    for got, want in ((y1, y0), (dx1, dx0), (g1["W"], g0["W"]), (g1["b"], g0["b"]), (s1, s0)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
