"""The defenses comparison end to end on real MNIST, shrunk to run in CI."""
import json

import pytest

from npdistill.__main__ import main
from npdistill.reproduce_defenses import (MODELS, defense_settings_from, markdown_table,
                                          train_defended_models)


@pytest.fixture(scope="module")
def run(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("defenses")
    argv = ["reproduce", "--defenses", "--quick", "--out", str(out), "--data", str(mnist_dir),
            "--quiet", "--train-limit", "3000", "--epochs", "1", "--cw-images", "3",
            "--cw-iterations", "50"]
    assert main(argv) == 0
    return out, argv


def test_writes_results_table_and_figures(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    assert set(results["curves"]) == set(MODELS) == set(results["transfer"])
    assert results["settings"]["train_images"] == 3000
    for name in ("accuracy_vs_eps", "transfer", "detection"):
        data = (out / f"defenses_{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    table = (out / "results.md").read_text()
    assert table == markdown_table(results)
    assert "0.965" in table and "3,000 images" in table


def test_measures_are_consistent(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    s = results["settings"]
    eps = s["epsilons"]
    assert eps[0] == 0 and s["transfer_eps"] in eps
    for name, row in results["curves"].items():
        # the white-box diagonal is the same attack on the same images as the curve
        assert results["transfer"][name][name] == row["fgsm"][eps.index(s["transfer_eps"])]
        assert row["fgsm"][0] == row["tgsm"][0]
        assert all(0 <= a <= 1 for a in row["fgsm"] + row["tgsm"])
    undefended = results["curves"]["undefended"]["fgsm"]
    assert undefended[-1] < undefended[0]                 # FGSM works on the undefended net
    d = results["detection"]
    assert 0 <= d["clean"]["false_positive_rate"] <= 1
    assert d["fgsm"]["successful"] > 0 and 0 <= d["fgsm"]["auc"] <= 1


def test_a_second_run_reuses_the_models(run, mnist, capsys):
    out, _ = run
    names = sorted(p.name for p in (out / "models").iterdir())
    assert names == sorted(f"{m}.npz" for m in MODELS)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    (x, y), test = mnist
    settings = defense_settings_from(True, train_limit=3000, epochs=1)
    models = train_defended_models(settings, ((x[:3000], y[:3000]), test), out)
    assert capsys.readouterr().err.count("reusing") == len(MODELS)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    assert models["distilled"].metadata["distillation"]["temperature"] == 50.0
    assert models["adversarial"].metadata["defense"]["name"] == "adversarial_training"
    assert models["gradient_regularized"].metadata["defense"]["lam"] == settings.gradient_lambda


def test_flags_of_the_other_reproduction_are_refused(mnist_dir, tmp_path, capsys):
    assert main(["reproduce", "--defenses", "--out", str(tmp_path), "--temperatures", "1"]) == 2
    assert "--temperatures" in capsys.readouterr().err
