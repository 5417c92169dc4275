"""The reproduction end to end on real MNIST, shrunk to run in CI: files written, the
papers' direction of effect measured, trained models reused on a second run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from npdistill.__main__ import build_parser, main
from npdistill.nn.archive import read_archive
from npdistill.plots.reproduction import _shown
from npdistill.reproduce import (ATTACK_CHOICES, CLAIMS, EXAMPLES, PAPER, QUICK, claims,
                                 cw_norms, markdown_table, settings_from)
from npdistill.runs import percent, stacked_example
from tests.test_faults import dead_pid


@pytest.fixture(scope="module")
def run(mnist_dir, tmp_path_factory):
    # --quick cut down: 3,000 images, T in {1, 100}, few attacks, all three CW norms
    out = tmp_path_factory.mktemp("reproduce")
    argv = ["reproduce", "--quick", "--out", str(out), "--data", str(mnist_dir), "--quiet",
            "--temperatures", "1", "100", "--train-limit", "3000", "--jsma-samples", "3",
            "--cw-images", "2", "--cw-iterations", "150", "--attacks", "jsma", "fgsm", "cw"]
    assert main(argv) == 0
    return out, argv


def test_reproduce_writes_results_table_and_figures(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"baseline", "1", "100"}
    assert results["settings"]["train_images"] == 3000
    for name in ("success_vs_temperature", "accuracy_vs_temperature", "gradient_amplitudes",
                 "adversarial_examples"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    table = (out / "results.md").read_text()
    assert "3,000 images" in table and "60,000" in table          # the split is said
    assert "95.89%" in table                                       # the paper beside ours
    assert table == markdown_table(results)
    arrays, meta = read_archive(out / "measures" / "baseline_attacks.npz")
    assert arrays["jsma.clean"].shape == (EXAMPLES, 1, 28, 28)      # 3 samples x 9 targets
    assert arrays["jsma.adversarial"].shape == (EXAMPLES, 1, 28, 28)
    assert len(meta["examples"]["jsma"]["target"]) == EXAMPLES
    assert len(meta["examples"]["fgsm"]["success"]) == EXAMPLES


def test_distillation_masks_the_gradients_and_cw_still_runs(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    base, hot = results["models"]["baseline"], results["models"]["100"]
    assert hot["training_temperature"] == 100.0
    assert hot["gradient_amplitude_median"] < 1e-3 * base["gradient_amplitude_median"]
    assert hot["gradient_masking"]["fgsm"]["zero_fraction"] > \
        base["gradient_masking"]["fgsm"]["zero_fraction"]
    assert hot["jsma"]["success"] < base["jsma"]["success"]
    assert hot["fgsm"]["unperturbed"] > 0.01 and base["fgsm"]["unperturbed"] == 0
    assert hot["fgsm"]["success_logits_divided_by_T"] > hot["fgsm"]["success"]
    hist = np.array(hot["gradient_amplitude_histogram"])
    assert hist.sum() == pytest.approx(1.0)
    assert set(results["cw"]) == {"baseline", "100"}
    for row in results["cw"].values():
        assert set(row) == {"l2", "l0", "linf"}


def test_a_second_run_reuses_the_trained_models_and_measures(run, capsys):
    out, argv = run
    models = sorted(p.name for p in (out / "models").iterdir())
    assert models == ["baseline.npz", "student_T1.npz", "student_T100.npz",
                      "teacher_T100.npz"]                 # the teacher at T = 1 is the baseline
    assert sorted(p.name for p in (out / "measures").iterdir()) == sorted(
        [f"{m}_attacks.npz" for m in ("baseline", "T1", "T100")] +
        [f"{m}_cw_{n}.npz" for m in ("baseline", "T100") for n in ("l0", "l2", "linf")])
    first = json.loads((out / "results.json").read_text())
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*/*.npz")}
    # what a kill at a save leaves (a gone writer's pid in the name): removed, and said
    gone = dead_pid()
    for folder in ("models", "measures"):
        (out / folder / f".teacher_T100.{gone}-0123456789ab.tmp.npz").write_bytes(b"half")
    # the JSMA sample count changes: the attack measures are taken again, the CW ones reused
    assert main([a for a in argv if a != "--quiet"] + ["--jsma-samples", "1"]) == 0
    err = capsys.readouterr().err
    assert "reusing" in err and "measured with other settings" in err
    for folder in ("models", "measures"):
        assert f"removed 1 temporary file(s) that a killed run left in {out / folder}" in err
        assert not [p for p in (out / folder).iterdir() if ".tmp" in p.name]
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("*/*.npz")}
    assert {k for k in stamps if stamps[k] != again[k]} == {
        "baseline_attacks.npz", "T1_attacks.npz", "T100_attacks.npz"}
    second = json.loads((out / "results.json").read_text())
    assert second["cw"] == first["cw"]
    assert second["models"]["100"]["jsma"]["attacks"] == 9
    assert second["models"]["100"]["accuracy"] == first["models"]["100"]["accuracy"]
    # a reused measure counts with the time it took when it was taken
    taken = [read_archive(p)[1]["seconds"] for p in (out / "measures").iterdir()]
    assert min(taken) > 0 and second["measure_seconds"] == pytest.approx(sum(taken))
    assert second["nets_timed"] == 4 and second["train_seconds"] > 0


def _damage(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_saved_net_or_measure_is_moved_aside_and_computed_again(run, capsys):
    out, argv = run
    before = json.loads((out / "results.json").read_text())
    model, measure = out / "models" / "baseline.npz", out / "measures" / "T100_cw_l2.npz"
    from npdistill import load_model
    trained = load_model(model).checksum()
    _damage(model)
    _damage(measure)
    assert main(argv + ["--no-recompute"]) == 1                    # stop, as asked
    err = capsys.readouterr().err
    assert f"npdistill: error: {model}: not a readable .npz model file" in err
    assert "a run without --no-recompute (heal=True) moves it aside" in err
    assert main([a for a in argv if a != "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{model} is damaged (" in err and "moved to baseline.npz.damaged, retraining" in err
    assert f"{measure} is damaged (" in err and "T100_cw_l2.npz.damaged, measuring again" in err
    after = json.loads((out / "results.json").read_text())
    assert load_model(model).checksum() == trained                      # the same bits
    assert after["models"]["baseline"]["accuracy"] == before["models"]["baseline"]["accuracy"]
    assert after["cw"] == before["cw"]
    for path in (model, measure):
        assert path.with_name(path.name + ".damaged").exists()
        path.with_name(path.name + ".damaged").unlink()


def test_claims_are_checked_on_the_runs_own_numbers(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    assert results["claims"] == claims(results)
    assert "The papers' claims on this run:" in (out / "results.md").read_text()
    held = {c["claim"]: c["held"] for c in results["claims"]}
    assert len(held) == 6                                      # every measure is there
    # what a run this small shows already (3,000 images, 2 epochs: the baseline near 86%,
    # FGSM at T = 100 near the bar): T = 100 masks the gradients and JSMA, CW L2 still wins
    shown = [c for c in held if c.startswith(("the median adversarial", "JSMA's", "Carlini"))]
    assert len(shown) == 3 and all(held[c] for c in shown), results["claims"]


def _row(accuracy, jsma, fgsm, gradient):
    return {"accuracy": accuracy, "jsma": {"success": jsma}, "fgsm": {"success": fgsm},
            "gradient_amplitude_median": gradient}


def test_a_claim_the_numbers_break_is_reported_as_not_held():
    results = {"models": {"baseline": _row(0.98, 0.9, 0.6, 1e-6),
                          "20": _row(0.955, 0.17, 0.3, 1e-20),        # costs 2.5 points
                          "100": _row(0.975, 0.01, 0.1, 0.0)},
               "cw": {"baseline": {"l2": {"success": 1.0}}, "100": {"l2": {"success": 0.85}}}}
    checked = claims(results)
    assert [c["held"] for c in checked] == [True, False, True, True, True, False]
    assert checked[1]["measured"] == "at most 2.50 points (T = 20)"
    assert checked[2]["measured"] == "at most 17.00% (T = 20) vs 90.00%"
    assert checked[4]["measured"] == "1.0e-06 to 0.0e+00"          # fell to exactly 0: held
    stricter = {**CLAIMS, "baseline_accuracy": 0.99}
    assert not claims(results, stricter)[0]["held"]
    # a claim whose measure the run lacks is left out: no T >= 20, no JSMA, no CW
    results["models"] = {"baseline": _row(0.98, None, 0.6, 1e-6), "5": _row(0.97, None, 0.5, 1)}
    results["cw"] = {}
    assert [c["claim"].split()[0] for c in claims(results)] == ["the", "distillation"]


@pytest.mark.slow
def test_the_quick_run_shows_every_claim_of_the_papers(mnist_dir, tmp_path):
    """The redesigned --quick (issue 39): all six claims on seed 0 (docs/RESULTS.md: 0-4)."""
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--data", str(mnist_dir),
                 "--quiet"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["claims"]) == 6
    assert all(c["held"] for c in results["claims"]), results["claims"]


def test_the_attacks_flag_picks_the_measures(monkeypatch):
    seen = {}
    monkeypatch.setattr("npdistill.reproduce.reproduce",
                        lambda out, settings, **kw: seen.setdefault("settings", settings))
    monkeypatch.setattr("pathlib.Path.read_text", lambda self: "")
    assert main(["reproduce", "--out", "x", "--attacks", "fgsm", "jsma", "fgsm"]) == 0
    assert seen["settings"].attacks == ("fgsm", "jsma")
    seen.clear()
    assert main(["reproduce", "--out", "x", "--attacks", "cw_linf", "cw_l2"]) == 0
    assert cw_norms(seen["settings"].attacks) == ["l2", "linf"]       # the quickest first
    with pytest.raises(SystemExit):
        main(["reproduce", "--out", "x", "--attacks", "deepfool"])


def test_the_cli_offers_every_attack_choice():
    parser = build_parser()
    action = next(a for sub in parser._subparsers._group_actions for p in sub.choices.values()
                  for a in p._actions if "--attacks" in a.option_strings)
    from npdistill.reproduce_emnist import ATTACK_CHOICES as EMNIST_ATTACKS
    assert set(action.choices) == set(ATTACK_CHOICES) | set(EMNIST_ATTACKS)
    assert cw_norms(("cw",)) == ["l2", "linf", "l0"] and cw_norms(("jsma", "fgsm")) == []


def test_settings_overrides():
    s = settings_from(True, epochs=5, temperatures=None)
    assert s.epochs == 5 and s.temperatures == QUICK.temperatures
    with pytest.raises(TypeError):
        settings_from(False, no_such_setting=1)


def test_published_shares_print_as_percentages():
    assert percent(PAPER["fgsm_success"]["baseline"]) == "88.03%"
    assert percent(PAPER["fgsm_success"][100]) == "< 1.50%"        # a bound, not a value
    assert percent(json.loads(json.dumps(PAPER["fgsm_success"][100]))) == "< 1.50%"
    assert percent(None) == "-"


def test_a_cw_norm_not_measured_shows_as_a_dash(run):
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    for row in results["cw"].values():
        del row["l0"]
    cw_rows = [line for line in markdown_table(results).splitlines()
               if line.startswith("| no distillation |") and "(16)" in line]
    assert len(cw_rows) == 1 and "| - | - (16) |" in cw_rows[0]


def test_the_digit_grid_shows_a_digit_the_baseline_attack_broke_on_every_row():
    stack = np.zeros((3, 1, 28, 28))
    examples = {"baseline": {"fgsm": (stack, stack, None, [False, True, True])},
                "50": {"fgsm": (stack, stack, None, [True, False, False])}}
    assert _shown(examples, list(examples), "fgsm") == 1
    examples["baseline"]["fgsm"] = (stack, stack, None, [False] * 3)
    assert _shown(examples, list(examples), "fgsm") == 0     # else the first that broke any net
    examples["50"]["fgsm"] = (stack, stack, None, [False, False, True])
    assert _shown(examples, list(examples), "fgsm") == 2
    examples["50"]["fgsm"] = (stack, stack, None, [False] * 3)
    assert _shown(examples, list(examples), "fgsm") == 0     # none broke: the first digit


def test_a_measure_saved_with_one_example_reads_as_a_stack_of_one():
    image = np.ones((1, 28, 28))
    clean, adversarial, target, success = stacked_example(image, image * 0, 3, True)
    assert clean.shape == adversarial.shape == (1, 1, 28, 28)
    assert target == [3] and success == [True]
    assert stacked_example(image, image, None, False)[2:] == (None, [False])
    stack = np.ones((4, 1, 28, 28))
    assert stacked_example(stack, stack, None, [True] * 4)[0] is stack


def test_a_run_reports_its_tasks_to_a_progress_callable(run, mnist_dir, capsys):
    from npdistill.reproduce import reproduce

    out, _ = run
    settings = settings_from(True, temperatures=(1, 100), train_limit=3000, jsma_samples=1,
                             cw_images=2, cw_iterations=150, attacks=("jsma", "fgsm", "cw"))
    events = []
    reproduce(out, settings, data_path=mnist_dir, progress=events.append)
    tasks = [e for e in events if e.stage == "reproduce"]
    total = 4 + 3 + 2 * 3                          # 4 nets, 3 attack measures, 2 nets x 3 CW
    assert [e.done for e in tasks] == list(range(1, total + 1))
    assert {e.total for e in tasks} == {total} and tasks[-1].figures["last"].endswith(".npz")
    assert "reproduce:" not in capsys.readouterr().err            # a callable: nothing printed


def _cli(argv, threads, **kwargs):
    """``python -m npdistill`` in a process of its own with ``threads`` BLAS/OpenMP threads
    (set before NumPy loads, as the CLI sets them for its Dask workers)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "npdistill", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


def _dask_workers(pid, count, deadline=120):
    """The pids of the ``count`` Dask worker processes that CLI process ``pid`` started
    (its nannies spawn them through multiprocessing), once they are all there."""
    stop = time.monotonic() + deadline
    while True:
        workers = []
        for stat in os.listdir("/proc"):
            try:
                ppid = int(open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()[1])
                cmdline = open(f"/proc/{stat}/cmdline").read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid and "spawn_main" in cmdline:
                workers.append(int(stat))
        if len(workers) == count:
            return workers
        assert time.monotonic() < stop, f"{len(workers)} workers of {count} started"
        time.sleep(0.2)


# ~100 s of a CI run near its 20 minutes: run with -m slow. The fast path keeps Dask's
# lost workers (tests/test_distributed.py: every worker killed at once, none left, a task
# that kills its workers) and the reproduction's resumption (a second run, a damaged file).
@pytest.mark.slow
def test_a_run_on_two_dask_workers_killed_midway_resumes_to_the_serial_answer(run, tmp_path):
    # Two worker processes with the cores shared out (the CLI's rule) do the arithmetic of
    # a serial run on all the cores: the products are cut in pieces fixed by the shapes
    # (kernels/reference/gemm.py), so the nets, and the CW attacks cut in one piece per worker, must
    # be bit for bit that run's, even when the whole run is killed and resumed, and when one
    # of its workers is killed while it trains (the resumed run goes on without a stop).
    pytest.importorskip("distributed")
    _, argv = run
    threads = max(1, (os.cpu_count() or 1) // 2)
    serial, out = tmp_path / "serial", tmp_path / "on-dask"
    # 4 CW images in batches of 2: one batch on each worker
    with_out = lambda folder: [a if a != str(run[0]) else str(folder)            # noqa: E731
                               for a in argv] + ["--cw-images", "4", "--cw-batch", "2"]
    reference = _cli(with_out(serial), os.cpu_count() or 1)
    killed = _cli(with_out(out) + ["--workers", "2"], threads)
    try:
        deadline = time.monotonic() + 300
        while not (out / "models" / "baseline.npz").exists():        # the first net saved
            assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()
            time.sleep(0.2)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)                        # client and workers
        killed.communicate(timeout=60)
    assert reference.communicate(timeout=600) and reference.returncode == 0
    assert not (out / "results.json").exists()
    resumed = _cli([a for a in with_out(out) if a != "--quiet"] + ["--workers", "2"], threads)
    try:
        victim = _dask_workers(resumed.pid, 2)[0]
        time.sleep(3)                                  # the data shipped, the nets training
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while not (out / "measures").is_dir() or not any((out / "measures").iterdir()):
            assert resumed.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(_dask_workers(resumed.pid, 2)[1], signal.SIGKILL)     # and one mid-attacks
    finally:
        _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "Dask: 2 worker processes" in err and "dashboard" in err
    assert err.count(" lost: ") == 2 and "start again elsewhere" in err, err
    assert "Traceback" not in err, err
    assert f"reusing {out / 'models' / 'baseline.npz'}" in err
    from npdistill import load_model
    for path in sorted((serial / "models").iterdir()):
        assert load_model(out / "models" / path.name).checksum() == load_model(path).checksum()
    ours, theirs = (json.loads((folder / "results.json").read_text()) for folder in (out, serial))
    assert ours["cw"] == theirs["cw"] and ours["models"] == theirs["models"]
    # results.json is the same apart from timings and the environment (its thread counts)
    differs = {"seconds", "measure_seconds", "train_seconds", "environment"}
    assert {k: v for k, v in ours.items() if k not in differs} == \
        {k: v for k, v in theirs.items() if k not in differs}
    assert sorted(p.name for p in (out / "models").iterdir()) == \
        sorted(p.name for p in (serial / "models").iterdir())          # no temporary left


def test_a_cluster_that_cannot_go_on_is_one_line_saying_a_rerun_resumes(tmp_path, monkeypatch,
                                                                        capsys):
    from npdistill.distributed import WorkLost

    def lost(*args, **kwargs):
        raise WorkLost("every Dask worker is gone and none came back within 120 s")
    monkeypatch.setattr("npdistill.reproduce.reproduce", lost)
    assert main(["reproduce", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("npdistill: error: every Dask worker is gone and none came back within "
                       f"120 s: stopped; run the same command again to resume from what is "
                       f"saved in {tmp_path / 'r'}")


def test_workers_without_dask_say_what_to_install(tmp_path, monkeypatch, capsys):
    def missing():
        raise ImportError('running on Dask needs dask.distributed: pip install '
                          '"npdistill[distributed]"')
    monkeypatch.setattr("npdistill.distributed.require_dask", missing)
    monkeypatch.setattr("npdistill.reproduce.reproduce", lambda *a, **k: pytest.fail("ran"))
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--workers", "2"]) == 2
    assert 'pip install "npdistill[distributed]"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--out", str(tmp_path / "r"), "--workers", "2", "--scheduler", "x"])


def test_spread_gives_mean_and_range_at_every_numeric_leaf():
    from npdistill.reproduce import spread
    got = spread([{"a": 0.2, "b": {"c": 1}, "h": [1, 2]}, {"a": 0.4, "b": {"c": 3}, "h": [3]}])
    assert got["a"] == {"mean": pytest.approx(0.3), "min": 0.2, "max": 0.4, "values": [0.2, 0.4]}
    assert got["b"]["c"]["mean"] == 2 and got["h"] is None


def test_seeds_train_each_seed_and_report_the_spread(mnist_dir, tmp_path):
    out = tmp_path / "seeds"
    argv = ["reproduce", "--quick", "--out", str(out), "--data", str(mnist_dir), "--quiet",
            "--temperatures", "100", "--train-limit", "600", "--epochs", "1",
            "--attacks", "fgsm", "--seed", "3", "--seeds", "2"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [3, 4]
    for seed in (3, 4):
        own = json.loads((out / f"seed{seed}" / "results.json").read_text())
        assert own["settings"]["seed"] == seed
        assert results["per_seed"][str(seed)]["models"] == own["models"]
    accuracy = results["spread"]["100"]["accuracy"]
    assert accuracy["values"] == [results["per_seed"][s]["models"]["100"]["accuracy"]
                                  for s in ("3", "4")]
    assert accuracy["min"] <= accuracy["mean"] <= accuracy["max"]
    assert accuracy["values"][0] != accuracy["values"][1]          # two seeds, two nets
    table = (out / "results.md").read_text()
    assert "over 2 seeds [3, 4]" in table and "Environment: npdistill" in table
    fgsm = next(c for c in results["claims"] if c["claim"].startswith("FGSM's"))
    assert fgsm["seeds"] == 2 and set(fgsm["measured"]) == {"3", "4"}
    assert fgsm["held_on"] == sum(next(c["held"] for c in results["per_seed"][s]["claims"]
                                       if c["claim"] == fgsm["claim"]) for s in ("3", "4"))
    assert f"{fgsm['held_on']} of 2 seeds" in table
    assert (out / "spread_vs_temperature.png").stat().st_size > 10_000
    assert "environment" in results and results["environment"]["backend"]
