"""Temporary ``<name>.<hex>.partial`` files: naming them, committing them durably and
atomically, and finding or removing those left behind by killed runs.

A file task with a time limit commits only before its deadline (:func:`commit_deadline`):
a task abandoned by the client when the limit ran out (a worker thread cannot be killed)
can finish later, but its output is never renamed into place.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

from .errors import FileTimeoutError, OutputExistsError

__all__ = ["clean_partials", "commit_deadline", "commit_file", "current_deadline",
           "fsync_path", "is_partial", "output_exists", "partial_path", "refuse_existing",
           "stale_partials", "write_atomic"]

#: the wall-clock time (``time.time()``) after which no output may be committed in this
#: context (a context variable: each task's thread has its own, no state is shared)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "dcbulk_commit_deadline", default=None)


@contextlib.contextmanager
def commit_deadline(deadline: float | None) -> Iterator[None]:
    """Within the block, :func:`commit_file` refuses to commit after ``deadline``
    (``time.time()`` seconds; None: no deadline)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The commit deadline of this context (to hand on to a writer task), or None."""
    return _DEADLINE.get()

logger = logging.getLogger(__name__)

#: bytes in a file name that Linux file systems allow (NAME_MAX)
NAME_MAX = 255

_PARTIAL_RE = re.compile(r"^.+\.(?:[0-9a-fA-F]{8,}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}"
                         r"-[0-9a-fA-F]{12})\.partial$")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.<hex>.partial``: fsync, ``os.replace``.

    The directory must exist. On OSError the temporary file is removed and the error
    re-raised; after the replace the directory is fsync'ed where the platform allows it.
    """
    tmp = partial_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "wb") as fh:
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
    fsync_path(os.path.dirname(path))


def output_exists(output: str | PathLike) -> bool:
    """Whether something (a file, a link, even a dangling one) has the output's name: the one
    "output exists" check of dcbulk (resume decisions, writers, the final rename)."""
    return os.path.lexists(output)


def _exists(output: str | PathLike) -> OutputExistsError:
    return OutputExistsError(f"{output}: exists already (use force/overwrite)")


def refuse_existing(output: str | PathLike, *, overwrite: bool) -> None:
    """Raise :class:`~dcbulk.errors.OutputExistsError` when ``output`` exists and may not
    be replaced (checked before any work; the final rename checks again, atomically)."""
    if not overwrite and output_exists(output):
        raise _exists(output)


def partial_path(output: str) -> str:
    """A unique temporary sibling of ``output`` that no ``*.rtdc`` glob matches (the name's
    head cut where the output's name leaves no room for the suffix in a file name)."""
    suffix = f".{uuid.uuid4().hex[:12]}.partial"
    head, name = os.path.split(output)
    raw = os.fsencode(name)
    if len(raw) + len(suffix) > NAME_MAX:  # a valid output name, too long with the suffix
        name = os.fsdecode(raw[:NAME_MAX - len(suffix)])
    return os.path.join(head, name + suffix)


def commit_file(partial: str, output: str, *, overwrite: bool, fsync: bool = True) -> None:
    """Move a finished file into place; never replace an existing output unless asked.

    With ``fsync`` the file's data reach the disk before it gets its final name, and the
    directory entry after, so a crash never leaves a name pointing at unwritten blocks.

    Raises
    ------
    OutputExistsError
        ``output`` exists and ``overwrite`` is False (the partial file is removed).
    FileTimeoutError
        The :func:`commit_deadline` has passed (the partial file is removed).
    """
    deadline = _DEADLINE.get()
    if deadline is not None and time.time() > deadline:
        os.unlink(partial)
        raise FileTimeoutError(f"{output}: not committed, the file's time limit ran out")
    if fsync:
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if overwrite:
        os.replace(partial, output)
    else:
        try:
            os.link(partial, output)
        except FileExistsError:
            os.unlink(partial)
            raise _exists(output) from None
        except OSError:  # filesystems without hard links
            if output_exists(output):
                os.unlink(partial)
                raise _exists(output) from None
            os.rename(partial, output)
        else:
            os.unlink(partial)
    if fsync:
        fsync_path(os.path.dirname(os.path.abspath(output)))


def fsync_path(path: str) -> None:
    """fsync a file or a directory (a rename in it) where the platform allows it; an error
    is ignored (some file systems refuse fsync on directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_partial(name: str) -> bool:
    """Whether a file name is a partial file's (``<name>.<hex>.partial``)."""
    return _PARTIAL_RE.match(name) is not None


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
                    elif is_partial(entry.name):
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
