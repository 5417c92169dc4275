import pytest

from npdistill import kernels


@pytest.fixture(autouse=True)
def host_backend():
    """These tests hold the cuda backend to the host's results: "the host" is a CPU
    backend, also where a GPU makes "cuda" the default."""
    with kernels.using("cython" if "cython" in kernels.available() else "numpy"):
        yield
