"""The command line as a user meets it: help, version, exit codes, output paths checked before
any work, data asked for in the command line's words, the backend named and overridable."""
import argparse
import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import npdistill as nd
from npdistill import __main__ as cli
from npdistill.__main__ import build_parser, main
from tests.test_datasets import write_mnist


def run_cli(*argv, env=None, cwd=None):
    """``python -m npdistill ARGV`` in a child process (the environment read at import)."""
    environment = {k: v for k, v in os.environ.items() if k != "NPDISTILL_BACKEND"}
    return subprocess.run([sys.executable, "-m", "npdistill", *argv], capture_output=True,
                          text=True, env={**environment, **(env or {})}, cwd=cwd, timeout=300)


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the command gets as far as loading data or training."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command started work before checking its arguments")
    monkeypatch.setattr(cli, "train", refuse)
    monkeypatch.setattr(cli, "BENCHMARKS", {name: dataclasses.replace(b, load=refuse)
                                            for name, b in cli.BENCHMARKS.items()})
    monkeypatch.setattr("npdistill.reproduce.reproduce", refuse)
    monkeypatch.setattr("npdistill.reproduce_defenses.reproduce_defenses", refuse)


def subcommands():
    parser = build_parser()
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *group.choices.values()]


def test_every_flag_has_help_and_shows_its_default():
    for parser in subcommands():
        text = parser.format_help()
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.option_strings} has no help text"
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert f"default: {action.default}" in " ".join(text.split()), \
                    f"{parser.prog} {action.option_strings[0]} hides its default"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"npdistill {nd.__version__}"


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--limit", "-3"],
                                  ["train", "--lr", "nan"], ["train", "--lr", "inf"],
                                  ["train", "--momentum", "1"],
                                  ["reproduce"], ["reproduce", "--out", "r", "--seed", "x"],
                                  ["fly"]])
def test_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def unwritable(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


# (argv built from tmp_path, what the one-line error must say)
OUTPUT_PATHS = [
    (lambda t: ["train", "--out", str(t / "no" / "such" / "m.npz")], r"--out: the folder .*no/such does not exist"),
    (lambda t: ["train", "--out", str(t / "m.txt")], r"--out must name a \.npz file"),
    (lambda t: ["train", "--out", str(t)], r"--out: .* is a folder; name a \.npz file in it"),
    (lambda t: ["train", "--out", str(unwritable(t) / "m.npz")], r"--out: cannot write in"),
    (lambda t: ["train", "--checkpoint-dir", str(t / "f.npz")], r"--checkpoint-dir: .*f\.npz is a file"),
    (lambda t: ["train", "--checkpoint-dir", str(t / "f.npz" / "ckpt")],
     r"--checkpoint-dir: .* cannot be created: .*f\.npz is a file"),
    (lambda t: ["train", "--checkpoint-dir", str(unwritable(t) / "ckpt")], r"cannot write in"),
    (lambda t: ["reproduce", "--out", str(t / "f.npz")], r"--out: .*f\.npz is a file, not a folder"),
    (lambda t: ["reproduce", "--defenses", "--out", str(t / "f.npz")], r"--out: .* is a file"),
    (lambda t: ["evaluate", "m.npz", "--out", str(t / "f.npz")], r"--out: .*f\.npz is a file"),
]


@pytest.mark.parametrize("argv, message", OUTPUT_PATHS)
def test_output_paths_are_checked_before_any_work(argv, message, tmp_path, capsys, no_work):
    argv = argv(tmp_path)
    if "read-only" in " ".join(argv) and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (tmp_path / "f.npz").write_bytes(b"")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("npdistill: error: "), err
    assert re.search(message, err[0]), err[0]


def test_train_checks_its_checkpoint_dir_before_training(tmp_path, toy):
    model, x, y, _ = toy
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValueError, match="checkpoint_dir: .*file is a file"):
        nd.train(model.copy(), (x, y), epochs=1, checkpoint_dir=tmp_path / "file",
                 progress=False)


@pytest.mark.parametrize("command", [["train"], ["reproduce", "--out", "OUT"],
                                     ["reproduce", "--defenses", "--out", "OUT"]])
def test_missing_data_names_the_three_ways_to_give_it(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPDISTILL_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))            # an empty cache
    argv = [str(tmp_path / a) if a == "OUT" else a for a in command]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"no mnist data in {tmp_path / 'empty' / 'mnist'} nor in "
            f"{tmp_path / 'home' / '.cache' / 'npdistill' / 'mnist'}") in err
    for way in ("--data FOLDER", "NPDISTILL_DATA=ROOT", "--download"):
        assert way in err
    assert "path=" not in err and "download=True" not in err      # no Python words
    assert not (tmp_path / "OUT").exists()


def test_a_failed_run_exits_1_and_a_singular_epoch_is_one_epoch(tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    assert main(["train", "--data", str(tmp_path / "mnist"), "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "trained 1 epoch at T=1 in" in out.out and "samples/s" in out.out
    target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-12])                     # a truncated file
    assert main(["train", "--data", str(tmp_path / "mnist"), "--epochs", "1", "--quiet"]) == 1
    assert "t10k-labels-idx1-ubyte.gz" in capsys.readouterr().err


def test_download_flag_reaches_the_loader(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr("npdistill.reproduce.reproduce",
                        lambda out, settings, **kw: seen.update(kw) or (out / "results.md").write_text("table"))
    assert main(["reproduce", "--quick", "--download", "--out", str(tmp_path)]) == 0
    assert seen["download"] is True and "table" in capsys.readouterr().out


def test_a_bad_backend_variable_breaks_neither_import_nor_help_and_backend_overrides_it(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    bad = {"NPDISTILL_BACKEND": "fortran"}
    imported = subprocess.run([sys.executable, "-c", "import npdistill; print('ok')"],
                              capture_output=True, text=True, env={**os.environ, **bad})
    assert imported.returncode == 0 and imported.stdout.strip() == "ok", imported.stderr
    helped = run_cli("train", "--help", env=bad)
    assert helped.returncode == 0 and "--backend" in helped.stdout
    data = ["--data", str(tmp_path / "mnist"), "--epochs", "1", "--quiet"]
    refused = run_cli("train", *data, env=bad)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "NPDISTILL_BACKEND='fortran': unknown backend 'fortran'" in refused.stderr
    assert "--backend overrides it" in refused.stderr
    overridden = run_cli("train", *data, "--backend", "numpy", env=bad)
    assert overridden.returncode == 0, overridden.stderr
    assert "backend: numpy (the NumPy reference, not compiled)" in overridden.stderr


def test_evaluate_end_to_end_resumes_and_reads_a_state_dict(tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=4, n_test=12)
    model = nd.architectures.papernot_mnist(seed=0)
    model.save(tmp_path / "m.npz")
    np.savez(tmp_path / "sd.npz", **nd.interop.state_dict(model))
    flags = ["--data", str(tmp_path / "mnist"), "--images", "10", "--attacks", "fgsm", "pgd",
             "square", "--steps", "3", "--queries", "20", "--eps", "0", "0.1", "0.3", "--quiet"]
    assert main(["evaluate", str(tmp_path / "m.npz"), "--out", str(tmp_path / "a"), *flags]) == 0
    out = capsys.readouterr().out
    assert "| ε (L∞) | clean | FGSM | PGD-CE | Square | worst case |" in out
    ev = nd.Evaluation.from_json((tmp_path / "a" / "evaluation.json").read_text())
    assert ev.attacks == ("FGSM", "PGD-CE", "Square") and ev.broken.shape == (3, 3, 10)
    assert "npdistill evaluate" in (tmp_path / "a" / "evaluation.md").read_text()
    assert (tmp_path / "a" / "robust_accuracy.png").stat().st_size > 10_000
    parts = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a" / "parts").iterdir()}
    assert sorted(parts) == ["FGSM.json", "PGD-CE.json", "Square.json"]
    # run again: every attack's record is reused, not recomputed
    assert main(["evaluate", str(tmp_path / "m.npz"), "--out", str(tmp_path / "a"), *flags]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a" / "parts").iterdir()} == parts
    # the same net as an architecture and a state_dict: the same numbers
    assert main(["evaluate", "--arch", "papernot_mnist", "--state-dict", str(tmp_path / "sd.npz"),
                 "--out", str(tmp_path / "b"), *flags]) == 0
    again = nd.Evaluation.from_json((tmp_path / "b" / "evaluation.json").read_text())
    np.testing.assert_array_equal(again.broken, ev.broken)


@pytest.mark.parametrize("argv, status, message", [
    (["evaluate", "--out", "OUT"], 2, "give MODEL.npz, or --arch NAME with --state-dict FILE"),
    (["evaluate", "m.npz", "--arch", "papernot_mnist", "--out", "OUT"], 2, "not both"),
    (["evaluate", "--arch", "resnet50", "--state-dict", "sd.npz", "--out", "OUT"], 2,
     "--arch: no architecture 'resnet50'; expected one of"),
    (["evaluate", "m.npz", "--eps", "0.3", "0.1", "--out", "OUT"], 1,
     r"eps must be increasing, got \[0.3, 0.1\]"),
])
def test_evaluate_refuses_what_it_cannot_do(argv, status, message, tmp_path, capsys):
    write_mnist(tmp_path / "mnist", n_train=4, n_test=5)
    nd.architectures.papernot_mnist(seed=0).save(tmp_path / "m.npz")
    np.savez(tmp_path / "sd.npz", **nd.interop.state_dict(nd.architectures.papernot_mnist()))
    argv = [str(tmp_path / a) if a in ("OUT", "m.npz", "sd.npz") else a for a in argv]
    assert main(argv + ["--data", str(tmp_path / "mnist"), "--quiet"]) == status
    assert re.search(message, capsys.readouterr().err)
