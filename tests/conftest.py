import glob
import os
from pathlib import Path

# The CUDA kernels' tests (marker `cuda`) run on Numba's simulator where no NVIDIA
# device is present; it must be chosen before numba is first imported.
if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import npdistill as nd
from npdistill import layers

settings.register_profile("npdistill", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
# CI draws the same examples every run, so that a landing never hangs on a lucky draw;
# local runs keep drawing new ones.
settings.register_profile("ci", parent=settings.get_profile("npdistill"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "npdistill")

REPO = Path(__file__).resolve().parents[1]


def _mnist_folder():
    candidates = []
    if os.environ.get("NPDISTILL_DATA"):
        candidates.append(Path(os.environ["NPDISTILL_DATA"]) / "mnist")
    candidates.append(REPO.parent / "shared" / "data" / "mnist")
    for folder in candidates:
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test leaves this process's environment as it found it, fixtures included: a
    Dask LocalCluster a test starts itself writes OMP_NUM_THREADS=1 (and more) into it
    each time a nanny spawns a worker, and every later subprocess (a notebook kernel, a
    CLI run) would otherwise run on one core."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST folder. Missing data fails under CI and skips elsewhere."""
    folder = _mnist_folder()
    if folder is None:
        message = "real MNIST not found (set NPDISTILL_DATA to a folder holding mnist/)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return nd.datasets.load_mnist(mnist_dir)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def toy():
    """The model attack and defense tests run on: a small net trained on three classes
    of 8x8 images (bright left, middle or right band)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = (rng.random((600, 1, 8, 8)) * 0.3).astype(np.float32)
    for k in range(3):
        x[y == k, :, :, 3 * k:3 * k + 2] += 0.6
    model = nd.Sequential([layers.Conv2D(1, 8, 3), layers.ReLU(), layers.MaxPool2D(2),
                           layers.Flatten(), layers.Dense(72, 32), layers.ReLU(),
                           layers.Dense(32, 3)], seed=0)
    model, _ = nd.train(model, (x, y), epochs=4, batch_size=32, lr=0.05, momentum=0.9,
                        progress=False)
    x_test, y_test = x[:40], y[:40]
    assert nd.metrics.accuracy(model, x_test, y_test) > 0.95
    return model, x_test, y_test, (y_test + 1 + rng.integers(0, 2, 40)) % 3
