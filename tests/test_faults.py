"""Faults while a run is under way (issue 41): an OS error while writing names the file and
what it is and leaves the previous file intact; a temporary left by a process killed
mid-save is removed by the next run that writes there, never one of a live process; a
model file that lies about its sizes or nests its header without end is refused in one
line before anything is allocated, under a 2 GB memory limit."""
import errno
import os
import signal
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import npdistill as nd
from npdistill._files import WriteError, remove_stale_temporaries, replacing, write_text
from npdistill.nn.archive import MAX_HEADER_BYTES, read_archive, write_archive


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


# train, killed (SIGKILL) at its N-th save to a file named NAME: just before the rename
KILLED_AT_SAVE = """
import os, signal, sys
name, nth = sys.argv[1], int(sys.argv[2])
rename, seen = os.replace, []

def replace(src, dst, **kwargs):
    if os.path.basename(dst) == name:
        seen.append(dst)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, **kwargs)

os.replace = replace
from npdistill.__main__ import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.mnist
@pytest.mark.parametrize("name, nth", [("checkpoint.npz", 2), ("model.npz", 1)],
                         ids=["second checkpoint", "the --out model"])
def test_train_killed_at_a_save_resumes_to_the_same_bits_and_leaves_nothing(
        mnist_dir, tmp_path, name, nth):
    def train(folder, *wrapper):
        folder.mkdir(exist_ok=True)
        argv = ["train", "--data", str(mnist_dir), "--epochs", "3", "--limit", "256",
                "--checkpoint-dir", str(folder / "ck"), "--out", str(folder / "model.npz")]
        command = [sys.executable, "-c", KILLED_AT_SAVE, *wrapper] if wrapper else \
            [sys.executable, "-m", "npdistill"]
        return subprocess.run(command + argv, capture_output=True, text=True, timeout=300)

    clean = train(tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    killed = train(tmp_path / "run", name, str(nth))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = _temporaries(tmp_path / "run") + _temporaries(tmp_path / "run" / "ck")
    assert len(left) == 1 and name.split(".")[0] in left[0]       # what the kill leaves
    resumed = train(tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr
    assert "removed 1 temporary file(s) that a killed run left in" in resumed.stderr
    assert _temporaries(tmp_path / "run") == _temporaries(tmp_path / "run" / "ck") == []
    assert nd.load_model(tmp_path / "run" / "model.npz").checksum() == \
        nd.load_model(tmp_path / "clean" / "model.npz").checksum()


def test_a_failed_write_inside_the_block_removes_its_temporary(tmp_path):
    with pytest.raises(WriteError, match="could not write figure .*f.png: file too large"):
        with replacing(tmp_path / "f.png", "figure") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.EFBIG, "File too large")
    assert list(tmp_path.iterdir()) == []


def _forge_sizes(path, member, size):
    """Rewrite the sizes the zip records for ``member`` (local header and central
    directory, compressed and uncompressed) as ``size``, its bytes left as they are."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        at = data.find(signature)
        while at >= 0:
            length_at = at + (26 if signature == b"PK\x03\x04" else 28)
            start = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[start:start + struct.unpack("<H", data[length_at:length_at + 2])[0]] == name:
                data[at + offset:at + offset + 8] = struct.pack("<II", size, size)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))


def _forged_sizes(path):
    nd.architectures.papernot_mnist(seed=0).save(path)
    _forge_sizes(path, "__metadata__.npy", 3_700_000_000)        # a 3.7 GB header, it says


def _forged_header(path):
    header = np.lib.format.header_data_from_array_1_0(np.array(["{}"]))
    header["shape"] = (900_000_000,)                             # 7.2 GB of text, it says
    with zipfile.ZipFile(path, "w") as archive, archive.open("__metadata__.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write("{}".encode("utf-32-le"))


def _zip_bomb(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("__metadata__.npy", "w") as member:     # 40 MB inflating from ~40 kB
            np.lib.format.write_array(member, np.zeros(10_000_000, np.float32))


def _deep_nesting(path):
    np.savez(path, __metadata__=np.array("[" * 100_000 + "]" * 100_000))


def _huge_header(path):
    np.savez(path, __metadata__=np.array(" " * (MAX_HEADER_BYTES // 4 + 1) + "{}"))


@pytest.mark.parametrize("forge, says", [
    (_forged_sizes, r"member '__metadata__\.npy' declares 3,700,000,000 bytes, more than the"),
    (_forged_header, r"member '__metadata__\.npy' declares more data than it holds"),
    (_zip_bomb, r"member '__metadata__\.npy' is compressed"),
    (_deep_nesting, r"metadata is nested deeper than any npdistill writes"),
    (_huge_header, r"the metadata is [\d,]+ bytes; npdistill writes at most"),
], ids=["forged sizes", "forged header", "zip bomb", "deep nesting", "huge header"])
def test_a_model_file_that_lies_about_its_sizes_is_refused_before_any_allocation(
        tmp_path, forge, says):
    """Each refused with the file's path in one ValueError line, in a process that may use
    2 GB at most (the forged 3.7 GB member, the bomb inflated, would not fit)."""
    path = tmp_path / "m.npz"
    forge(path)
    with pytest.raises(ValueError, match=says) as refused:
        read_archive(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "import npdistill as nd\n"
            "try:\n    nd.load_model(sys.argv[1])\n"
            "except ValueError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: ") and str(path) in done.stdout
