"""The model file format: ``.npz`` archives of the parameters plus one JSON metadata entry
(architecture, dtype, training temperature and config, library version, the environment,
a sha256 of the parameters and the header), read back with ``allow_pickle=False``: a model
file never runs code when it is opened. Checkpoints and a reproduction's measures use the
same archives."""
import hashlib
import json
import os
import zipfile

import numpy as np

from .._files import replacing
from .._version import __version__

FORMAT = "npdistill-model"
FORMAT_VERSION = 2          # 2: the checksum covers the header too (1 still loads)
_READABLE_VERSIONS = (1, 2)
_META_KEY = "__metadata__"
# The metadata this library writes (architecture, metadata, environment) is a few kB; a
# header past this is not one of its files, and is refused before it is read.
MAX_HEADER_BYTES = 1 << 20


def archive_checksum(arrays, header=None):
    """sha256 of named arrays, independent of their order, and (format 2) of the JSON
    header written with them, so that an edited architecture or metadata is caught."""
    digest = hashlib.sha256()
    if header is not None:
        digest.update(json.dumps(header, sort_keys=True).encode())
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _plain(value, where):
    """``value`` with NumPy's scalars as Python numbers and tuples as lists: what JSON
    holds; a TypeError naming the entry (``where``) for anything else."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where} has a key {bad[0]!r}: a model file's keys are strings")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where} is of type {type(value).__name__}, which a model file cannot "
                    f"hold (numbers, strings, lists and dicts of them)")


def write_archive(path, arrays, header, what="model"):
    """Atomically write ``arrays`` and a JSON ``header`` (plus format, version, checksum).

    The checksum covers the arrays and the whole header. The file appears at ``path``
    complete or not at all, whoever else writes or reads it meanwhile. ``what``: the
    file's kind, named by an OS error (_files.WriteError).
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"model files end in .npz, got {path!r}")
    if any(key == _META_KEY for key in arrays):
        raise ValueError(f"{_META_KEY!r} is a reserved name")
    bad = [key for key, value in arrays.items()
           if value.dtype.kind in "fc" and not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"refusing to write {path}: {', '.join(sorted(bad))} hold NaN or "
                         f"infinite values (a diverged model?)")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "library_version": __version__, **header,
            "parameters": {k: {"shape": list(v.shape), "dtype": v.dtype.str}
                           for k, v in arrays.items()}}
    meta = json.loads(json.dumps(_plain(meta, "header")))   # what a reader will see
    meta["checksum"] = archive_checksum(arrays, meta)
    with replacing(path, what) as tmp:
        np.savez(tmp, **{_META_KEY: np.array(json.dumps(meta))}, **arrays)


def read_archive(path):
    """Read and verify an archive written by write_archive: (arrays, metadata).

    The header is parsed and checked first, then each stored array's own header
    against it, and only then are the arrays read: a file cannot make the reader
    allocate more than it holds. Format 1 files (checksum of the arrays only) load too.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (a .npy array, or a truncated file?)")
    try:
        _check_bounds(path)
        with np.load(path, allow_pickle=False) as archive:
            if _META_KEY not in archive.files:
                raise ValueError(f"{path}: no npdistill metadata: not an npdistill model file")
            meta = _header(archive[_META_KEY], path)
            _check_members(archive.zip, meta["parameters"], path)
            arrays = {key: archive[key] for key in archive.files if key != _META_KEY}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npz model file (truncated or corrupted?): "
                         f"{exc}") from exc
    header = {k: v for k, v in meta.items() if k != "checksum"}
    expected = archive_checksum(arrays, header if meta["format_version"] >= 2 else None)
    if expected != meta["checksum"]:
        raise ValueError(f"{path}: checksum mismatch: the file was modified or damaged")
    return arrays, meta


def _check_bounds(path):
    """Every member of the archive at ``path`` stored uncompressed, its sizes within the
    file's own and its .npy header declaring no more data than it holds (a forged size
    cannot make the reader allocate what the file does not hold, nor a compressed member
    inflate), the metadata within MAX_HEADER_BYTES: checked from the zip directory and the
    headers, before any data is read or allocated."""
    size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {name!r} is compressed; npdistill writes "
                                 f"(and reads) uncompressed archives only")
            if info.file_size != info.compress_size or \
                    info.header_offset + info.compress_size > size:
                raise ValueError(f"{path}: member {name!r} declares {info.file_size:,} bytes, "
                                 f"more than the {size:,}-byte file holds")
            if name == _META_KEY + ".npy" and info.file_size > MAX_HEADER_BYTES:
                raise ValueError(f"{path}: the metadata is {info.file_size:,} bytes; npdistill "
                                 f"writes at most {MAX_HEADER_BYTES:,}")
            shape, dtype = _npy_header(archive, name, path)
            if dtype.hasobject:
                raise ValueError(f"{path}: member {name!r} holds Python objects; npdistill's "
                                 f"files hold numbers and one JSON string")
            if dtype.itemsize * int(np.prod(shape)) > info.file_size:
                raise ValueError(f"{path}: member {name!r} declares more data than it holds")


def _npy_header(archive, name, path):
    """(shape, dtype) that member ``name``'s .npy header declares, read before its data."""
    with archive.open(name) as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
        except ValueError as exc:
            key = name.removesuffix(".npy")
            raise ValueError(f"{path}: array {key!r} has no valid .npy header: {exc}") from exc
    return shape, dtype


def _header(raw, path):
    """The JSON header, checked against the format's schema."""
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: the metadata entry is not a JSON string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: metadata is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ValueError(f"{path}: metadata is nested deeper than any npdistill writes") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} file (no format field {FORMAT!r})")
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(f"{path}: format version {version!r} "
                         + ("is newer than this npdistill reads: upgrade npdistill" if newer
                            else f"is unknown (this npdistill reads {_READABLE_VERSIONS})"))
    for key, kind in (("parameters", dict), ("checksum", str)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{path}: metadata field {key!r} must be a {kind.__name__}, got "
                             f"{type(meta.get(key)).__name__}")
    for key, entry in meta["parameters"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
                and isinstance(entry.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in entry["shape"])):
            raise ValueError(f"{path}: parameter {key!r} is listed as {entry!r}, not as "
                             f"{{'shape': [non-negative ints], 'dtype': str}}")
    if "metadata" in meta and not isinstance(meta["metadata"], dict):
        raise ValueError(f"{path}: metadata field 'metadata' must be a dict")
    return meta


def _check_members(archive, listed, path):
    """The stored arrays are the ones the header lists, with the listed shape and dtype
    (read from each array's own header, before its data)."""
    stored = {name.removesuffix(".npy"): name for name in archive.namelist()}
    stored.pop(_META_KEY, None)
    if set(stored) != set(listed):
        raise ValueError(f"{path}: the archive holds {sorted(stored)} but its metadata lists "
                         f"{sorted(listed)}")
    for key, name in stored.items():
        shape, dtype = _npy_header(archive, name, path)    # within its member: _check_bounds
        entry = listed[key]
        if list(shape) != entry["shape"] or dtype.str != entry["dtype"]:
            raise ValueError(f"{path}: array {key!r} is stored as {shape} {dtype.str} but listed "
                             f"as {tuple(entry['shape'])} {entry['dtype']}")
