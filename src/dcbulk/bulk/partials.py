"""Temporary ``<name>.<hex>.partial`` files: writing through one atomically, and finding or removing those left by killed runs."""
from __future__ import annotations

import logging
import os
import re
import uuid
from os import PathLike
from pathlib import Path

__all__ = ["clean_partials", "stale_partials", "write_atomic"]

logger = logging.getLogger(__name__)

_PARTIAL_RE = re.compile(r"^.+\.(?:[0-9a-fA-F]{8,}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}"
                         r"-[0-9a-fA-F]{12})\.partial$")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.<hex>.partial``: fsync, ``os.replace``.

    The directory must exist. On OSError the temporary file is removed and the error
    re-raised; after the replace the directory is fsync'ed where the platform allows it.
    """
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.partial"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(directory: str) -> None:
    """Make a rename durable where the platform allows fsync on directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stale_partials(output_dir: str | PathLike) -> list[Path]:
    """Leftover ``<name>.<hex>.partial`` files of killed runs below ``output_dir``, sorted."""
    found: list[Path] = []
    stack = [os.fspath(output_dir)]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif _PARTIAL_RE.match(entry.name):
                        found.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return sorted(found)


def clean_partials(output_dir: str | PathLike) -> list[Path]:
    """Delete the files :func:`stale_partials` finds; return those removed.

    Only call this when no other conversion writes into ``output_dir``.
    """
    removed = []
    for path in stale_partials(output_dir):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    if removed:
        logger.info("removed %d stale partial file(s) below %s", len(removed), output_dir)
    return removed
