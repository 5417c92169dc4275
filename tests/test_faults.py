"""Faults while a run is under way (issue 41): an OS error while writing names the file and
what it is and leaves the previous file intact; a temporary left by a process killed
mid-save is removed by the next run that writes there, never one of a live process."""
import errno
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import npdistill as nd
from npdistill._files import WriteError, remove_stale_temporaries, replacing, write_text
from npdistill.nn.archive import write_archive


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def dead_pid():
    """The pid of a process that has exited."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_an_os_error_while_writing_names_the_file_and_keeps_the_previous_one(tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "m.npz"
    model = nd.architectures.papernot_mnist(seed=0)
    model.save(path)
    before = nd.load_model(path).checksum()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(WriteError) as caught:
        nd.architectures.papernot_mnist(seed=1).save(path)
    assert str(caught.value) == f"could not write model {path}: no space left on device"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    with pytest.raises(WriteError, match=f"could not write checkpoint {path}: no space"):
        write_archive(path, model.params, {}, what="checkpoint")
    monkeypatch.undo()
    assert nd.load_model(path).checksum() == before                 # the previous file
    assert _temporaries(tmp_path) == []
    with pytest.raises(WriteError, match="could not write results .*: no such file"):
        write_text(tmp_path / "no" / "results.json", "{}", "results")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
@pytest.mark.mnist
def test_a_file_size_limit_ends_train_with_one_line_naming_the_model(mnist_dir, tmp_path):
    # the model (1.25 MB) is the only file the run writes; 200 kB is the limit
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
            "from npdistill.__main__ import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "model.npz"
    child = subprocess.run([sys.executable, "-c", code, "train", "--data", str(mnist_dir),
                            "--epochs", "1", "--limit", "256", "--quiet", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 1, child.stderr
    assert child.stderr.strip().splitlines()[-1] == (
        f"npdistill: error: could not write model {out}: file too large")
    assert "Traceback" not in child.stderr
    assert list(tmp_path.iterdir()) == []                 # no model, no temporary


def test_only_the_temporaries_of_gone_processes_are_removed(tmp_path):
    dead, token = dead_pid(), "0123456789ab"
    names = {"dead": f".checkpoint.{dead}-{token}.tmp.npz",
             "dead_json": f".results.{dead}-{token}.tmp.json",
             "mine": f".m.{os.getpid()}-{token}.tmp.npz",
             "init": f".m.1-{token}.tmp.npz",                  # pid 1 runs as long as we do
             "not_ours": f".m.{dead}-nothex.tmp.npz",
             "model": "m.npz"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["dead_json"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for k, n in names.items() if not k.startswith("dead"))
    assert remove_stale_temporaries(tmp_path / "missing") == []


KILLED_MID_SAVE = """
import os, signal, sys
from npdistill._files import replacing
with replacing(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.mnist
def test_a_run_after_a_kill_mid_save_removes_the_temporary_and_says_so(mnist_dir, tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE,
                             str(folder / "checkpoint.npz")], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert len(_temporaries(folder)) == 1                    # what a kill at a save leaves
    child = subprocess.run([sys.executable, "-m", "npdistill", "train", "--data",
                            str(mnist_dir), "--epochs", "1", "--limit", "128",
                            "--checkpoint-dir", str(folder)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert f"removed 1 temporary file(s) that a killed run left in {folder}" in child.stderr
    assert _temporaries(folder) == [] and (folder / "checkpoint.npz").exists()


def test_a_failed_write_inside_the_block_removes_its_temporary(tmp_path):
    with pytest.raises(WriteError, match="could not write figure .*f.png: file too large"):
        with replacing(tmp_path / "f.png", "figure") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.EFBIG, "File too large")
    assert list(tmp_path.iterdir()) == []
