"""NumPy's BLAS on the compiled kernels' OpenMP team (kernels/threads.py, ext/threads.pyx):
it is in use, its answers are OpenBLAS's own to the bit, it is safe from several Python
threads at once, a forked child still runs, and NPDISTILL_BLAS_THREADS chooses."""
import json
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import npdistill as nd
from npdistill import kernels

pytestmark = pytest.mark.skipif("cython" not in kernels.available(),
                                reason="the compiled kernels are not built")


@pytest.fixture
def shared():
    """The cython backend active, and NumPy's BLAS on its team (where this NumPy's BLAS
    is a pthreads OpenBLAS that takes a threads callback: NumPy's wheels since 2.1)."""
    with kernels.using("cython"):
        if kernels.blas_threads() != "openmp":
            pytest.skip("NumPy's BLAS is not a pthreads OpenBLAS 0.3.27+, or "
                        "NPDISTILL_BLAS_THREADS=openblas")
        yield implementation_calls


def implementation_calls():
    return kernels.implementation("threads").calls()


def test_numpy_matmul_runs_through_the_callback(shared):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 600, 600)).astype(np.float32)
    before = shared()
    product = a @ b
    assert shared() > before
    np.testing.assert_allclose(product, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_products_from_several_python_threads_at_once_are_each_right(shared):
    # OpenBLAS gives job i buffer i, and its threaded matrix-vector products do not lock
    # (its GEMMs do): without the callback's lock, concurrent ones are wrong by ~1e2
    rng = np.random.default_rng(1)
    matrices = rng.standard_normal((4, 1500, 1500)).astype(np.float32)
    vectors = rng.standard_normal((4, 1500)).astype(np.float32)
    expected = [a.astype(np.float64) @ v for a, v in zip(matrices, vectors)]
    errors = [0.0] * 4

    def work(i):
        for _ in range(60):
            errors[i] = max(errors[i], float(np.abs(matrices[i] @ vectors[i] - expected[i]).max()))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert max(errors) < 1e-2


def _forward_and_matmul(seed):
    model = nd.architectures.papernot_mnist(seed=0)
    x = np.random.default_rng(seed).random((16, 1, 28, 28), dtype=np.float32)
    a = np.random.default_rng(seed).standard_normal((300, 300)).astype(np.float32)
    return model.forward(x), a @ a


def test_a_forked_child_runs_the_kernels_and_blas(shared):
    # GNU OpenMP hangs in the forked child of a process that ran a parallel region: the
    # child must run serially, and on OpenBLAS's own threads
    parent = [_forward_and_matmul(seed) for seed in range(2)]       # regions run here
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map_async(_forward_and_matmul, range(2)).get(timeout=120)
    for (logits, product), (child_logits, child_product) in zip(parent, children):
        np.testing.assert_allclose(child_logits, logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(child_product, product, rtol=1e-5, atol=1e-4)


PROBE = """
import hashlib, json, os, sys
import numpy as np
import npdistill as nd
out = {"wait_policy": os.environ.get("OMP_WAIT_POLICY")}
try:
    nd.kernels.use("cython")
except ValueError as exc:
    out["error"] = str(exc)
else:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 700, 900)).astype(np.float32)
    out["blas_threads"] = nd.kernels.blas_threads()
    out["product"] = hashlib.sha256((a @ b.T).tobytes()).hexdigest()
print(json.dumps(out))
"""


def probe(**environ):
    env = {key: value for key, value in os.environ.items()
           if key not in ("NPDISTILL_BLAS_THREADS", "OMP_WAIT_POLICY")}
    env.update(environ)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_environment_variable_chooses_and_the_answers_agree_to_the_bit(shared):
    team = probe()
    own = probe(NPDISTILL_BLAS_THREADS="openblas")
    assert (team["blas_threads"], team["wait_policy"]) == ("openmp", None)
    assert (own["blas_threads"], own["wait_policy"]) == ("openblas", "PASSIVE")
    # OpenBLAS cuts a call into the same jobs whoever runs them: bit for bit the same
    assert team["product"] == own["product"]


def test_a_bad_value_is_refused_at_first_use_naming_the_variable():
    answer = probe(NPDISTILL_BLAS_THREADS="gomp")       # import npdistill itself succeeded
    assert "NPDISTILL_BLAS_THREADS='gomp'" in answer["error"]
    assert "openmp" in answer["error"] and "openblas" in answer["error"]
    assert answer["wait_policy"] == "PASSIVE"

