import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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
    import npdistill as nd
    return nd.datasets.load_mnist(mnist_dir)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
