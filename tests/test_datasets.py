"""IDX / CIFAR-10 loaders on the real files and on broken ones; download from a loopback server."""
import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import npdistill as nd
from npdistill import datasets
from npdistill._download import part_file
from npdistill.__main__ import main


def idx_bytes(array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=5, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28)))
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, n))
    for name, data in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return files


@pytest.mark.mnist
def test_real_mnist(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (22699, 1, 28, 28)        # what the header of this copy declares
    assert x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]   # the canonical first labels


@pytest.mark.mnist
def test_data_root_from_the_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("NPDISTILL_DATA", str(mnist_dir.parent))
    (_, y_train), _ = nd.datasets.load_mnist()
    (_, y_root), _ = nd.datasets.load_mnist(mnist_dir.parent)    # a data root as path= too
    assert len(y_train) == len(y_root) == 22699


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_idx_round_trip(tmp_path, gz):
    files = write_mnist(tmp_path, gz=gz)
    (x, y), (xt, yt) = datasets.load_mnist(tmp_path)
    expected = np.frombuffer(files["train-images-idx3-ubyte"][16:], np.uint8).reshape(5, 1, 28, 28)
    np.testing.assert_array_equal(x, expected / np.float32(255))
    assert (len(x), len(y), len(xt), len(yt)) == (5, 5, 3, 3)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b"\x00\x00\x08\x07" + b[4:], "trailing bytes|truncated"),
    (lambda b: b"\x12\x34" + b[2:], "wrong magic number"),
    (lambda b: b[:-10], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:3], "truncated"),
])
def test_damaged_idx_files_name_the_file_and_the_problem(tmp_path, damage, match):
    files = write_mnist(tmp_path, gz=False)
    target = tmp_path / "train-images-idx3-ubyte"
    target.write_bytes(damage(files["train-images-idx3-ubyte"]))
    with pytest.raises(ValueError, match=match) as info:
        datasets.load_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_truncated_gzip_is_refused(tmp_path):
    write_mnist(tmp_path)
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-12])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_mnist(tmp_path)


def test_images_and_labels_of_different_counts(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        datasets.load_mnist(tmp_path)


def test_without_a_path_the_environment_root_comes_first_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NPDISTILL_DATA", str(tmp_path / "root"))
    write_mnist(tmp_path / "home" / ".cache" / "npdistill" / "mnist", n_train=7)
    assert len(datasets.load_mnist()[0][0]) == 7                       # the root is empty
    write_mnist(tmp_path / "root" / "mnist", n_train=4)
    assert len(datasets.load_mnist()[0][0]) == 4


def test_missing_files_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="NPDISTILL_DATA"):
        datasets.load_mnist(tmp_path)


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
    return rows.astype(np.uint8).tobytes()


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate(datasets.CIFAR10_FILES):
        (folder / name).write_bytes(cifar_batch(4, i))
    (x, y), (xt, yt) = datasets.load_cifar10(tmp_path)
    assert x.shape == (20, 3, 32, 32) and xt.shape == (4, 3, 32, 32)
    first = np.frombuffer(cifar_batch(4, 0), np.uint8).reshape(4, 3073)
    np.testing.assert_array_equal(y[:4], first[:, 0])
    np.testing.assert_array_equal(x[0, 2].ravel() * 255, first[0, 1 + 2048:].astype(np.float32))
    (folder / "test_batch.bin").write_bytes(cifar_batch(4, 9)[:-7])
    with pytest.raises(ValueError, match="test_batch.bin.*truncated"):
        datasets.load_cifar10(tmp_path)


# -- download, against a server on loopback ---------------------------------------
class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; answers 403 under /forbidden/, as a mirror that stopped serving does;
    under /dropped/ cuts each file after half its announced length, under /endless/ sends
    bytes without end, under /stalled/ sends its headers and then nothing for 5 s; under
    /ranged/ honours Range requests, and /cut/ does too but breaks a transfer from the
    start halfway. ``ranges``: the Range header of each /ranged/ or /cut/ request."""
    ranges: list = []

    def do_GET(self):
        if self.path.startswith("/forbidden/"):
            self.send_error(403)
        elif self.path.startswith(("/dropped/", "/endless/", "/stalled/")):
            self.send_response(200)
            if self.path.startswith("/dropped/"):
                self.send_header("Content-Length", "4000")
            self.end_headers()
            try:
                if self.path.startswith("/dropped/"):
                    self.wfile.write(b"x" * 2000)
                elif self.path.startswith("/stalled/"):
                    time.sleep(5)
                else:
                    while True:
                        self.wfile.write(b"x" * 65536)
            except OSError:                          # the client gave up: as it should
                pass
            self.close_connection = True
        elif self.path.startswith(("/ranged/", "/cut/")):
            self._ranged()
        else:
            super().do_GET()

    def _ranged(self):
        data = (Path(self.directory) / self.path.split("/", 2)[2]).read_bytes()
        asked = self.headers.get("Range")
        Handler.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = self.path.startswith("/cut/") and not asked
        self.wfile.write(data[start:len(data) // 2] if cut else data[start:])
        self.close_connection = cut

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(Handler, directory=str(root))
    Handler.ranges.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def serve_mnist(root, url, monkeypatch, corrupt=None):
    write_mnist(root)
    checksums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in root.iterdir()}
    if corrupt:
        (root / corrupt).write_bytes(b"tampered")
    monkeypatch.setitem(datasets.RESOURCES, "mnist",
                        ("mnist", ["http://127.0.0.1:9/unreachable/", url], checksums))


def test_download_fetches_verifies_and_loads(tmp_path, server, monkeypatch):
    root, url = server
    serve_mnist(root, url, monkeypatch)
    monkeypatch.setenv("NPDISTILL_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (x, y), (xt, yt) = datasets.load_mnist(download=True)
    assert (len(x), len(xt)) == (5, 3)
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_a_dropped_endless_or_stalled_transfer_is_one_more_mirror_failure(tmp_path, server,
                                                                          capsys):
    """Each costs one line and the next mirror; none is read past its cap or waited on
    past the timeout, and the file comes from the good mirror."""
    root, url = server
    write_mnist(root)
    name = "t10k-labels-idx1-ubyte.gz"
    checksums = {name: hashlib.md5((root / name).read_bytes()).hexdigest()}
    began = time.perf_counter()
    datasets.fetch("mnist", tmp_path / "got", [name], timeout=1, max_bytes=1 << 20,
                   mirrors=[url + "dropped/", url + "endless/", url + "stalled/", url],
                   checksums=checksums)
    assert time.perf_counter() - began < 4.5                  # the stall was not sat out
    assert (tmp_path / "got" / name).read_bytes() == (root / name).read_bytes()
    err = capsys.readouterr().err
    assert "dropped/" + name + ": the connection dropped after 2,000 of 4,000 bytes" in err
    assert "endless/" + name + ": the body goes on past 1,048,576 bytes" in err
    assert "stalled/" + name + ": the transfer stalled for 1 s after 0 bytes" in err
    assert "Traceback" not in err


def test_download_with_a_wrong_checksum_writes_nothing(tmp_path, server, monkeypatch):
    root, url = server
    serve_mnist(root, url, monkeypatch, corrupt="t10k-images-idx3-ubyte.gz")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="MD5 .*expected"):
        datasets.load_mnist(cache, download=True)
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists()


def test_download_cifar10_archive(tmp_path, server, monkeypatch):
    root, url = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for i, name in enumerate(datasets.CIFAR10_FILES + ["readme.html"]):
            data = cifar_batch(2, i)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (root / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setitem(datasets.RESOURCES, "cifar-10", (
        "cifar-10-batches-bin", [url],
        {"cifar-10-binary.tar.gz": hashlib.md5(buffer.getvalue()).hexdigest()}))
    (x, _), (xt, _) = datasets.load_cifar10(tmp_path / "data", download=True)
    assert (len(x), len(xt)) == (10, 2)
    assert not (tmp_path / "data" / "readme.html").exists()


def test_the_cli_downloads_past_a_forbidden_and_a_tampered_mirror(tmp_path, server, monkeypatch,
                                                                   capsys):
    root, url = server
    write_mnist(root / "good", n_train=20, n_test=10)
    checksums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (root / "good").iterdir()}
    (root / "tampered").mkdir()
    for name in checksums:
        (root / "tampered" / name).write_bytes(b"tampered")
    monkeypatch.setitem(datasets.RESOURCES, "mnist",
                        ("mnist", [url + "forbidden/", url + "tampered/", url + "good/"], checksums))
    monkeypatch.setenv("NPDISTILL_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["train", "--epochs", "1", "--quiet"]) == 2              # no data, no --download
    assert "--download" in capsys.readouterr().err
    assert main(["train", "--download", "--epochs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("HTTP Error 403" in line and line.endswith("trying the next mirror")
               for line in err) == 4       # not "403" alone: an MD5 line's digests may hold it
    assert sum("MD5" in line and line.endswith("trying the next mirror") for line in err) == 4
    assert sum(line.endswith("MD5 verified") for line in err) == 4
    assert main(["train", "--epochs", "1", "--quiet"]) == 0               # found in the cache now
    assert "downloading" not in capsys.readouterr().err


def _served_file(root, name="blob.bin", size=200_000):
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (root / name).write_bytes(data)
    return data, {name: hashlib.md5(data).hexdigest()}


def _parts(folder):
    return sorted(p.name for p in folder.glob(".*.part"))


def test_an_interrupted_download_continues_where_it_stopped(tmp_path, server):
    root, url = server
    data, checksums = _served_file(root)
    got = tmp_path / "got"
    with pytest.raises(ValueError, match="dropped after 100,000 of 200,000 bytes"):
        datasets.fetch("mnist", got, ["blob.bin"], mirrors=[url + "cut/"], checksums=checksums)
    assert not (got / "blob.bin").exists()                       # never under its name
    (part,) = got.glob(".blob.bin.*.part")
    assert part.stat().st_size == 100_000
    datasets.fetch("mnist", got, ["blob.bin"], mirrors=[url + "cut/"], checksums=checksums)
    assert Handler.ranges == [None, "bytes=100000-"]           # continued, not restarted
    assert (got / "blob.bin").read_bytes() == data and _parts(got) == []


def test_a_part_the_server_cannot_continue_starts_again_and_a_bad_one_is_dropped(tmp_path,
                                                                                server):
    root, url = server
    data, checksums = _served_file(root)
    got = tmp_path / "got"
    got.mkdir()
    plain = url + "blob.bin"                    # SimpleHTTPRequestHandler ignores Range
    part_file(got / "blob.bin", plain).write_bytes(data[:5000])
    datasets.fetch("mnist", got, ["blob.bin"], mirrors=[url], checksums=checksums)
    assert (got / "blob.bin").read_bytes() == data and _parts(got) == []
    (got / "blob.bin").unlink()
    part_file(got / "blob.bin", url + "ranged/blob.bin").write_bytes(b"x" * 5000)  # damaged
    with pytest.raises(ValueError, match="MD5 .*expected"):
        datasets.fetch("mnist", got, ["blob.bin"], mirrors=[url + "ranged/"],
                       checksums=checksums)
    assert Handler.ranges == ["bytes=5000-"] and _parts(got) == []
    assert not (got / "blob.bin").exists()
    datasets.fetch("mnist", got, ["blob.bin"], mirrors=[url + "ranged/"], checksums=checksums)
    assert (got / "blob.bin").read_bytes() == data and Handler.ranges[-1] is None


def test_a_download_reports_its_progress_in_kilobytes(tmp_path, server):
    root, url = server
    data, checksums = _served_file(root, size=3_500_000)
    events = []
    datasets.fetch("mnist", tmp_path, ["blob.bin"], mirrors=[url], checksums=checksums,
                   progress=events.append)
    assert events and {e.unit for e in events} == {"kB"} and events[-1].total == 3500
    assert events[-1].done == 3500 and [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].stage == "download blob.bin"


def test_the_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("NPDISTILL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_roots() == [tmp_path / "xdg" / "npdistill"]
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.data_roots() == [tmp_path / "home" / ".cache" / "npdistill"]
