"""Backend-agreement helpers: explicit pairs, never "whatever happens to be loaded"."""
import os

import pytest

import npdistill as nd

# The backends whose results must agree, as explicit pairs (the cuda backend's agreement
# with the host is tests/cuda's business, on the simulator or a GPU).
BACKEND_PAIRS = [("numpy", "cython")]


def on_each_backend(pair, run):
    """[run() on each backend of ``pair``]: skips where one is missing (fails under CI)."""
    missing = [name for name in pair if name not in nd.kernels.available()]
    if missing:
        message = f"backend {missing} not available here (pip install -e . builds cython)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    results = []
    for name in pair:
        with nd.kernels.using(name):
            results.append(run())
    assert len(results) == len(pair) >= 2
    return results
