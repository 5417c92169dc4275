"""Every Python block of the README runs as written, in order, on a few hundred real MNIST
images (the README loads the whole split; here the loader hands out a slice of it)."""
import re
from pathlib import Path

import numpy as np
import pytest

import npdistill as nd

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


@pytest.mark.mnist
def test_every_python_block_of_the_readme_runs(mnist, tmp_path, monkeypatch):
    (x_train, y_train), (x_test, y_test) = mnist
    small = (x_train[:300], y_train[:300]), (x_test[:1200], y_test[:1200])
    monkeypatch.setattr(nd.datasets, "load_mnist", lambda path=None, download=False: small)
    monkeypatch.chdir(tmp_path)
    assert len(BLOCKS) >= 5
    names = {}
    for number, block in enumerate(BLOCKS, 1):
        exec(compile(block, f"README.md, Python block {number}", "exec"), names)
    # what the blocks say they give
    assert names["J"].shape == (8, 10, 1, 28, 28)
    assert isinstance(names["r"], nd.attacks.AttackResult)
    assert names["J_live"].shape == (8, 10, 1, 28, 28)
    ev = names["ev"]
    assert ev.attacks == ("FGSM", "PGD-CE", "APGD-CE", "APGD-DLR", "Square")
    assert (tmp_path / "evaluation.json").is_file() and (tmp_path / "robust_accuracy.png").is_file()
    assert ev.robust_accuracy[0] == ev.clean_accuracy and ev.robust_accuracy[-1] < 0.5
    assert len(names["report"].checks) == 6 and names["report"].evaluation.eps[-1] == 1.0
    assert names["r_live"].success.mean() > 0.5        # an untrained net is easily fooled
    assert nd.load_model(tmp_path / "mnist.npz").metadata["training_temperature"] == 1.0
    assert names["student"].metadata["training_temperature"] == 20.0
    assert names["found"].adversarial.shape == (len(names["x_adv"]),)
    assert 0.0 <= names["auc"] <= 1.0 and np.isfinite(names["amp"]).all()
