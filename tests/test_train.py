"""train(): reproducibility, checkpoint / resume, input checks, and real MNIST."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers
from npdistill.__main__ import main


def tiny_net(seed=0):
    return nd.Sequential([layers.Conv2D(1, 4, 3), layers.ReLU(), layers.MaxPool2D(2),
                          layers.Flatten(), layers.Dense(4 * 3 * 3, 16), layers.ReLU(),
                          layers.Dropout(0.5), layers.Dense(16, 3)], seed=seed)


@pytest.fixture
def toy_data():
    """Three classes of 8x8 images told apart by which third of the image is bright."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.random((300, 1, 8, 8)).astype(np.float32) * 0.3
    for k in range(3):
        x[y == k, :, :, 3 * k:3 * k + 2] += 0.7
    return x, y


def test_training_learns_and_reports_history(toy_data, capsys):
    x, y = toy_data
    model, history = nd.train(tiny_net(), (x, y), epochs=3, batch_size=32, lr=0.05,
                              momentum=0.9, validation=(x[:100], y[:100]), seed=1)
    assert history["train_accuracy"][-1] > 0.9 and history["val_accuracy"][-1] > 0.95
    assert history["loss"][0] > history["loss"][-1]
    assert len(history["lr"]) == 3 and model.metadata["training_temperature"] == 1.0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "epoch 3/3" in lines[-1] and "samples/s" in lines[-1]
    assert "ETA" in lines[0]


def test_same_seed_same_model_different_seed_different_model(toy_data):
    a, _ = nd.train(tiny_net(), toy_data, epochs=1, batch_size=32, seed=3, progress=False)
    b, _ = nd.train(tiny_net(), toy_data, epochs=1, batch_size=32, seed=3, progress=False)
    c, _ = nd.train(tiny_net(), toy_data, epochs=1, batch_size=32, seed=4, progress=False)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["4.W"], c.params["4.W"])


def test_interrupted_and_resumed_run_is_bit_identical(toy_data, tmp_path):
    kwargs = dict(epochs=4, batch_size=32, lr=0.05, momentum=0.9, seed=7, decay_every=2,
                  progress=False)
    straight, straight_history = nd.train(tiny_net(), toy_data, **kwargs)

    ckpt = tmp_path / "ckpt"
    nd.train(tiny_net(), toy_data, **{**kwargs, "epochs": 3}, checkpoint_dir=ckpt)  # "killed" after 3
    resumed, history = nd.train(tiny_net(seed=99), toy_data, **kwargs, checkpoint_dir=ckpt)
    for key in straight.params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])
    assert history["loss"] == straight_history["loss"]
    assert history["lr"] == [0.05, 0.05, 0.025, 0.025]


def test_resume_refuses_a_different_run(toy_data, tmp_path):
    nd.train(tiny_net(), toy_data, epochs=1, batch_size=32, seed=1, checkpoint_dir=tmp_path,
             progress=False)
    with pytest.raises(ValueError, match="seed: checkpoint 1 vs now 2"):
        nd.train(tiny_net(), toy_data, epochs=2, batch_size=32, seed=2, checkpoint_dir=tmp_path,
                 progress=False)
    x, y = toy_data
    with pytest.raises(ValueError, match="data_checksum"):
        nd.train(tiny_net(), (x[:200], y[:200]), epochs=2, batch_size=32, seed=1,
                 checkpoint_dir=tmp_path, progress=False)


def test_soft_labels_train_at_temperature(toy_data):
    x, y = toy_data
    soft = np.full((len(y), 3), 0.05)
    soft[np.arange(len(y)), y] = 0.9
    model, history = nd.train(tiny_net(), (x, soft), temperature=5.0, epochs=3, batch_size=32,
                              lr=0.2, momentum=0.9, progress=False)
    assert history["train_accuracy"][-1] > 0.9
    assert model.metadata["training_temperature"] == 5.0


@pytest.mark.parametrize("mutate, error, match", [
    (lambda x, y: (x * 2, y), ValueError, r"pixels in \[0, 1\]"),
    (lambda x, y: (np.where(x > 0.5, np.nan, x).astype(np.float32), y), ValueError, "NaN"),
    (lambda x, y: (x.astype(np.float64), y), TypeError, "model.astype"),
    (lambda x, y: (x[:, 0], y), ValueError, "rank 4"),
    (lambda x, y: (x, y[:-1]), ValueError, r"shape \(300,\)"),
    (lambda x, y: (x, y + 3), ValueError, r"\[0, 3\)"),
    (lambda x, y: (x[:0], y[:0]), ValueError, "no images"),
])
def test_bad_training_data_is_refused(toy_data, mutate, error, match):
    with pytest.raises(error, match=match):
        nd.train(tiny_net(), mutate(*toy_data), epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, error", [
    ({"epochs": 0}, ValueError), ({"epochs": 1.5}, TypeError), ({"lr": -1.0}, ValueError),
    ({"momentum": 1.0}, ValueError), ({"temperature": 0.0}, ValueError), ({"seed": -1}, ValueError),
    ({"seed": "1"}, TypeError),
    ({"batch_size": 0}, ValueError)])
def test_bad_hyperparameters_are_refused(toy_data, kwargs, error):
    with pytest.raises(error):
        nd.train(tiny_net(), toy_data, **{"epochs": 1, "progress": False, **kwargs})


@pytest.mark.mnist
def test_mnist_net_learns_real_digits(mnist):
    """2,000 real training images, three epochs of batch 32: >= 80% on 1,000 test images.

    Fewer steps are not a stable test: plain momentum SGD on this 7-layer net starts
    slowly, and where it is after them depends on the seed and even on the float32
    rounding order of the kernels (2 epochs of batch 16 and an 85% bar passed on an AVX2
    EPYC and failed at 84% on an AVX-512 Xeon, whose direct kernels round differently);
    this budget cleared the bar by 7 points or more on the Xeon for seeds 0-3 of this
    very call (not yet tried on the EPYC).
    Full-data figures: bench/RESULTS.md.
    """
    (x_train, y_train), (x_test, y_test) = mnist
    model = nd.architectures.papernot_mnist(seed=0)
    model, _ = nd.train(model, (x_train[:2000], y_train[:2000]), epochs=3, batch_size=32,
                        lr=0.1, momentum=0.5, seed=0, progress=False)
    assert (model.predict(x_test[:1000]) == y_test[:1000]).mean() >= 0.80


@pytest.mark.mnist
def test_cli_trains_saves_and_prints_test_accuracy(mnist_dir, tmp_path, capsys):
    out = tmp_path / "model.npz"
    assert main(["train", "--data", str(mnist_dir), "--epochs", "1", "--limit", "256",
                 "--seed", "3", "--temperature", "2", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and "(10,000 images)" in printed
    model = nd.load_model(out)
    assert model.metadata["training_temperature"] == 2.0
    assert model.metadata["training"]["n_train"] == 256



def test_logits_lr_factor_t_squared_is_training_at_t_1_the_net_with_logits_t_times_smaller(
        toy_data):
    # softmax(z / T) with z = T z': SGD on z' at T = 1 is SGD on z at T with the logits
    # layer's learning rate times T^2 (every other layer's gradient is already the same)
    T = 7.0
    x, y = toy_data
    x = x.astype(np.float64)
    at_t = tiny_net(seed=5).astype(np.float64)
    at_1 = at_t.copy()
    last = at_t.logits_layer
    for name in ("W", "b"):
        at_1.layers[last].params[name] = at_t.layers[last].params[name] / T
    options = dict(epochs=2, batch_size=32, lr=0.05, momentum=0.9, seed=2, progress=False,
                   decay_every=1)
    nd.train(at_t, (x, y), temperature=T, logits_lr_factor=T ** 2, **options)
    nd.train(at_1, (x, y), temperature=1.0, **options)
    for key, value in at_t.params.items():
        expected = at_1.params[key] * (T if key.startswith(f"{last}.") else 1.0)
        np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12, err_msg=key)
    assert at_t.metadata["training"]["logits_lr_factor"] == T ** 2


def test_checkpoints_written_before_logits_lr_factor_existed_still_resume(toy_data, tmp_path):
    from npdistill.nn.archive import read_archive, write_archive

    nd.train(tiny_net(), toy_data, epochs=1, batch_size=32, checkpoint_dir=tmp_path,
             progress=False)
    arrays, meta = read_archive(tmp_path / "checkpoint.npz")
    del meta["checkpoint"]["config"]["logits_lr_factor"]             # as written before
    header = {k: v for k, v in meta.items()
              if k in ("architecture", "metadata", "checkpoint")}
    write_archive(tmp_path / "checkpoint.npz", arrays, header)
    _, history = nd.train(tiny_net(), toy_data, epochs=2, batch_size=32,
                          checkpoint_dir=tmp_path, progress=False)
    assert len(history["loss"]) == 2
