"""The EMNIST study (``reproduce --dataset emnist``) end to end on a synthetic split
written as NIST writes it: the course report's measures, table and figures, resumed from
what a first run saved."""
import gzip
import json

import numpy as np
import pytest

from npdistill import reproduce_emnist
from npdistill.__main__ import main
from npdistill.benchmarks import reproduction
from tests.test_datasets import idx_bytes
from tests.test_emnist import BALANCED, write


def learnable_split(n_train=1410, n_test=141, seed=0):
    """{file name: bytes} of a balanced split a net can learn in two epochs: class k is a
    bright 4x4 square in cell k of a 7 x 7 grid, over faint noise (stored transposed)."""
    rng = np.random.default_rng(seed)
    files = {"emnist-balanced-mapping.txt":
             "".join(f"{k} {ord(c)}\n" for k, c in enumerate(BALANCED)).encode()}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 47
        rng.shuffle(labels)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = divmod(int(k), 7)
            images[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 255
        files[f"emnist-balanced-{part}-images-idx3-ubyte.gz"] = gzip.compress(
            idx_bytes(images.transpose(0, 2, 1)))
        files[f"emnist-balanced-{part}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels))
    return files


FLAGS = ["--dataset", "emnist", "--quick", "--cw-iterations", "20", "--jsma-samples", "1",
         "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data root, out folder, the first run's results): a quick run on the synthetic split."""
    root = tmp_path_factory.mktemp("data")
    write(root / "emnist", learnable_split())
    out = tmp_path_factory.mktemp("out")
    assert main(["reproduce", "--data", str(root), "--out", str(out), *FLAGS]) == 0
    return root, out, json.loads((out / "results.json").read_text())


def test_the_quick_study_measures_what_the_report_does(run):
    root, out, results = run
    models, ifgsm = results["models"], results["ifgsm"]
    assert list(models) == ["baseline", "10", "100"]
    assert results["classes"] == BALANCED
    assert models["baseline"]["accuracy"] > 0.5                    # chance is 1 in 47
    assert models["baseline"]["jsma"]["attacks"] == 46             # 1 sample x 46 targets
    assert ifgsm["images"] == 141 and ifgsm["target_class"] == 46
    for reading, (step, eps) in {"step": (0.01, 0.1), "total": (0.001, 0.01)}.items():
        r = ifgsm[reading]
        assert (r["step"], r["eps"]) == pytest.approx((step, eps))
        for name in ("baseline", "10", "100"):
            counts = r["histogram"][name]
            assert len(counts) == 47 and sum(counts) == 141
            assert counts[46] == r["to_target"][name]
    # a bigger budget sends at least as many images to the target
    assert ifgsm["step"]["to_target"]["baseline"] >= ifgsm["total"]["to_target"]["baseline"]
    assert set(ifgsm["on_itself"]) == {"10", "100"}
    assert set(results["cw"]) == {"l2", "linf", "l0"}
    for goals in results["cw"].values():
        assert set(goals) == {"untargeted", "targeted"}
        for row in goals.values():
            assert row["images"] == 5 and set(row["fooled"]) == {"10", "100"}
            assert row["fools_all"] <= min(row["fooled"].values())
    table = (out / "results.md").read_text()
    assert "| test accuracy, no distillation | 89.07% |" in table
    assert "about 86%" in table and "| - |" in table
    for png in ("accuracy_vs_temperature", "success_vs_temperature", "gradient_amplitudes",
                "class_histograms", "ifgsm_examples"):
        assert (out / f"{png}.png").stat().st_size > 10_000, png


def _saved(out):
    return {p.name: p.stat().st_mtime_ns for folder in ("models", "measures")
            for p in (out / folder).iterdir()}


def test_a_second_run_reuses_every_net_and_measure(run, capsys):
    root, out, first = run
    saved = _saved(out)
    assert main(["reproduce", "--data", str(root), "--out", str(out), *FLAGS[:-1]]) == 0
    err = capsys.readouterr().err
    assert err.count("reusing") == 5 + 3 + 1 + 6 and "epoch" not in err   # nets, measures
    assert _saved(out) == saved                                  # nothing written again
    again = json.loads((out / "results.json").read_text())
    for part in ("models", "ifgsm", "cw"):
        assert again[part] == first[part], part


@pytest.mark.slow
def test_on_dask_workers_the_study_gives_the_serial_runs_numbers(run, tmp_path):
    root, _, serial = run
    out = tmp_path / "dask"
    assert main(["reproduce", "--data", str(root), "--out", str(out), "--workers", "2",
                 *FLAGS]) == 0
    spread = json.loads((out / "results.json").read_text())
    for part in ("models", "ifgsm", "cw"):
        assert spread[part] == serial[part], part


def test_the_registry_picks_the_reports_protocol_and_refuses_what_it_does_not_measure(tmp_path,
                                                                                       capsys):
    assert reproduction("emnist") is reproduce_emnist
    assert reproduction("emnist").settings_from().temperatures == (1, 2, 5, 10, 35, 50, 100)
    assert main(["reproduce", "--dataset", "mnist", "--attacks", "ifgsm",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--attacks: ifgsm not measured on mnist" in capsys.readouterr().err
    assert main(["reproduce", "--dataset", "emnist", "--attacks", "jsma", "fgsm",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--attacks: fgsm not measured on emnist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()                 # refused before anything started
    with pytest.raises(ValueError, match="seeds: the EMNIST study runs one seed, got 3"):
        reproduce_emnist.settings_from(seeds=3)


def test_a_target_class_the_split_lacks_is_refused_before_any_training(run, tmp_path):
    root = run[0]
    settings = reproduce_emnist.settings_from(quick=True, target_class=47)
    with pytest.raises(ValueError, match=r"settings.target_class must lie in 0\.\.46, got 47"):
        reproduce_emnist.reproduce(tmp_path / "out", settings, data_path=root, progress=False)
    assert not (tmp_path / "out" / "models").exists()
