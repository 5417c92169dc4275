"""Streamed downloads: a file goes to disk a piece at a time, never whole into memory.

``download(url, target, md5)`` writes the body to a part file beside ``target``
(``.<name>.<url hash>.part``: one per source, so a part is only ever continued from the
server that began it), hashing it as it arrives, with a progress line (bytes, rate, ETA).
A part left by an interrupted transfer is continued with an HTTP Range request where the
server honours it (206), and started again where it does not (200). Only a file whose MD5
matches the published one is renamed to ``target``; one that does not is deleted, so a
partial or wrong file never sits under the final name.
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

from .progress import Progress
from .typing import ProgressArg

PIECE = 1 << 20


class TransferFailed(Exception):
    """A transfer that did not give the file: cut short, too long, stalled or corrupted."""


class _Overlong(TransferFailed):
    """A body past the most any of the files has: what it wrote is not worth continuing."""


def part_file(target: Path, url: str) -> Path:
    """The part file of ``target`` downloaded from ``url``."""
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    return target.with_name(f".{target.name}.{tag}.part")


def remove_parts(target: Path) -> None:
    """Remove every part file of ``target`` (from any source)."""
    for part in target.parent.glob(f".{target.name}.*.part"):
        part.unlink(missing_ok=True)


def _md5_of(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(PIECE), b""):
            digest.update(piece)
    return digest


def download(url: str, target: Path, md5: str, *, timeout: float = 60,
             max_bytes: int | None = None, progress: ProgressArg = None) -> int:
    """Stream ``url`` to ``target`` (module docstring), verifying its ``md5``; returns the
    file's size. Raises TransferFailed for a dropped, stalled (``timeout`` seconds without
    a byte), overlong (past ``max_bytes``) or corrupted transfer, and the urllib / OS
    errors of an unreachable server; an interrupted transfer keeps its part to continue."""
    part = part_file(target, url)
    have = part.stat().st_size if part.is_file() else 0
    digest = _md5_of(part) if have else hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or digest.hexdigest() != md5:    # 416: nothing past the part
            if exc.code == 416:
                part.unlink()
            raise
        os.replace(part, target)                            # the part was the whole file
        return have
    with response:
        resumed = have > 0 and response.status == 206 and \
            response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        if have and not resumed:                            # the server sent it all again
            have, digest = 0, hashlib.md5(usedforsecurity=False)
        declared = response.headers.get("Content-Length")
        declared = int(declared) if declared and declared.isdigit() else None
        total = None if declared is None else have + declared
        if max_bytes is not None and total is not None and total > max_bytes:
            raise TransferFailed(f"the server announces {total:,} bytes, more than the "
                                 f"{max_bytes:,} any of these files has")
        shown = Progress(progress if total else False, f"download {target.name}",
                         math.ceil((total or 0) / 1000), "kB")
        try:
            got = _stream(response, part, "ab" if resumed else "wb", digest, have,
                          max_bytes, timeout, shown)
        except _Overlong:
            part.unlink()
            raise
    if declared is not None and got != declared:
        raise TransferFailed(f"the connection dropped after {have + got:,} of {total:,} "
                             f"bytes" + (f" (continued from {have:,})" if have else ""))
    if digest.hexdigest() != md5:
        part.unlink()
        raise TransferFailed(f"MD5 {digest.hexdigest()}, expected {md5}")
    os.replace(part, target)
    return have + got


def _stream(response, part, mode, digest, have, max_bytes, timeout, shown):
    """Append the body to ``part`` as it comes; the bytes it held."""
    got = 0
    with open(part, mode) as out:
        try:
            while True:
                try:
                    piece = response.read1(PIECE)
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
                    digest.update(exc.partial)
                    raise TransferFailed(f"the connection dropped after "
                                         f"{have + got + len(exc.partial):,} bytes") from None
                except TimeoutError:
                    raise TransferFailed(f"the transfer stalled for {timeout} s after "
                                         f"{have + got:,} bytes") from None
                if not piece:
                    return got
                out.write(piece)
                digest.update(piece)
                got += len(piece)
                if max_bytes is not None and have + got > max_bytes:
                    raise _Overlong(f"the body goes on past {max_bytes:,} bytes")
                shown.update(math.ceil((have + got) / 1000))
        finally:
            out.flush()
            os.fsync(out.fileno())
