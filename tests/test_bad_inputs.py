"""Every public entry point x a catalogue of bad inputs: a ValueError or TypeError whose
message names the offending argument, never a crash deep inside, a silent wrong result or
lost work. Valid values of unusual types (NumPy scalars, Fractions) are accepted."""
import fractions
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npdistill as nd
from npdistill import attacks, layers, metrics
from npdistill.defenses import MutationDetector, adversarial_training, mutate
from npdistill.defenses.distillation import defensive_distillation
from npdistill.nn.archive import read_archive

K = 3


def tiny_model(seed=0, dtype=np.float32):
    """6x6 one-channel images -> 3 logits: conv 3x3, pool 2, dense (fast enough to call
    every entry point hundreds of times)."""
    return nd.Sequential([layers.Conv2D(1, 2, 3, dtype=dtype), layers.ReLU(),
                          layers.MaxPool2D(2), layers.Flatten(), layers.Dense(8, K, dtype=dtype)],
                         seed=seed)


MODEL = tiny_model()
X = np.random.default_rng(0).random((4, 1, 6, 6)).astype(np.float32)
Y = np.array([0, 1, 2, 0])
TARGET = (Y + 1) % K
QUICK = {"cw_l2": {"binary_search_steps": 1, "max_iterations": 2},
         "cw_l0": {"max_iterations": 2}, "cw_linf": {"max_iterations": 2}}


def _train(model, data, **kw):
    return nd.train(model.copy(), data, progress=False, **kw)


def _distill(teacher, data, temperature=2.0, **kw):
    return nd.distill(teacher, data, temperature, progress=False, **kw)


def _detector(model, accuracy_data, **kw):
    return MutationDetector(model, accuracy_data, max_mutants=2, **kw)


# entry point -> (call(**arguments), its default arguments). Every image argument is "x"
# (for train-like calls the data pair is built from x and y).
ENTRY_POINTS = {
    "logits": (lambda model, x: model.logits(x), {}),
    "predict": (lambda model, x, batch_size=512: model.predict(x, batch_size), {}),
    "predict_proba": (lambda model, x, T=1.0: model.predict_proba(x, T), {}),
    "input_gradient": (lambda model, x: model.input_gradient(
        x, np.ones((len(x), K), np.float32) if isinstance(x, np.ndarray) and x.ndim else None),
        {}),
    "jacobian": (lambda model, x, T=1.0, of="softmax", batch_size=32:
                 nd.jacobian(model, x, T, of, batch_size), {}),
    "fgsm": (lambda model, x, y, **kw: attacks.fgsm(model, x, y, **kw), {"y": Y}),
    "tgsm": (lambda model, x, target, **kw: attacks.tgsm(model, x, target=target, **kw),
             {"target": TARGET}),
    "bim": (lambda model, x, y, **kw: attacks.bim(model, x, y, steps=2, **kw), {"y": Y}),
    "pgd": (lambda model, x, y, **kw: attacks.pgd(model, x, y, steps=2, **kw), {"y": Y}),
    "jsma": (lambda model, x, target, **kw: attacks.jsma(model, x, target=target, progress=False,
                                                         **kw),
             {"target": TARGET}),
    "cw_l2": (lambda model, x, y, **kw: attacks.cw_l2(model, x, y, **{**QUICK["cw_l2"], **kw}),
              {"y": Y}),
    "cw_l0": (lambda model, x, y, **kw: attacks.cw_l0(model, x, y, **{**QUICK["cw_l0"], **kw}),
              {"y": Y}),
    "cw_linf": (lambda model, x, y, **kw: attacks.cw_linf(model, x, y,
                                                          **{**QUICK["cw_linf"], **kw}),
                {"y": Y}),
    "accuracy": (lambda model, x, y: metrics.accuracy(model, x, y), {"y": Y}),
    "adversarial_gradient_amplitude": (
        lambda model, x, T=1.0, batch_size=64: metrics.adversarial_gradient_amplitude(
            model, x, T, batch_size), {}),
    "zero_gradient_fraction": (
        lambda model, x, T=1.0, batch_size=64: metrics.zero_gradient_fraction(
            model, x, T, batch_size), {}),
    "gradient_masking": (lambda model, x, y, T=1.0, batch_size=64: metrics.gradient_masking(
        model, x, y, T, batch_size), {"y": Y}),
    "train": (lambda model, x, y, **kw: _train(model, (x, y), **kw), {"y": Y}),
    "distill": (lambda model, x, y, **kw: _distill(model, (x, y), **kw), {"y": Y}),
    "adversarial_training": (lambda model, x, y, **kw: adversarial_training(
        model.copy(), (x, y), progress=False, **kw), {"y": Y}),
    "MutationDetector": (lambda model, x, y, **kw: _detector(model, (x, y), **kw), {"y": Y}),
}

ALL = sorted(ENTRY_POINTS)
WITH_LABELS = sorted(k for k, (_, d) in ENTRY_POINTS.items() if "y" in d or "target" in d)


def call(entry, **arguments):
    function, defaults = ENTRY_POINTS[entry]
    return function(**{"model": MODEL, "x": X, **defaults, **arguments})


def assert_refused(entry, argument, match=None, **arguments):
    with pytest.raises((ValueError, TypeError)) as caught:
        call(entry, **arguments)
    message = str(caught.value)
    assert (match or argument) in message, f"{entry}: {message!r} does not name {argument!r}"


# -- images ----------------------------------------------------------------------------------
BAD_IMAGES = {
    "a list": X.tolist(),
    "integers": (X * 255).astype(np.uint8),
    "float16": X.astype(np.float16),
    "float64 for a float32 model": X.astype(np.float64),
    "rank 3": X[:, 0],
    "NaN": np.where(X > 0.9, np.nan, X).astype(np.float32),
    "inf": np.where(X > 0.9, np.inf, X).astype(np.float32),
    "above 1": X * 2,
    "below 0": X - 0.5,
    "no images": X[:0],
    "two channels": np.repeat(X, 2, axis=1),
    "smaller than the kernel": X[:, :, :2, :2],
}


@pytest.mark.parametrize("entry", ALL)
@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_images_are_refused_naming_x(entry, kind):
    bad = BAD_IMAGES[kind]
    if kind in ("above 1", "below 0") and entry in ("logits", "input_gradient", "predict",
                                                    "predict_proba", "jacobian"):
        pytest.skip("inference and gradients take any finite input, not only pixels")
    if kind == "float64 for a float32 model" and entry == "adversarial_gradient_amplitude":
        pytest.skip("measured in float64 whatever the model's dtype")
    assert_refused(entry, "x", x=bad.astype(np.float32) if kind in ("above 1", "below 0")
                   else bad)


def test_an_image_too_small_says_which_layer_cannot_take_it():
    with pytest.raises(ValueError, match=r"layer 0, Conv2D.*H, W >= 3.*\(4, 1, 2, 2\)"):
        MODEL.logits(X[:, :, :2, :2])
    with pytest.raises(ValueError, match=r"layer 2, MaxPool2D"):
        MODEL.logits(X[:, :, :3, :3])
    with pytest.raises(ValueError, match=r"layer 4, Dense.*\(N, 8\).*\(4, 18\)"):
        MODEL.logits(np.zeros((4, 1, 8, 8), np.float32))


# -- labels ----------------------------------------------------------------------------------
BAD_LABELS = {
    "class K": np.array([0, 1, K, 0]),
    "-1": np.array([0, -1, 1, 0]),
    "2**40": np.array([0, 2 ** 40, 1, 0]),
    "floats": Y.astype(np.float64),
    "soft rows": np.full((4, K), 1 / K),
    "too few": Y[:3],
    "strings": Y.astype(str),
    "a list": Y.tolist(),
    "a scalar": np.int64(1),
}


@pytest.mark.parametrize("entry", WITH_LABELS)
@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_labels_are_refused_naming_them(entry, kind):
    name = "target" if "target" in ENTRY_POINTS[entry][1] else "y"
    if kind == "soft rows" and entry in ("train", "adversarial_training"):
        pytest.skip("training takes soft-label rows (distillation's targets)")
    assert_refused(entry, name, **{name: BAD_LABELS[kind]})


def test_accuracy_used_to_count_impossible_labels_as_misses():
    # the audit's case: label 10 on a 10-class model gave 0.75 instead of an error
    with pytest.raises(ValueError, match=r"y labels must lie in \[0, 3\)"):
        metrics.accuracy(MODEL, X, np.array([0, 1, 3, 0]))


# -- parameters ------------------------------------------------------------------------------
POSITIVE_NUMBERS = {  # entry -> parameters that must be finite numbers > 0
    "fgsm": ["T"], "tgsm": ["T"], "bim": ["step_size", "T"],
    "pgd": ["step_size", "T"], "jsma": ["T"], "cw_l2": ["c", "lr"],
    "cw_l0": ["c", "lr"], "cw_linf": ["c", "lr"], "predict_proba": ["T"], "jacobian": ["T"],
    "adversarial_gradient_amplitude": ["T"], "zero_gradient_fraction": ["T"],
    "gradient_masking": ["T"], "train": ["temperature", "lr", "loss_scale", "decay_factor"],
    "distill": ["temperature"], "adversarial_training": ["eps"], "MutationDetector": ["gf_scale"],
}
NON_NEGATIVE_NUMBERS = {entry: ["eps"] for entry in ("fgsm", "tgsm", "bim", "pgd")}  # 0: x
POSITIVE_INTEGERS = {
    "predict": ["batch_size"], "jacobian": ["batch_size"], "fgsm": ["batch_size"],
    "bim": ["batch_size"], "jsma": ["batch_size"], "cw_l2": ["batch_size", "max_iterations",
                                                              "binary_search_steps"],
    "cw_l0": ["max_iterations"], "cw_linf": ["max_iterations"],
    "adversarial_gradient_amplitude": ["batch_size"], "gradient_masking": ["batch_size"],
    "train": ["epochs", "batch_size", "decay_every"], "MutationDetector": ["max_mutants"],
}
PROBABILITIES = {  # entry -> (parameter, its interval)
    "jsma": [("gamma", "(0, 1]")], "adversarial_training": [("ratio", "[0, 1]")],
    "MutationDetector": [("rate", "(0, 1]"), ("alpha", "(0, 1)"), ("sigma", "(0, 1)")],
    "train": [("momentum", "[0, 1)")],
}
INSIDE = {"(0, 1]": lambda v: 0 < v <= 1, "[0, 1]": lambda v: 0 <= v <= 1,
          "(0, 1)": lambda v: 0 < v < 1, "[0, 1)": lambda v: 0 <= v < 1}
DEFAULTED_BY_NONE = {("train", n) for n in ("lr", "decay_factor", "batch_size", "decay_every",
                                            "momentum")} | {("bim", "step_size"),
                                                            ("pgd", "step_size")}
SEEDED = ["pgd", "train", "distill", "MutationDetector"]

NOT_A_NUMBER = ["0.3", None, [0.3], True, np.array([0.3, 0.3]), 1 + 2j]
NOT_POSITIVE = [0, -1, -0.5, np.nan, np.inf, -np.inf, np.float32(-1)]
NOT_AN_INTEGER = [1.5, "2", None, True, np.float64(2.0), 0, -3]


def _pairs(table):
    return [(entry, name) for entry, names in sorted(table.items()) for name in names]


def _none_is_the_default(entry, name, value):
    if value is None and (entry, name) in DEFAULTED_BY_NONE:
        pytest.skip(f"{name}=None takes the default")


@pytest.mark.parametrize("entry, name", _pairs(POSITIVE_NUMBERS))
@pytest.mark.parametrize("value", NOT_A_NUMBER + NOT_POSITIVE, ids=repr)
def test_positive_numbers(entry, name, value):
    _none_is_the_default(entry, name, value)
    assert_refused(entry, name, **{name: value})


@pytest.mark.parametrize("entry, name", _pairs(NON_NEGATIVE_NUMBERS))
@pytest.mark.parametrize("value", NOT_A_NUMBER + [-1, -0.5, np.nan, np.inf, -np.inf], ids=repr)
def test_non_negative_numbers(entry, name, value):
    assert_refused(entry, name, **{name: value})


@pytest.mark.parametrize("entry, name", _pairs(POSITIVE_INTEGERS))
@pytest.mark.parametrize("value", NOT_AN_INTEGER, ids=repr)
def test_positive_integers(entry, name, value):
    _none_is_the_default(entry, name, value)
    assert_refused(entry, name, **{name: value})


@pytest.mark.parametrize("entry, name, interval",
                         [(e, *p) for e, ps in sorted(PROBABILITIES.items()) for p in ps])
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0.0, 1.0, -0.0, 1e-300, 1 - 1e-16]),
                       st.text(max_size=3), st.booleans()))
def test_fractions_refuse_everything_outside_their_interval(entry, name, interval, value):
    if isinstance(value, float) and INSIDE[interval](value):
        return                       # inside: accepted (checked below with NumPy scalars)
    assert_refused(entry, name, match=f"{name} must be", **{name: value})


@pytest.mark.parametrize("entry", SEEDED)
@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True, [1]], ids=repr)
def test_seeds(entry, seed):
    assert_refused(entry, "seed", seed=seed)


@pytest.mark.parametrize("entry, arguments", [
    ("fgsm", {"eps": np.float32(0.1)}), ("fgsm", {"T": fractions.Fraction(1, 2)}),
    ("bim", {"eps": np.float64(0.1), "step_size": np.float32(0.05)}),
    ("pgd", {"seed": np.int64(3)}), ("jsma", {"theta": np.float32(1.0), "gamma": np.float64(0.1)}),
    ("predict", {"batch_size": np.int32(2)}), ("cw_l2", {"kappa": np.float32(0.5)}),
    ("train", {"lr": np.float32(0.01), "epochs": np.int64(1), "momentum": np.float64(0.0)}),
    ("MutationDetector", {"rate": np.float32(0.1), "seed": np.uint8(2)}),
])
def test_valid_numpy_scalars_and_fractions_are_accepted(entry, arguments):
    call(entry, **arguments)


def test_layer_arguments_take_numpy_scalars_and_refuse_the_rest_by_name():
    assert layers.Dropout(np.float32(0.25)).rate == 0.25
    assert layers.Conv2D(np.int64(1), 2, np.int32(3)).kernel_size == 3
    for make, name in [(lambda: layers.Dense(3, 2, dtype=np.float16), "dtype"),
                       (lambda: layers.Conv2D(1, 2, 3, dtype=np.int32), "dtype"),
                       (lambda: layers.Dense(3, "2"), "out_features"),
                       (lambda: layers.Conv2D(1, 2, 3, padding="full"), "padding"),
                       (lambda: layers.MaxPool2D(0), "size"),
                       (lambda: layers.Dropout(1.0), "rate"),
                       (lambda: nd.Sequential([layers.Dense(3, 2)], seed="a"), "seed"),
                       (lambda: nd.Sequential([layers.Dense(3, 2)], metadata=[1]), "metadata")]:
        with pytest.raises((ValueError, TypeError), match=name):
            make()


def test_choices_are_named():
    assert_refused("jacobian", "of", of="probabilities")
    assert_refused("jsma", "on", on="probabilities")
    assert_refused("jsma", "theta", theta=0)
    assert_refused("adversarial_training", "attack", attack="cw")
    with pytest.raises(ValueError, match="operator"):
        mutate(MODEL, "XX", 0.1, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        mutate(MODEL, "NAI", 0.1, 0)


# -- models the code does not expect ---------------------------------------------------------
def test_a_model_without_class_logits_is_refused_by_what_needs_classes():
    headless = nd.Sequential([layers.Conv2D(1, 2, 3), layers.Flatten()], seed=0)
    for entry in ("fgsm", "jsma", "cw_l2", "accuracy", "train"):
        with pytest.raises(TypeError, match="number of classes"):
            call(entry, model=headless)
    dense_relu = nd.Sequential([layers.Flatten(), layers.Dense(36, K), layers.ReLU()], seed=0)
    assert dense_relu.num_classes == K


def test_backward_before_any_forward_says_so():
    with pytest.raises(ValueError, match="forward pass first"):
        tiny_model().backward(np.zeros((1, K), np.float32))


def test_data_that_is_not_a_pair_is_named():
    with pytest.raises(TypeError, match=r"data must be a pair \(x, y\), got ndarray"):
        nd.distill(MODEL, X, 5.0)
    with pytest.raises(TypeError, match="data must be a pair"):
        defensive_distillation(tiny_model, (X, Y, Y), 5.0)
    with pytest.raises(TypeError, match="validation must be a pair"):
        _train(MODEL, (X, Y), validation=X)
    with pytest.raises(TypeError, match="accuracy_data must be a pair"):
        _detector(MODEL, X)


# -- numerics --------------------------------------------------------------------------------
@given(T=st.floats(1e-60, 1e3), scale=st.sampled_from([1.0, 1e10, 1e30, 1e38]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_softmax_stays_a_distribution_at_any_temperature(T, scale, dtype):
    z = (np.array([[1.0, 2.0, -3.0], [0.5, -0.5, 0.25]]) * scale).astype(dtype)
    p = nd.softmax(z, T=T)
    logp = nd.log_softmax(z, T=T)
    assert np.isfinite(p).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p.argmax(axis=1) == z.argmax(axis=1)).all()
    if T < 1 / np.finfo(dtype).max:                  # its gradient would overflow: refused
        with pytest.raises(ValueError, match="too small for"):
            nd.cross_entropy(z, np.array([1, 0]), T=T)
        return
    loss, grad = nd.cross_entropy(z, np.array([1, 0]), T=T)
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_softmax_at_tiny_temperature_is_the_argmax():
    # the audit's case: float32 logits at T = 1e-50 gave all NaN
    z = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(nd.softmax(z, T=1e-50), [[0.0, 1.0]])
    np.testing.assert_array_equal(nd.softmax(np.array([[1e30, 2]], np.float32), T=1e-10),
                                  [[1.0, 0.0]])


# -- data files ------------------------------------------------------------------------------
def test_mnist_labels_below_zero_and_mixed_image_sizes_are_refused(tmp_path):
    from tests.test_datasets import idx_bytes, write_mnist

    write_mnist(tmp_path)
    labels = np.array([3, -1, 2, 0, 1], np.int8)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        bytes([0, 0, 0x09, 1]) + (5).to_bytes(4, "big") + labels.tobytes())
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got values in -1..3"):
        nd.datasets.load_mnist(tmp_path)
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 14, 14))))
    with pytest.raises(ValueError, match=r"training images are \(28, 28\) but the test images "
                                         r"\(14, 14\)"):
        nd.datasets.load_mnist(tmp_path)


# -- model files -----------------------------------------------------------------------------
def _rewrite(path, edit, out, *, reseal):
    """A copy of the model file at ``path`` with its JSON header edited; ``reseal``
    recomputes the checksum (a crafted file, not a damaged one)."""
    import json

    from npdistill.nn import model as model_file

    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays.pop("__metadata__")))
    edit(meta)
    if reseal:
        meta["checksum"] = model_file.archive_checksum(
            arrays, {k: v for k, v in meta.items() if k != "checksum"})
    np.savez(out, __metadata__=np.array(json.dumps(meta)), **arrays)
    return out


def _set(path, value):
    def edit(meta):
        *parents, last = path
        node = meta
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return edit


DELETE = object()
CRAFTED = {  # edit of the header -> what the error says
    "ReLU made Dropout": (_set(["architecture", 1], {"type": "Dropout", "config": {"rate": 0.0}}),
                          None),
    "pool size": (_set(["architecture", 2, "config", "size"], 3), None),
    "conv padding": (_set(["architecture", 0, "config", "padding"], "same"), None),
    "no config": (_set(["architecture", 0, "config"], DELETE), "must be {'type'"),
    "no architecture": (_set(["architecture"], DELETE), "no architecture"),
    "architecture a string": (_set(["architecture"], "abc"), "no architecture"),
    "unknown layer": (_set(["architecture", 1, "type"], "Softmax"), "unknown type 'Softmax'"),
    "extra config key": (_set(["architecture", 0, "config", "stride"], 2),
                         "config must have the keys"),
    "kernel size a string": (_set(["architecture", 0, "config", "kernel_size"], "3"),
                             "architecture gives parameter 0.W"),
    "kernel size a float": (_set(["architecture", 0, "config", "kernel_size"], 3.0),
                            "kernel_size must be an integer"),
    "huge dense": (_set(["architecture", 4, "config"], {"in_features": 200000,
                                                        "out_features": 50000}),
                   r"shape \(200000, 50000\) but the file stores \(8, 3\)"),
    "no checksum": (_set(["checksum"], DELETE), None),
    "metadata a list": (_set(["metadata"], [1]), "'metadata' must be a dict"),
    "parameters listed wrong": (_set(["parameters", "0.b", "shape"], [3]),
                                r"stored as \(2,\).*listed as \(3,\)"),
    "newer format": (_set(["format_version"], 99), "newer than this npdistill reads"),
    "not our format": (_set(["format"], "keras"), "not an npdistill-model file"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_edited_model_files_are_refused(case, tmp_path):
    path = tmp_path / "m.npz"
    MODEL.save(path)
    edit, message = CRAFTED[case]
    damaged = _rewrite(path, edit, tmp_path / "damaged.npz", reseal=False)
    with pytest.raises(ValueError):
        nd.load_model(damaged)              # the checksum covers the header (or the schema)
    if message is not None:                 # crafted with a valid checksum: the schema speaks
        crafted = _rewrite(path, edit, tmp_path / "crafted.npz", reseal=True)
        with pytest.raises(ValueError, match=message):
            nd.load_model(crafted)


def test_format_1_files_still_load(tmp_path):
    import json

    from npdistill.nn import model as model_file

    path = tmp_path / "v1.npz"
    params = MODEL.params
    meta = {"format": "npdistill-model", "format_version": 1, "library_version": "0.1.0",
            "architecture": MODEL.architecture(), "metadata": {},
            "parameters": {k: {"shape": list(v.shape), "dtype": v.dtype.str}
                           for k, v in params.items()},
            "checksum": model_file.archive_checksum(params)}
    np.savez(path, __metadata__=np.array(json.dumps(meta)), **params)
    np.testing.assert_array_equal(nd.load_model(path).logits(X), MODEL.logits(X))


def test_a_npy_named_npz_and_a_compressed_archive_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="not an .npz archive"):
        nd.load_model(tmp_path / "a.npz")
    MODEL.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as archive:
        np.savez_compressed(tmp_path / "c.npz", **{k: archive[k] for k in archive.files})
    with pytest.raises(ValueError, match="compressed"):
        nd.load_model(tmp_path / "c.npz")


def test_a_model_with_non_finite_parameters_is_never_saved(tmp_path):
    broken = MODEL.copy()
    broken.layers[0].params["W"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"0.W hold NaN or infinite values"):
        broken.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []            # nor a temporary file left behind


def _save_many(path, seed, count):
    model = tiny_model(seed)
    for _ in range(count):
        model.save(path)


def _load_many(path, count, checksums):
    seen = set()
    for _ in range(count):
        seen.add(nd.load_model(path).checksum())
    assert seen <= checksums, "a reader saw a model nobody saved"
    return len(seen)


def test_concurrent_saves_and_loads_of_one_path_all_succeed(tmp_path):
    # the audit's case: a fixed temporary name made 2-50 of 300 concurrent saves fail
    import multiprocessing

    path = tmp_path / "m.npz"
    tiny_model(0).save(path)
    checksums = {tiny_model(seed).checksum() for seed in range(4)}
    context = multiprocessing.get_context("fork")
    with context.Pool(5) as pool:
        writers = [pool.apply_async(_save_many, (path, seed, 60)) for seed in range(4)]
        reader = pool.apply_async(_load_many, (path, 200, checksums))
        for job in writers:
            job.get(timeout=120)
        reader.get(timeout=120)
    assert nd.load_model(path).checksum() in checksums
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]     # no temporary file left


# -- training: divergence, resume ------------------------------------------------------------
class _PoisonFrom:
    """A batch transform that, from its ``start``-th call on, makes a weight of the model
    infinite: the training's own divergence (non-finite logits), injected mid-epoch. (Images
    a hook makes non-finite are the hook's error, not divergence.)"""

    def __init__(self, start):
        self.start, self.calls = start, 0

    def __call__(self, model, x, y, rng):
        self.calls += 1
        if self.calls >= self.start:
            model.layers[0].params["W"].flat[0] = np.inf
        return x, y


def test_divergence_stops_training_keeps_the_last_checkpoint_and_restores_the_model(tmp_path):
    from npdistill.train import TrainingDiverged

    data = (np.repeat(X, 4, axis=0), np.repeat(Y, 4))        # 16 images: 2 batches of 8
    model = tiny_model()
    hook = _PoisonFrom(start=4)                               # epoch 2, its second batch
    with pytest.raises(TrainingDiverged, match=r"epoch 2 \(batch 2, samples 8..15\).*"
                                               r"last good checkpoint.*is kept.*lr=0.1"):
        nd.train(model, data, epochs=3, batch_size=8, checkpoint_dir=tmp_path, progress=False,
                 batch_transform=hook)
    saved, meta = read_archive(tmp_path / "checkpoint.npz")
    assert meta["checkpoint"]["epochs_done"] == 1
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, saved[key])               # restored to epoch 1
        assert np.isfinite(value).all()


@pytest.mark.parametrize("lr", [1e39, 1e30, 1e4])
def test_a_learning_rate_that_explodes_raises_instead_of_returning_garbage(lr):
    # the audit's cases: 1e39 returned NaN parameters, 1e30 a finite garbage model
    from npdistill.train import TrainingDiverged

    model = tiny_model()
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(TrainingDiverged, match=re.escape(f"lr={lr:g} now")):
        nd.train(model, (np.repeat(X, 8, axis=0), np.repeat(Y, 8)), lr=lr, epochs=3,
                 batch_size=8, progress=False)
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, before[key])


def test_the_cli_saves_nothing_when_training_diverges(tmp_path, capsys):
    from npdistill.__main__ import main
    from tests.test_datasets import write_mnist

    write_mnist(tmp_path / "mnist", n_train=64, n_test=8)
    out = tmp_path / "m.npz"
    code = main(["train", "--data", str(tmp_path / "mnist"), "--lr", "1e30", "--epochs", "1",
                 "--out", str(out), "--quiet"])
    assert code == 1 and not out.exists()
    assert "training diverged" in capsys.readouterr().err


def test_resuming_with_fewer_epochs_than_the_checkpoint_is_refused(tmp_path):
    data = (X, Y)
    nd.train(tiny_model(), data, epochs=2, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint after epoch 2, more than epochs=1"):
        nd.train(tiny_model(), data, epochs=1, checkpoint_dir=tmp_path, progress=False)


# -- the command line ------------------------------------------------------------------------
def _numeric_flags():
    """(subcommand, flag, values it must refuse) for every numeric flag of every subcommand,
    read from the parser so that a flag added later is walked too."""
    from npdistill import __main__ as cli
    from tests.test_cli import subcommands

    refused = {cli.positive_int: ["0", "-5", "1.5", "abc", ""],
               cli.positive_float: ["0", "-0.1", "nan", "inf", "abc"],
               cli.count: ["-1", "0.5", "x"], cli.fraction: ["1", "-0.1", "nan", "x"]}
    cases = []
    for parser in subcommands()[1:]:
        command = parser.prog.split()[-1]
        for action in parser._actions:
            for value in refused.get(action.type, []):
                cases.append((command, action.option_strings[0], value))
    return cases


@pytest.mark.parametrize("command, flag, value", _numeric_flags())
def test_every_numeric_flag_refuses_bad_numbers_naming_itself(command, flag, value, capsys):
    from npdistill.__main__ import main

    argv = [command, flag, value] + (["--out", "runs/never"] if command == "reproduce" else [])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


# -- the catalogue's last hard failures (issue 41, item 6) ---------------------------
@pytest.mark.parametrize("hooks, error, says", [
    (dict(penalty=lambda m, z, dz, T: float("nan")), ValueError,
     r"the penalty hook returned nan \(batch 1, samples 0\.\.31\)"),
    (dict(penalty=lambda m, z, dz, T: "abc"), TypeError,
     r"the penalty hook must return a number, got str 'abc'"),
    (dict(batch_transform=lambda m, x, y, rng: (x * np.nan, y)), ValueError,
     r"batch_transform returned non-finite images"),
], ids=["NaN penalty", "string penalty", "NaN transform"])
def test_a_hooks_bad_value_is_named_as_the_hooks_not_as_divergence(hooks, error, says):
    x = np.random.default_rng(0).random((64, 1, 28, 28)).astype(np.float32)
    with pytest.raises(error, match=says):
        nd.train(nd.architectures.papernot_mnist(seed=0), (x, np.arange(64) % 10), epochs=1,
                 batch_size=32, progress=False, **hooks)


@pytest.mark.parametrize("dtype, T", [(np.float32, 1e-50), (np.float32, 1e-320),
                                      (np.float64, 1e-320)])
def test_cross_entropy_refuses_a_temperature_its_gradient_would_overflow_at(dtype, T):
    z = np.array([[1.0, 2.0, 3.0]], dtype)
    with pytest.raises(ValueError, match=r"temperature T=.* is too small for float\d+ logits"):
        nd.cross_entropy(z, np.array([0]), T=T)
    loss, dz = nd.cross_entropy(z, np.array([0]), T=1e-30 if dtype == np.float32 else 1e-300)
    assert np.isfinite(dz).all() and dz.dtype == dtype and np.abs(dz).max() > 1e29


def test_metrics_refuse_what_is_not_numbers_by_name():
    with pytest.raises(TypeError, match=r"amplitudes must be numbers, got list"):
        nd.metrics.amplitude_histogram(["a"])
    with pytest.raises(TypeError, match=r"negative_scores must be numbers, got str"):
        nd.metrics.roc_auc("ab", [0.0, 1.0])


def test_metadata_holds_numpy_numbers_and_names_what_it_cannot_hold(tmp_path):
    model = nd.architectures.papernot_mnist(seed=0)
    model.metadata.update(lr=np.float32(0.5), steps=np.int64(3), flags=(np.bool_(True),))
    model.save(tmp_path / "m.npz")
    assert nd.load_model(tmp_path / "m.npz").metadata["lr"] == 0.5
    model.metadata["run"] = {"when": object()}
    with pytest.raises(TypeError, match=r"\['metadata'\]\['run'\]\['when'\] is of type object"):
        model.save(tmp_path / "m.npz")


def test_an_object_array_metadata_entry_is_refused_with_the_files_path(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, __metadata__=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=rf"{path}: member '__metadata__\.npy' holds Python"):
        nd.load_model(path)


def test_a_valid_net_with_huge_logits_trains_instead_of_being_called_diverged():
    """Logits of 1e4 start the loss far above DIVERGED_LOSS_FACTOR x log K: divergence is
    judged against where the net started, after steps, not from that first loss."""
    x = np.random.default_rng(0).random((64, 1, 28, 28)).astype(np.float32)
    model = nd.architectures.papernot_mnist(seed=0)
    model.layers[-1].params["W"] *= 1e4
    model.layers[-1].params["b"] *= 1e4
    assert np.abs(model.logits(x)).max() > 1e4
    trained, history = nd.train(model, (x, np.arange(64) % 10), epochs=1, batch_size=32,
                                lr=1e-6, progress=False)
    assert np.isfinite(history["loss"][0]) and history["loss"][0] > 1e3
