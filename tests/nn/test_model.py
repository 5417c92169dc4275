"""Sequential: whole-model gradients, inference helpers, dtype copies, model files."""
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npdistill as nd
from npdistill import layers
from npdistill.nn.archive import archive_checksum
from tests.gradcheck import gradcheck


def small_net(seed=0, dtype=np.float32, padding="valid"):
    """8x8 two-channel inputs -> 3 logits, one of every layer type."""
    features = 4 * 2 * 2 if padding == "valid" else 4 * 4 * 4
    return nd.Sequential([
        layers.Conv2D(2, 3, 3, padding=padding, dtype=dtype), layers.ReLU(),
        layers.MaxPool2D(2), layers.Conv2D(3, 4, 2, padding=padding, dtype=dtype), layers.ReLU(),
        layers.Flatten(), layers.Dense(features, 5, dtype=dtype),
        layers.ReLU(), layers.Dropout(0.5), layers.Dense(5, 3, dtype=dtype)], seed=seed)


@settings(max_examples=8)
@given(st.integers(1, 2), st.sampled_from(["valid", "same"]), st.booleans(), st.integers(0, 2**31))
def test_sequential_gradients_wrt_input_and_every_parameter(n, padding, soft, seed):
    model = small_net(seed, np.float64, padding)
    rng = np.random.default_rng(seed)
    for key, value in model.params.items():      # non-zero biases: no pre-activation sits
        if key.endswith(".b"):                   # exactly on ReLU's kink (zero-padded areas)
            value[...] = rng.uniform(0.05, 0.2, value.shape) * rng.choice([-1, 1], value.shape)
    x = rng.random((n, 2, 8, 8))
    y = rng.dirichlet(np.ones(3), size=n) if soft else rng.integers(0, 3, n)
    loss = lambda: nd.cross_entropy(model.logits(x), y, 2.0)[0]
    _, dlogits = nd.cross_entropy(model.logits(x), y, 2.0)
    dx = model.backward(dlogits)
    grads = {k: v.copy() for k, v in model.grads.items()}
    gradcheck(loss, x, dx, rtol=1e-4, atol=1e-8)
    for key, value in model.params.items():
        gradcheck(loss, value, grads[key], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("algorithm", ["im2col", "direct", "winograd4"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_the_fused_conv_and_relu_equal_the_layers_run_one_by_one(algorithm, padding):
    """Sequential.forward applies each ReLU after a Conv2D inside the convolution
    (rectify): the logits, the ReLUs' masks and every gradient are those of the layers
    run one by one, to the bit."""
    model = small_net(3, np.float32, padding)
    rng = np.random.default_rng(3)
    for key, value in model.params.items():
        value[...] = rng.standard_normal(value.shape)
    x = rng.random((5, 2, 8, 8)).astype(np.float32)
    x[0, :, :4] = np.nan                              # NaN stays NaN through the fused ReLU
    runs = []
    for fused in (True, False):
        with nd.kernels.using_conv(algorithm):
            model.set_rng(np.random.default_rng(0))
            if fused:
                z = model.forward(x, training=True)
            else:
                z = x
                for layer in model.layers:
                    z = layer.forward(z, True)
            dx = model.backward(np.nan_to_num(z), input_grad=True)
        masks = [layer.mask.copy() for layer in model.layers if isinstance(layer, layers.ReLU)]
        runs.append((z.copy(), dx.copy(), masks, {k: v.copy() for k, v in model.grads.items()}))
    (z1, dx1, m1, g1), (z0, dx0, m0, g0) = runs
    np.testing.assert_array_equal(z1, z0)
    assert np.isnan(z1[0]).all() and np.isfinite(z1[1:]).all()
    np.testing.assert_array_equal(dx1, dx0)
    for a, b in zip(m1, m0):
        np.testing.assert_array_equal(a, b)
    for key in g0:
        np.testing.assert_array_equal(g1[key], g0[key])


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 7), st.sampled_from(["valid", "same"]), st.integers(0, 2**31))
def test_backward_of_some_rows_equals_those_rows_of_the_whole_backward(n, padding, seed):
    model = small_net(seed, np.float64, padding)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2, 8, 8))
    dz = rng.normal(size=(n, 3))
    model.forward(x)
    whole = model.backward(dz, param_grads=False)
    rows = np.sort(rng.choice(n, rng.integers(1, n), replace=False))
    some = model.backward(dz[rows], param_grads=False, rows=rows)
    np.testing.assert_allclose(some, whole[rows], rtol=1e-12, atol=1e-14)
    # the restriction is a view of that pass only: the whole batch still backpropagates
    np.testing.assert_allclose(model.backward(dz, param_grads=False), whole, rtol=0, atol=0)
    with pytest.raises(ValueError, match="param_grads=False"):
        model.backward(dz[rows], rows=rows)
    with pytest.raises(ValueError, match="one entry per row"):
        model.backward(dz[rows], param_grads=False, rows=rows[:-1])


@pytest.mark.parametrize("T", [1.0, 20.0])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("net, shape", [(nd.architectures.papernot_mnist, (1, 28, 28)),
                                        (nd.architectures.papernot_cifar10, (3, 32, 32))])
def test_public_input_gradient_of_cross_entropy(net, shape, T, soft):
    """The API a user calls: model.input_gradient(x, dlogits) against central differences,
    on both papers' nets."""
    model = net(seed=3).astype(np.float64)
    rng = np.random.default_rng(7)
    x = rng.random((2, *shape))
    y = rng.dirichlet(np.ones(10), size=2) if soft else np.array([3, 8])
    _, dlogits = nd.cross_entropy(model.logits(x), y, T)
    dx = model.input_gradient(x, dlogits)
    # a random 40-pixel subset keeps the check fast; each pixel is checked exactly
    pick = rng.choice(x.size, 40, replace=False)
    flat = x.reshape(-1)
    numeric = []
    for i in pick:
        old = flat[i]
        flat[i] = old + 1e-6
        plus = nd.cross_entropy(model.logits(x), y, T)[0]
        flat[i] = old - 1e-6
        minus = nd.cross_entropy(model.logits(x), y, T)[0]
        flat[i] = old
        numeric.append((plus - minus) / 2e-6)
    np.testing.assert_allclose(dx.reshape(-1)[pick], numeric, rtol=1e-5, atol=1e-9)


def test_predict_helpers_and_astype(rng):
    model = nd.architectures.papernot_mnist(seed=0)
    x = rng.random((7, 1, 28, 28)).astype(np.float32)
    z = model.logits(x)
    assert z.shape == (7, 10) and z.dtype == np.float32
    np.testing.assert_array_equal(model.predict(x, batch_size=3), z.argmax(axis=1))
    np.testing.assert_allclose(model.predict_proba(x, T=5.0, batch_size=2), nd.softmax(z, 5.0),
                               rtol=1e-5)
    m64 = model.astype(np.float64)
    assert m64.dtype == np.float64 and model.dtype == np.float32
    np.testing.assert_allclose(m64.logits(x.astype(np.float64)), z, rtol=1e-4, atol=1e-5)
    m64.params["0.W"][...] = 0                         # a copy: the original is untouched
    assert np.abs(model.params["0.W"]).sum() > 0


def test_same_seed_same_model():
    a, b = nd.architectures.papernot_mnist(seed=5), nd.architectures.papernot_mnist(seed=5)
    c = nd.architectures.papernot_mnist(seed=6)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params if k.endswith("W"))


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((2, 28, 28), np.float32), ValueError, "rank 4"),
    (np.zeros((2, 3, 28, 28), np.float32), ValueError, r"\(N, 1, H, W\)"),
    (np.zeros((2, 1, 28, 28), np.uint8), TypeError, "float32 or float64"),
    (np.zeros((2, 1, 28, 28), np.float64), TypeError, "model.astype"),
    (np.full((2, 1, 28, 28), np.nan, np.float32), ValueError, "NaN"),
    ([[0.0]], TypeError, "numpy array"),
])
def test_bad_inputs_are_refused(x, error, match):
    model = nd.architectures.papernot_mnist(seed=0)
    with pytest.raises(error, match=match):
        model.logits(x)


# -- model files ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, rng, dtype):
    model = nd.architectures.papernot_mnist(seed=1).astype(dtype)
    model.metadata["training_temperature"] = 20.0
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = nd.load_model(path)
    assert loaded.dtype == dtype
    assert loaded.architecture() == model.architecture()
    assert loaded.metadata["training_temperature"] == 20.0
    x = rng.random((3, 1, 28, 28)).astype(dtype)
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
    with np.load(path, allow_pickle=False) as archive:   # plain arrays + JSON, no pickle
        meta = json.loads(str(archive["__metadata__"]))
    assert meta["format"] == "npdistill-model" and meta["library_version"] == nd.__version__
    assert len(meta["checksum"]) == 64


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.npz"
    nd.architectures.papernot_mnist(seed=1).save(path)
    return path


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        nd.load_model(saved)


def test_tampered_parameters_are_refused(saved):
    def change(arrays):
        arrays["0.W"] = arrays["0.W"].copy()
        arrays["0.W"][0, 0, 0, 0] += 1e-3
    _rewrite(saved, change)
    with pytest.raises(ValueError, match="checksum mismatch"):
        nd.load_model(saved)


def test_architecture_that_does_not_match_the_parameters_is_refused(saved):
    def change(arrays):
        meta = json.loads(str(arrays["__metadata__"]))
        meta["architecture"][0]["config"]["out_channels"] = 16
        arrays["__metadata__"] = np.array(json.dumps(meta))
    _rewrite(saved, change)
    with pytest.raises(ValueError, match="checksum mismatch"):      # the header is covered
        nd.load_model(saved)

    def crafted(arrays):                 # the same edit with a valid checksum: the shapes speak
        meta = json.loads(str(arrays["__metadata__"]))
        meta.pop("checksum")
        params = {k: v for k, v in arrays.items() if k != "__metadata__"}
        meta["checksum"] = archive_checksum(params, meta)
        arrays["__metadata__"] = np.array(json.dumps(meta))
    _rewrite(saved, crafted)
    with pytest.raises(ValueError, match=r"gives parameter 0.W the shape \(16, 1, 3, 3\)"):
        nd.load_model(saved)


def test_missing_or_extra_entries_are_refused(saved, tmp_path):
    _rewrite(saved, lambda arrays: arrays.pop("0.b"))
    with pytest.raises(ValueError, match="metadata lists"):
        nd.load_model(saved)
    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.zeros(3))
    with pytest.raises(ValueError, match="not an npdistill model file"):
        nd.load_model(plain)


def test_pickled_objects_are_never_loaded(saved):
    _rewrite(saved, lambda arrays: arrays.__setitem__("evil", np.array([{"a": 1}], dtype=object)))
    with pytest.raises(ValueError, match="holds Python objects"):
        nd.load_model(saved)


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError):
        nd.load_model(path)
    assert not zipfile.is_zipfile(path)


def test_a_normalize_layer_is_saved_and_loaded(tmp_path, rng):
    model = nd.Sequential([layers.Normalize([0.1307], [0.3081]), layers.Conv2D(1, 2, 3),
                           layers.ReLU(), layers.Flatten(), layers.Dense(2 * 4 * 4, 3)], seed=0)
    model.save(tmp_path / "m.npz")
    loaded = nd.load_model(tmp_path / "m.npz")
    assert loaded.layers[0].config() == {"mean": [0.1307], "std": [0.3081]}
    x = rng.random((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
