"""The toy model every attack test runs on."""
import numpy as np
import pytest

import npdistill as nd
from npdistill import layers


@pytest.fixture(scope="session")
def toy():
    """A small net trained on three classes of 8x8 images (bright left, middle or right band)."""
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
