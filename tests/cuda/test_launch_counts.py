"""The GPU passes in few launches (issue: launch-bound steps): bench/cuda_launches.py counts
the kernels a training step, an inference pass, a JSMA iteration and a CW L2 step of the
paper's MNIST net launch, on the simulator, and each is held to its target here."""
import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.cuda
ROOT = pathlib.Path(__file__).resolve().parents[2]          # bench/ is a package there


def test_the_mnist_net_runs_its_passes_in_few_launches():
    from bench.cuda_launches import TARGETS
    child = subprocess.run([sys.executable, "-m", "bench.cuda_launches", "--json"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-3000:]
    counts = json.loads(child.stdout.strip().splitlines()[-1])["launches"]
    assert counts["train_step"] == (counts["train_forward_and_loss"] + counts["train_backward"]
                                    + counts["train_sgd"])
    assert counts["train_sgd"] == 1                       # every parameter in one update
    for name, target in TARGETS.items():
        assert counts[name] <= target, (name, counts[name], target)
    # the passes themselves: conv layers and the head, one launch each way
    assert counts["inference_forward"] == 6              # 4 convolutions, 1 pooling, the head
    assert counts["input_backward"] == 5                  # the head, 4 convolutions
