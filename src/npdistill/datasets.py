"""MNIST / Fashion-MNIST / EMNIST (IDX files, gz or raw) and CIFAR-10 (binary batches).

Images come back float32 NCHW in [0, 1], labels int64. Where the files live:
the ``path`` argument (the folder holding the files, or a data root holding
``mnist/``, ``fashion-mnist/``, ``cifar-10-batches-bin/``), else the
``NPDISTILL_DATA`` root, then the cache (``$XDG_CACHE_HOME/npdistill``, by default
``~/.cache/npdistill``). ``download=True`` streams missing files from the canonical
mirrors into the first of these folders, with progress, and verifies their published
MD5 checksums (none of these data sets publishes a SHA-256) before naming them.

Counts are read from the file headers, never assumed: the MNIST training split
on the project's machines holds 22,699 images, not 60,000.
"""
from __future__ import annotations

import gzip
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ._download import TransferFailed, download, remove_parts
from ._files import replacing
from .typing import Images, PathArg, ProgressArg

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
    # NIST publishes no checksum of its own; this MD5 is the one torchvision and others
    # verify the archive against
    "emnist": ("emnist", ["https://biometrics.nist.gov/cs_links/EMNIST/"], {
        "gzip.zip": "58c8d27c78d21e728a6bc7b3cc06412e"}),
}
CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


# -- locating files ----------------------------------------------------------
def data_roots() -> list[Path]:
    """Where data sets are looked for without a path: $NPDISTILL_DATA (when set), then
    the cache, $XDG_CACHE_HOME/npdistill (~/.cache/npdistill where it is not set). The
    first is where a download goes."""
    roots = [Path(os.environ["NPDISTILL_DATA"])] if os.environ.get("NPDISTILL_DATA") else []
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return roots + [cache / "npdistill"]


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


def _idx_split(folder, prefix, labels_in=range(10), transposed=False):
    """(x, y) of one split's IDX files: labels checked to lie in ``labels_in`` (a range);
    ``transposed``: the images are stored column by column (EMNIST), returned upright."""
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
    low, high = labels_in.start, labels_in.stop - 1
    if labels.size and (labels.min() < low or labels.max() > high):
        raise ValueError(f"{labels_path}: labels must lie in {low}..{high}, got values in "
                         f"{labels.min()}..{labels.max()}")
    if transposed:
        images = images.transpose(0, 2, 1)
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


# -- EMNIST ------------------------------------------------------------------
EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")


def emnist_files(split: str = "balanced") -> list[str]:
    """The files of one EMNIST split, as NIST names them inside its archive."""
    if split not in EMNIST_SPLITS:
        raise ValueError(f"split must be one of {list(EMNIST_SPLITS)}, got {split!r}")
    return [f"emnist-{split}-{part}-{kind}-ubyte.gz" for part in ("train", "test")
            for kind in ("images-idx3", "labels-idx1")] + [f"emnist-{split}-mapping.txt"]


def _emnist_folder(path, split, download):
    """The folder holding the split's files, downloaded (and extracted) if asked."""
    wanted = emnist_files(split)
    folders = _folders("emnist", path, wanted)
    folder = folders[0]
    missing = [f for f in wanted if not (folder / f).is_file()]
    if missing:
        (archive,) = RESOURCES["emnist"][2]
        if not (folder / archive).is_file():
            if not download:
                raise DataNotFound("emnist", folders, missing)
            fetch("emnist", folder, [archive])
        _extract(folder / archive, folder, missing)   # the archive stays: other splits
    return folder


def _read_mapping(path):
    """The (class, character) rows of an EMNIST mapping file: "class code [code...]"."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not all(f.isdigit() for f in fields):
            raise ValueError(f"{path}, line {number}: expected 'class code' (integers), got "
                             f"{line!r}")
        rows.append((int(fields[0]), "".join(dict.fromkeys(chr(int(f)) for f in fields[1:]))))
    classes = [c for c, _ in rows]
    if not rows or classes != sorted(set(classes)):
        raise ValueError(f"{path}: the classes must be listed once each, in increasing "
                         f"order, got {classes[:10]}{' ...' if len(classes) > 10 else ''}")
    return rows


def emnist_classes(path: PathArg | None = None, split: str = "balanced",
                   download: bool = False) -> list[str]:
    """The character of each class of ``load_emnist``'s labels (index = label), from the
    split's mapping file: "0".."9", "A".."Z", "a", "b", ... for balanced; "Aa".."Zz" for
    letters, whose classes hold both cases."""
    folder = _emnist_folder(path, split, download)
    return [character for _, character in _read_mapping(folder / emnist_files(split)[-1])]


def load_emnist(path: PathArg | None = None, split: str = "balanced",
                download: bool = False) -> Split:
    """EMNIST (Cohen et al., 2017), one split: balanced (47 classes, 112,800 training and
    18,800 test images), byclass, bymerge, digits, letters or mnist; same layout as
    load_mnist, the images turned upright (NIST stores them transposed).

    Labels are 0..K-1 in the order of the split's mapping file (letters' 1..26 become
    0..25); ``emnist_classes`` gives each one's character. The files are looked for as
    load_mnist's, under ``emnist/``; ``download=True`` streams NIST's archive (562 MB,
    kept in that folder for the other splits) and extracts the split's files.
    """
    folder = _emnist_folder(path, split, download)
    codes = np.array([c for c, _ in _read_mapping(folder / emnist_files(split)[-1])])
    labels_in = range(int(codes[0]), int(codes[-1]) + 1)
    if len(codes) != len(labels_in):
        raise ValueError(f"{folder / emnist_files(split)[-1]}: the classes must be "
                         f"consecutive, got {codes.tolist()}")
    (x, y), (x_test, y_test) = (_idx_split(folder, f"emnist-{split}-{part}", labels_in,
                                           transposed=True) for part in ("train", "test"))
    return (x, y - labels_in.start), (x_test, y_test - labels_in.start)


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
        (archive,) = RESOURCES["cifar-10"][2]
        fetch("cifar-10", folder, [archive])
        _extract(folder / archive, folder, CIFAR10_FILES)
        (folder / archive).unlink()                   # the six batches are all it holds
    train = [_read_cifar_batch(folder / f) for f in CIFAR10_FILES[:-1]]
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_FILES[-1])
    return ((np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
            (x_test, y_test))


# -- downloading ---------------------------------------------------------------
# The largest file of RESOURCES is EMNIST's archive (562 MB): a body past this is not one
# of them, and an endless one must not fill the disk.
MAX_DOWNLOAD_BYTES = 1 << 30


def fetch(name: str, folder: PathArg, files: Sequence[str], mirrors: Sequence[str] | None = None,
          checksums: Mapping[str, str] | None = None, timeout: float = 60,
          max_bytes: int = MAX_DOWNLOAD_BYTES, progress: ProgressArg = True) -> None:
    """Download ``files`` of data set ``name`` into ``folder``, verifying their MD5.

    Each file streams to disk with a progress line (``progress``, as everywhere) and an
    incremental checksum; it gets its final name only once verified. Tries each mirror in
    turn, the one known to serve the files first; a mirror that fails (HTTP 403,
    unreachable, a dropped or stalled transfer -- ``timeout`` seconds without a byte --, a
    body longer than ``max_bytes``, a wrong checksum) costs a one-line note on stderr and
    the next is tried. A transfer cut short leaves a part file that the next call
    continues (an HTTP Range request) where that server allows. ``mirrors`` /
    ``checksums`` default to the canonical ones in RESOURCES.
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
                size = download(url, folder / filename, checksums[filename], timeout=timeout,
                                max_bytes=max_bytes, progress=progress)
            except (urllib.error.URLError, OSError, http.client.HTTPException,
                    TransferFailed) as exc:
                errors.append(f"{url}: {exc}")
                print(f"npdistill: {errors[-1]}{then}", file=sys.stderr)
                continue
            remove_parts(folder / filename)           # what other mirrors left
            print(f"npdistill: {filename}: {size / 1e6:.1f} MB, MD5 verified",
                  file=sys.stderr)
            break
        else:
            raise ValueError(f"could not download {filename} of {name}:\n  " + "\n  ".join(errors))


def _extract(archive: Path, folder: Path, wanted: Sequence[str]) -> None:
    """Write the members of ``archive`` (.tar.gz or .zip) named ``wanted`` (by their base
    names, wherever they sit in it), and nothing else, into ``folder``, each atomically."""
    if archive.name.endswith(".zip"):
        opened: Any = zipfile.ZipFile(archive)
        members = {Path(m.filename).name: m for m in opened.infolist() if not m.is_dir()}
        open_member = opened.open
    else:
        opened = tarfile.open(archive, mode="r:gz")
        members = {Path(m.name).name: m for m in opened.getmembers() if m.isfile()}
        open_member = opened.extractfile
    with opened:
        for filename in wanted:
            if filename not in members:
                raise ValueError(f"{archive}: the archive has no {filename}")
            with replacing(folder / filename, "extracted file") as tmp, \
                    open_member(members[filename]) as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
