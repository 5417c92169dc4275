"""The same seed gives the same bits on 1, 2 or 3 threads: a training epoch's parameters
and every attack's adversarial images (kernels/reference/gemm.py says why the products are cut into
pieces fixed by the shapes; 3 threads catches a split into even halves)."""
import json
import os
import subprocess
import sys

import pytest

from npdistill import kernels

pytestmark = pytest.mark.skipif("cython" not in kernels.available(),
                                reason="the compiled kernels are not built")

RUN = """
import hashlib, json, sys
import numpy as np
import npdistill as nd
nd.kernels.use("cython")
(x, y), (xt, yt) = nd.datasets.load_mnist(sys.argv[1])
model, _ = nd.train(nd.architectures.papernot_mnist(seed=0), (x[:384], y[:384]), epochs=1,
                    batch_size=128, seed=0, progress=False)
digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
x8, y8 = xt[:8], yt[:8]
out = {"parameters": model.checksum(),
       "logits": digest(model.logits(xt[:256])),
       "jacobian": digest(nd.jacobian(model, x8[:2], of="logits")),
       "fgsm": digest(nd.attacks.fgsm(model, x8, y8, eps=0.1, progress=False).x_adv),
       "bim": digest(nd.attacks.bim(model, x8, y8, eps=0.1, progress=False).x_adv),
       "jsma": digest(nd.attacks.jsma(model, x8[:2], target=(y8[:2] + 1) % 10,
                                      progress=False).x_adv),
       "cw_l2": digest(nd.attacks.cw_l2(model, x8[:4], target=(y8[:4] + 1) % 10,
                                        max_iterations=20, binary_search_steps=2,
                                        progress=False).x_adv)}
print(json.dumps(out))
"""


def run(threads, mnist_dir, conv):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NPDISTILL_CONV": conv}
    done = subprocess.run([sys.executable, "-c", RUN, str(mnist_dir)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("conv", kernels.CONV_ALGORITHMS)
def test_training_and_attacks_give_the_same_bits_on_1_2_and_3_threads(mnist_dir, conv):
    """With every convolution algorithm ("direct" runs im2col where there is no AVX-512)."""
    one, two, three = (run(t, mnist_dir, conv) for t in (1, 2, 3))
    assert one == two == three
