"""Atomic file writes: a reader sees the old file or the new one, never a part of one.

Every file the library writes (models, checkpoints, cached measures, downloads,
results, figures) goes through ``replacing``: the content is written to a temporary
file with a name unique to this write (process id and a random token) in the target's
folder, flushed to disk, then renamed over the target with ``os.replace`` — atomic on
POSIX and Windows. Two processes saving to one path both succeed (the last rename
wins); neither can trip over the other's temporary file. An OS error while writing (a
full disk, a file-size limit) is raised as a ``WriteError`` naming the file and what it
is; the previous file at that path is left as it was. A process killed mid-write leaves
its temporary behind: ``remove_stale_temporaries`` removes those whose writer is gone.
"""
import contextlib
import os
import re
import uuid
from pathlib import Path

# .<stem>.<pid>-<token>.tmp<suffix>: the temporaries ``replacing`` names
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{12}\.tmp(\.[^.]*)?$")


class WriteError(OSError):
    """An OS error while writing one of the library's files: says which file and what it
    is (``errno`` is the original's)."""

    def __str__(self):
        return self.strerror


@contextlib.contextmanager
def replacing(path, what="file"):
    """Yield a temporary Path beside ``path`` (same suffix) to write; when the block
    ends without an error it is synced and renamed to ``path``, else it is removed. An
    OSError on the way becomes a WriteError: "could not write <what> <path>: <reason>"."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            reason = exc.strerror or str(exc)
            raise WriteError(exc.errno, f"could not write {what} {path}: "
                                        f"{reason[:1].lower()}{reason[1:]}") from exc
        raise


def write_bytes(path, data, what="file"):
    """Write ``data`` to ``path`` atomically (``what``: its kind, for an error)."""
    with replacing(path, what) as tmp:
        tmp.write_bytes(data)


def write_text(path, text, what="file"):
    """Write ``text`` (UTF-8) to ``path`` atomically (``what``: its kind, for an error)."""
    write_bytes(path, text.encode("utf-8"), what)


def _alive(pid):
    """Whether process ``pid`` may still be running (True where it cannot be told)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                # another user's process: alive
        return True
    return True


def removed_note(removed, folder):
    """The line a run prints after ``remove_stale_temporaries`` removed ``removed``."""
    return f"removed {len(removed)} temporary file(s) that a killed run left in {folder}"


def remove_stale_temporaries(folder):
    """Remove the temporaries ``replacing`` left in ``folder`` (not below it) whose
    writing process is gone (killed mid-write); a live process's are never touched.
    Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and entry.is_file() and int(match["pid"]) != os.getpid() \
                and not _alive(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed
