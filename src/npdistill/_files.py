"""Atomic file writes: a reader sees the old file or the new one, never a part of one.

Every file the library writes (models, checkpoints, cached measures, downloads,
results, figures) goes through ``replacing``: the content is written to a temporary
file with a name unique to this write (process id and a random token) in the target's
folder, flushed to disk, then renamed over the target with ``os.replace`` — atomic on
POSIX and Windows. Two processes saving to one path both succeed (the last rename
wins); neither can trip over the other's temporary file.
"""
import contextlib
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary Path beside ``path`` (same suffix) to write; when the block
    ends without an error it is synced and renamed to ``path``, else it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))
