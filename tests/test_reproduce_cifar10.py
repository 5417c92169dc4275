"""The CIFAR-10 half of the reproduction, end to end on small synthetic CIFAR-10 binary
batches (the real data cannot be fetched here): the table beside the paper's CIFAR-10
column, colour figures, a resumed second run."""
import json

import numpy as np
import pytest

from npdistill.__main__ import main
from npdistill.datasets import CIFAR10_FILES
from npdistill.reproduce import DATASETS, settings_from


def synthetic_batch(n, seed, templates):
    """``n`` CIFAR-10 binary records: each image its class's template with noise, labels
    0..9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    pixels = 0.6 * templates[labels] + 0.4 * rng.random((n, 3072))
    rows = np.concatenate([labels[:, None], np.round(255 * pixels)], axis=1)
    return rows.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "cifar-10-batches-bin"
    folder.mkdir()
    templates = np.random.default_rng(0).random((10, 3072))
    for i, name in enumerate(CIFAR10_FILES):                  # 5 x 100 training, 500 test
        (folder / name).write_bytes(synthetic_batch(500 if name == "test_batch.bin" else 100,
                                                    i + 1, templates))
    return folder


@pytest.fixture(scope="module")
def run(cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce-cifar10")
    argv = ["reproduce", "--dataset", "cifar10", "--quick", "--out", str(out), "--data",
            str(cifar_dir), "--quiet", "--temperatures", "1", "100", "--jsma-samples", "1",
            "--cw-images", "2", "--cw-iterations", "20", "--attacks", "jsma", "fgsm", "cw_l2"]
    assert main(argv) == 0
    return out, argv


def test_the_cifar10_reproduction_writes_its_table_beside_the_papers_column(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["dataset"] == "cifar10"
    assert results["settings"]["eps"] == pytest.approx(8 / 255)
    assert results["settings"]["train_images"] == 500 and results["settings"]["test_images"] == 500
    assert set(results["models"]) == {"baseline", "1", "100"} and set(results["cw"]) == {
        "baseline", "100"}
    table = (out / "results.md").read_text()
    assert table.startswith("# Defensive distillation on CIFAR-10")
    assert "80.95%" in table and "87.89%" in table and "5.11%" in table    # the paper's CIFAR
    assert "50,000" in table and "eps = 0.03137" in table and "3,072 input features" in table
    for row in results["models"].values():                  # JSMA on 3 x 32 x 32 features
        assert row["jsma"]["attacks"] == 9 and 0 <= row["jsma"]["success"] <= 1
        assert row["fgsm"]["images"] == 500
    for name in ("success_vs_temperature", "accuracy_vs_temperature", "gradient_amplitudes",
                 "adversarial_examples"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_a_second_cifar10_run_reuses_every_net_and_measure(run, capsys):
    out, argv = run
    first = json.loads((out / "results.json").read_text())
    assert main([a for a in argv if a != "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("reusing") == 4 + 3 + 2                  # nets, attack and CW measures
    again = json.loads((out / "results.json").read_text())
    assert again["models"] == first["models"] and again["cw"] == first["cw"]


def test_a_batch_of_no_cw_images_is_refused_by_name(tmp_path):
    from npdistill.reproduce import Settings, reproduce
    with pytest.raises(ValueError, match="settings.cw_batch"):
        reproduce(tmp_path / "out", Settings(cw_batch=0))


def test_a_dataset_not_known_is_refused_by_name():
    with pytest.raises(ValueError, match="dataset must be one of .*'mnist', 'cifar10'.*'svhn'"):
        settings_from(dataset="svhn")
    assert set(DATASETS) == {"mnist", "cifar10"}
    assert main(["reproduce", "--defenses", "--dataset", "cifar10", "--out", "x"]) == 2
