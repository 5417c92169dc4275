"""The direct convolution kernels (ext/direct.pyx) equal their NumPy reference
(kernels/reference/direct.py: im2col + GEMM) under every instruction set this CPU runs
(AVX-512, AVX2: each test once per set, capped with kernels.using_isa), give the same bits
in each, their input gradient is the adjoint of the forward pass, and Conv2D runs every pass
by them where they run; NPDISTILL_ISA caps them."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import kernels
from npdistill.kernels.isa import LEVELS as ISA_LEVELS
from npdistill.kernels.isa import name as isa_name
from npdistill.kernels.reference import direct as reference
from npdistill.nn import layers

compiled = pytest.importorskip("npdistill._ext.direct", reason="compiled kernels not built")
# the instruction sets this build and CPU run the kernels in: every test below runs in each
LEVELS = [level for level in (2, 1) if level <= compiled.best()]
ISA = pytest.mark.parametrize("isa", [isa_name(level) for level in LEVELS] or [
    pytest.param("avx2", marks=pytest.mark.skip(reason="this CPU has neither AVX-512F nor "
                                                       "AVX2 + FMA"))])


# float32: each output is a sum of kh*kw*C products; the kernels and the GEMM add them in
# different orders. Bound: |got - want| <= RTOL * (the same sum of |products|).
RTOL = 1e-5

SHAPES = dict(n=st.integers(1, 4), c=st.integers(1, 40), f=st.integers(1, 90),
              h=st.integers(1, 13), w=st.integers(1, 13), k=st.integers(1, 5),
              pad=st.integers(0, 4), seed=st.integers(0, 2**31))


def problem(n, c, f, h, w, k, pad, seed):
    """x (N, H, W, C), W (F, C, k, k), bias, dy and the padding of a convolution whose
    output is at least 1 x 1 (pad <= k - 1: each output sees one pixel of the image)."""
    pads = (min(pad, k - 1), k - 1 - min(pad, k - 1), min(pad, k - 1) // 2, 0)
    oh, ow = h + pads[0] + pads[1] - k + 1, w + pads[2] + pads[3] - k + 1
    assume(oh >= 1 and ow >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    W = rng.standard_normal((f, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, f)).astype(np.float32)
    return x, W, bias, dy, pads


def assert_within_rounding(got, want, bound):
    assert np.all(np.abs(got.astype(np.float64) - want) <= RTOL * bound + 1e-30), \
        f"largest error / bound {np.max(np.abs(got - want) / (bound + 1e-30)):.3g}"


@ISA
@settings(max_examples=60, deadline=None)
@given(**SHAPES)
def test_the_compiled_correlation_equals_the_reference(isa, n, c, f, h, w, k, pad, seed):
    """Every register tile (P = 1..12 positions, V = 1..4 vectors, the last one masked for
    F not a multiple of 16, F over 64 in chunks), padding on every side, bias included."""
    x, W, bias, dy, pads = problem(n, c, f, h, w, k, pad, seed)
    y = np.full(dy.shape, np.nan, np.float32)
    compiled.correlate(x, reference.packed(W), bias, k, k, pads[0], pads[2], y, False,
                       ISA_LEVELS[isa])
    want = np.empty(dy.shape, np.float64)
    reference.correlate(x.astype(np.float64), reference.packed(W).astype(np.float64), bias,
                        k, k, pads[0], pads[2], want)
    bound = np.empty(dy.shape, np.float64)
    reference.correlate(np.abs(x).astype(np.float64), np.abs(reference.packed(W)).astype(
        np.float64), np.abs(bias), k, k, pads[0], pads[2], bound)
    assert_within_rounding(y, want, bound)


@ISA
@pytest.mark.parametrize("h, w, f, pad", [(10, 10, 64, 0), (12, 12, 16, 0), (9, 13, 13, 2),
                                          (10, 10, 70, 2), (8, 15, 8, 1)])
def test_the_nets_layer_shapes_equal_the_reference(isa, h, w, f, pad):
    """Rows of 8, 10, 11 or 13 positions (cut as tiles of 4 + 4, 5 + 5, ...), the top and
    bottom rows of a padded image (which meet fewer kernel rows), channels that fill
    their last vector (unmasked loads and stores) and that do not (masked)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, h, w, 5)).astype(np.float32)
    W = rng.standard_normal((f, 5, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    y = np.full((2, oh, ow, f), np.nan, np.float32)
    compiled.correlate(x, reference.packed(W), bias, 3, 3, pad, pad, y, False, ISA_LEVELS[isa])
    want = np.empty(y.shape, np.float64)
    reference.correlate(x.astype(np.float64), reference.packed(W).astype(np.float64), bias,
                        3, 3, pad, pad, want)
    bound = np.empty(y.shape, np.float64)
    reference.correlate(np.abs(x).astype(np.float64), np.abs(reference.packed(W)).astype(
        np.float64), np.abs(bias), 3, 3, pad, pad, bound)
    assert_within_rounding(y, want, bound)


@ISA
@settings(max_examples=60, deadline=None)
@given(**SHAPES, threads=st.integers(1, 3))
def test_the_compiled_weight_gradient_equals_the_reference(isa, n, c, f, h, w, k, pad, seed,
                                                           threads):
    x, W, bias, dy, pads = problem(n, c, f, h, w, k, pad, seed)
    got = np.zeros((threads, k * k * c, f), np.float32)
    compiled.weight_gradient(x, dy, k, k, pads[0], pads[2], got, ISA_LEVELS[isa])
    want = np.zeros((1, k * k * c, f), np.float64)
    reference.weight_gradient(x.astype(np.float64), dy.astype(np.float64), k, k, pads[0],
                              pads[2], want)
    bound = np.zeros_like(want)
    reference.weight_gradient(np.abs(x).astype(np.float64), np.abs(dy).astype(np.float64), k, k,
                              pads[0], pads[2], bound)
    assert_within_rounding(got.sum(axis=0), want[0], bound[0])


@ISA
@settings(max_examples=40, deadline=None)
@given(**SHAPES)
def test_the_input_gradient_is_the_adjoint_of_the_forward_pass(isa, n, c, f, h, w, k, pad,
                                                               seed):
    """<correlate(x), dy> = <x, input_gradient(dy)>: the flipped kernels and the gradient's
    padding are right for every kernel size and padding."""
    x, W, _, dy, pads = problem(n, c, f, h, w, k, pad, seed)
    with kernels.using("cython"), kernels.using_isa(isa):
        assert kernels.isa() == isa
        y = kernels.direct_correlate(x, W, pads)
        dx = kernels.direct_input_gradient(dy, W, pads)
    assert dx.shape == x.shape
    lhs = np.vdot(y.astype(np.float64), dy)
    rhs = np.vdot(x.astype(np.float64), dx)
    scale = np.vdot(np.abs(y), np.abs(dy)) + np.vdot(np.abs(x), np.abs(dx))
    assert abs(lhs - rhs) <= 1e-5 * scale


@ISA
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(3, 11),
       st.integers(3, 11), st.integers(1, 4), st.sampled_from(["valid", "same"]),
       st.integers(0, 2**31))
def test_conv2d_by_the_direct_kernels_equals_im2col(isa, n, c, f, h, w, k, padding, seed):
    """Every pass of a float32 Conv2D (forward, input and parameter gradients, stacked
    seeds) gives im2col's results within float32 rounding; with fewer than
    DIRECT_MIN_CHANNELS input channels the input gradient is im2col's own."""
    assume(padding == "same" or k <= min(h, w))
    rng = np.random.default_rng(seed)
    layer = layers.Conv2D(c, f, k, padding=padding, seed=seed)
    layer.params["b"] = rng.standard_normal(f).astype(np.float32)
    x = rng.random((n, c, h, w)).astype(np.float32)
    results = []
    for name in ("im2col", "direct"):
        with kernels.using("cython"), kernels.using_conv(name), kernels.using_isa(isa):
            y = layer.forward(x).copy()
            assert layer.algorithm == name
            if name == "im2col":
                dy = rng.standard_normal(y.shape).astype(np.float32)
                seeds = rng.standard_normal((2 * n,) + y.shape[1:]).astype(np.float32)
            dx = layer.backward(dy).copy()
            grads = {key: v.copy() for key, v in layer.grads.items()}
            layer.forward(x)
            results.append((y, dx, grads["W"], grads["b"],
                            layer.backward(seeds, param_grads=False).copy()))
    for got, want in zip(results[1], results[0]):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    if c < kernels.DIRECT_MIN_CHANNELS:          # the same col2im: the same bits
        np.testing.assert_array_equal(results[1][1], results[0][1])


@ISA
def test_auto_takes_the_direct_kernels_for_float32_only(isa):
    with kernels.using("cython"), kernels.using_conv("auto"), kernels.using_isa(isa):
        assert kernels.conv_algorithm(32, 32, 3, 24, 24) == "direct"
        assert kernels.conv_algorithm(32, 32, 3, 24, 24, np.float64) == "im2col"
        assert kernels.conv_algorithm(1, 32, 5, 24, 24, np.float32) == "direct"
    with kernels.using("numpy"), kernels.using_conv("direct"):
        assert kernels.conv_algorithm(32, 32, 3, 24, 24) == "im2col"


def test_the_direct_kernels_take_only_contiguous_float32():
    W = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="x must be a C-contiguous 4-d float32"):
        kernels.direct_correlate(np.zeros((1, 5, 5, 3)), W, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="x has 2 channels, the weights 3"):
        kernels.direct_correlate(np.zeros((1, 5, 5, 2), np.float32), W, (0, 0, 0, 0))


@ISA
def test_a_model_trained_by_the_direct_kernels_learns(isa):
    """A small net on a separable problem: the loss falls as it does under im2col."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > x[:, 0, 4:].mean(axis=(1, 2))).astype(np.int64)
    losses = {}
    for name in ("im2col", "direct"):
        model = nd.Sequential([layers.Conv2D(1, 16, 3, seed=1), layers.ReLU(),
                               layers.Conv2D(16, 16, 3, seed=2), layers.ReLU(),
                               layers.Flatten(), layers.Dense(16 * 4 * 4, 2, seed=3)])
        with kernels.using("cython"), kernels.using_conv(name), kernels.using_isa(isa):
            _, history = nd.train(model, (x, y), epochs=15, batch_size=16, lr=0.05,
                                  momentum=0.9, seed=0, progress=False)
        losses[name] = history["loss"]
    assert losses["direct"][-1] < 0.5 * losses["direct"][0]
    np.testing.assert_allclose(losses["direct"], losses["im2col"], rtol=1e-3)


@ISA
def test_an_images_results_do_not_depend_on_the_rest_of_its_batch(isa):
    """Every output is summed in one order whatever else is in the batch: a subset of the
    images gives the same bits (what the attacks' restricted backward passes rely on;
    a GEMM's rounding can depend on a row's place in its blocks)."""
    rng = np.random.default_rng(5)
    layer = layers.Conv2D(32, 32, 3, padding="same", seed=5)
    x = rng.random((9, 32, 12, 12)).astype(np.float32)
    dy = rng.standard_normal((9, 32, 12, 12)).astype(np.float32)
    with kernels.using("cython"), kernels.using_conv("direct"), kernels.using_isa(isa):
        y_all = layer.forward(x).copy()
        dx_all = layer.backward(dy, param_grads=False).copy()
        y_part = layer.forward(x[2:5]).copy()
        dx_part = layer.backward(dy[2:5], param_grads=False).copy()
    np.testing.assert_array_equal(y_part, y_all[2:5])
    np.testing.assert_array_equal(dx_part, dx_all[2:5])


@pytest.mark.skipif(compiled.best() < 2, reason="needs AVX-512F to compare with AVX2")
@settings(max_examples=30, deadline=None)
@given(**SHAPES)
def test_avx2_and_avx512_give_the_same_bits(n, c, f, h, w, k, pad, seed):
    """Each output is the same sequence of fused multiply-adds in either set."""
    x, W, bias, dy, pads = problem(n, c, f, h, w, k, pad, seed)
    ys, grads = [], []
    for isa in (1, 2):
        y = np.empty(dy.shape, np.float32)
        compiled.correlate(x, reference.packed(W), bias, k, k, pads[0], pads[2], y, True, isa)
        acc = np.zeros((2, k * k * c, f), np.float32)
        compiled.weight_gradient(x, dy, k, k, pads[0], pads[2], acc, isa)
        ys.append(y)
        grads.append(acc)
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_array_equal(grads[0], grads[1])


def test_a_level_this_cpu_does_not_run_is_refused():
    x = np.zeros((1, 3, 3, 2), np.float32)
    y = np.zeros((1, 3, 3, 4), np.float32)
    wt, bias = np.zeros((2, 4), np.float32), np.zeros(4, np.float32)
    for bad in (0, compiled.best() + 1):
        with pytest.raises(ValueError, match=rf"isa {bad}: this build and CPU run the direct "
                                             rf"kernels at levels 1\.\.{compiled.best()}"):
            compiled.correlate(x, wt, bias, 1, 1, 0, 0, y, False, bad)


def test_npdistill_isa_caps_the_kernels_and_a_bad_value_is_refused_naming_it(monkeypatch):
    best = isa_name(compiled.best())
    with kernels.using("cython"), kernels.using_conv("auto"):
        monkeypatch.setenv("NPDISTILL_ISA", "baseline")
        assert kernels.isa() == "baseline" and not kernels.has("direct")
        assert kernels.conv_algorithm(32, 32, 3, 24, 24) == "im2col"
        assert kernels.environment()["isa"] == "baseline"
        with kernels.using_isa("avx512"):              # a cap above the machine: no cap
            assert kernels.isa() == best
        monkeypatch.setenv("NPDISTILL_ISA", "avx3")
        with pytest.raises(ValueError, match=r"NPDISTILL_ISA='avx3': expected one of "
                                             r"\('avx512', 'avx2', 'baseline'\)"):
            kernels.conv_algorithm(32, 32, 3, 24, 24)
        with kernels.using_isa("baseline"):            # use_isa overrides the variable
            assert kernels.isa() == "baseline"
        monkeypatch.delenv("NPDISTILL_ISA")
        assert kernels.isa() == best
    with pytest.raises(ValueError, match=r"isa 'sse': expected one of"):
        kernels.use_isa("sse")
