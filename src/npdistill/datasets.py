"""MNIST / Fashion-MNIST (IDX files, gz or raw) and CIFAR-10 (binary batches).

Images come back float32 NCHW in [0, 1], labels int64. Where the files live:
the ``path`` argument (the folder holding the files, or a data root holding
``mnist/``, ``fashion-mnist/``, ``cifar-10-batches-bin/``), else the
``NPDISTILL_DATA`` root, then ``~/.cache/npdistill``. ``download=True`` fetches
missing files from the canonical mirrors into the first of these folders and
verifies their published MD5 checksums.

Counts are read from the file headers, never assumed: the MNIST training split
on the project's machines holds 22,699 images, not 60,000.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ._files import write_bytes
from .typing import Images, PathArg

# what every loader returns: ((x_train, y_train), (x_test, y_test))
Split = tuple[tuple[Images, npt.NDArray[np.int64]], tuple[Images, npt.NDArray[np.int64]]]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

# name -> (sub-folder, mirrors, {file: md5}); the MD5s are the ones the data sets publish.
RESOURCES = {
    "mnist": ("mnist", ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                        "http://yann.lecun.com/exdb/mnist/"], {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion-mnist": ("fashion-mnist", [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"], {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar-10": ("cifar-10-batches-bin", ["https://www.cs.toronto.edu/~kriz/"], {
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}),
}
CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


# -- locating files ----------------------------------------------------------
def data_roots() -> list[Path]:
    """Where data sets are looked for without a path: $NPDISTILL_DATA (when set), then
    ~/.cache/npdistill. The first is where a download goes."""
    roots = [Path(os.environ["NPDISTILL_DATA"])] if os.environ.get("NPDISTILL_DATA") else []
    return roots + [Path.home() / ".cache" / "npdistill"]


def _folders(name, path, wanted):
    """The folders to look for data set ``name`` in, the one to read (or download into) first."""
    sub = RESOURCES[name][0]
    if path is None:
        folders = [root / sub for root in data_roots()]
        found = [f for f in folders if all(_find(f, file) for file in wanted)]
        return found[:1] or folders
    path = Path(path)
    if not all(_find(path, f) for f in wanted) and (path / sub).is_dir():
        return [path / sub]          # ``path`` is a data root
    return [path]


def _find(folder, name):
    """The file ``name`` (.gz) or its uncompressed twin in ``folder``, or None."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


# -- IDX ---------------------------------------------------------------------
def read_idx(path: PathArg) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into an array of the shape its header declares."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the file (truncated or corrupted gzip?): {exc}") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated: {len(raw)} bytes, not even an IDX header")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: wrong magic number 0x{raw[:4].hex()}: not an IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {what}: the header declares shape {shape} "
                         f"({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_split(folder, prefix):
    images_path = _find(folder, f"{prefix}-images-idx3-ubyte.gz")
    labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte.gz")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected (N, H, W) uint8 images, got "
                         f"{images.shape} {images.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected (N,) labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                         f"{len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{labels_path}: labels must lie in 0..9, got values in "
                         f"{labels.min()}..{labels.max()}")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None]
    return x, labels.astype(np.int64)


class DataNotFound(FileNotFoundError):
    """A data set's files are not where they were looked for (and no download was asked for).

    ``name``, ``folder`` and ``missing`` let a front end (the command line) say it in its
    own words; the message says it in Python's.
    """

    def __init__(self, name, folders, missing):
        self.name, self.folders, self.missing = name, [Path(f) for f in folders], list(missing)
        super().__init__(f"{name}: {', '.join(self.missing)} not found in "
                         f"{' nor in '.join(map(str, self.folders))}. Pass path=, set "
                         f"NPDISTILL_DATA to a folder holding {RESOURCES[name][0]}/, "
                         f"or use download=True")

    @property
    def folder(self):
        """Where a download would go: the first folder looked in."""
        return self.folders[0]


def _load_idx_dataset(name, path, download):
    files = list(RESOURCES[name][2])
    folders = _folders(name, path, files)
    folder = folders[0]
    missing = [f for f in files if _find(folder, f) is None]
    if missing:
        if not download:
            raise DataNotFound(name, folders, missing)
        fetch(name, folder, missing)
    train, test = _idx_split(folder, "train"), _idx_split(folder, "t10k")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise ValueError(f"{folder}: the training images are {train[0].shape[2:]} but the test "
                         f"images {test[0].shape[2:]}: the files come from different data sets")
    return train, test


def load_mnist(path: PathArg | None = None, download: bool = False) -> Split:
    """MNIST: ((x_train, y_train), (x_test, y_test)), x float32 (N, 1, 28, 28) in [0, 1], y int64."""
    return _load_idx_dataset("mnist", path, download)


def load_fashion_mnist(path: PathArg | None = None, download: bool = False) -> Split:
    """Fashion-MNIST, same layout as load_mnist."""
    return _load_idx_dataset("fashion-mnist", path, download)


# -- CIFAR-10 ------------------------------------------------------------------
def _read_cifar_batch(path):
    raw = np.fromfile(path, dtype=np.uint8)
    record = 1 + 3 * 32 * 32
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte "
                         f"CIFAR-10 records (truncated?)")
    rows = raw.reshape(-1, record)
    labels = rows[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: labels must lie in 0..9, got a {labels.max()} (not CIFAR-10?)")
    x = (rows[:, 1:].astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
    return x, labels


def load_cifar10(path: PathArg | None = None, download: bool = False) -> Split:
    """CIFAR-10 from its binary batches: x float32 (N, 3, 32, 32) in [0, 1], y int64."""
    folders = _folders("cifar-10", path, CIFAR10_FILES)
    folder = folders[0]
    missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
    if missing:
        if not download:
            raise DataNotFound("cifar-10", folders, missing)
        fetch("cifar-10", folder, list(RESOURCES["cifar-10"][2]))
    train = [_read_cifar_batch(folder / f) for f in CIFAR10_FILES[:-1]]
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_FILES[-1])
    return ((np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            (x_test, y_test))


# -- downloading ---------------------------------------------------------------
def _md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# No file of RESOURCES is larger (CIFAR-10's archive: 163 MB): a body past this is not one
# of them, and an endless one must not fill the memory.
MAX_DOWNLOAD_BYTES = 256 << 20


class _TransferFailed(Exception):
    """A transfer that cannot give the file: cut short, too long, or stalled."""


def _read_body(response, limit, timeout):
    """The whole body of ``response``, read in 1 MB pieces: at most ``limit`` bytes (and no
    more than its Content-Length says), within ``timeout`` seconds a piece, and all of it,
    or a _TransferFailed saying what went wrong."""
    declared = response.headers.get("Content-Length")
    declared = int(declared) if declared and declared.isdigit() else None
    if declared is not None and declared > limit:
        raise _TransferFailed(f"the server announces {declared:,} bytes, more than the "
                              f"{limit:,} any of these files has")
    pieces, got = [], 0
    while True:
        try:
            piece = response.read1(1 << 20)
        except http.client.IncompleteRead as exc:
            raise _TransferFailed(f"the connection dropped after {got + len(exc.partial):,} "
                                  f"bytes") from None
        except TimeoutError:
            raise _TransferFailed(f"the transfer stalled for {timeout} s after {got:,} "
                                  f"bytes") from None
        if not piece:
            break
        got += len(piece)
        if got > limit:
            raise _TransferFailed(f"the body goes on past {limit:,} bytes")
        pieces.append(piece)
    if declared is not None and got != declared:
        raise _TransferFailed(f"the connection dropped after {got:,} of {declared:,} bytes")
    return b"".join(pieces)


def fetch(name: str, folder: PathArg, files: Sequence[str], mirrors: Sequence[str] | None = None,
          checksums: Mapping[str, str] | None = None, timeout: float = 60,
          max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
    """Download ``files`` of data set ``name`` into ``folder``, verifying their MD5.

    Tries each mirror in turn, the one known to serve the files first; a mirror that
    fails (HTTP 403, unreachable, a dropped or stalled transfer -- ``timeout`` seconds
    without a byte --, a body longer than ``max_bytes``, a wrong checksum) costs a one-line
    note on stderr and the next is tried. A file whose checksum differs is never written.
    ``mirrors`` / ``checksums`` default to the canonical ones in RESOURCES.
    """
    _, default_mirrors, default_checksums = RESOURCES[name]
    mirrors = default_mirrors if mirrors is None else mirrors
    checksums = default_checksums if checksums is None else checksums
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for filename in files:
        errors = []
        for i, mirror in enumerate(mirrors):
            url = mirror.rstrip("/") + "/" + filename
            then = "; trying the next mirror" if i + 1 < len(mirrors) else ""
            print(f"npdistill: downloading {url}", file=sys.stderr, flush=True)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    data = _read_body(response, max_bytes, timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException,
                    _TransferFailed) as exc:
                errors.append(f"{url}: {exc}")
                print(f"npdistill: {errors[-1]}{then}", file=sys.stderr)
                continue
            digest = _md5(data)
            if digest != checksums[filename]:
                errors.append(f"{url}: MD5 {digest}, expected {checksums[filename]}")
                print(f"npdistill: {errors[-1]}{then}", file=sys.stderr)
                continue
            print(f"npdistill: {filename}: {len(data) / 1e6:.1f} MB, MD5 verified",
                  file=sys.stderr)
            if filename.endswith(".tar.gz"):
                _extract_cifar(data, folder, url)
            else:
                write_bytes(folder / filename, data, "downloaded file")
            break
        else:
            raise ValueError(f"could not download {filename} of {name}:\n  " + "\n  ".join(errors))


def _extract_cifar(data, folder, url):
    """Write the six binary batches of the CIFAR-10 archive, and nothing else, into folder."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        for filename in CIFAR10_FILES:
            if filename not in members:
                raise ValueError(f"{url}: archive has no {filename}")
            write_bytes(folder / filename, archive.extractfile(members[filename]).read(),
                        "downloaded file")
