"""One run per output directory: an advisory lock the operating system releases when the run dies.

:func:`output_lock` takes ``fcntl.flock`` on ``<output_dir>/.dcbulk.lock`` and writes this
run's host, pid and start time into it. A second run on the same directory is refused at once
with :class:`~dcbulk.errors.OutputLockedError` naming the holder; the first goes on untouched.
A lock left by a killed run (SIGKILL, node crash) blocks nobody: the kernel drops ``flock``
locks with the last descriptor, so the file's stale content is only a note. The lock file is
never deleted (deleting lock files races with a run that has just opened it).

Python's standard library has no cross-process directory lock, and the packages that do
(filelock, portalocker) wrap the same ``flock`` call; this module adds the holder's identity
and reentrancy within one process (the CLI holds the lock across its preview and the run).

File systems without working locks: on Linux NFSv4 and NFSv3 with ``lockd``, ``flock`` is
emulated by byte-range locks and works across hosts. Where the call fails (``ENOLCK``,
``EOPNOTSUPP``, e.g. some FUSE or SMB mounts), dcbulk falls back to the note: it refuses when
the note names a live process on this host, and otherwise warns once that concurrent runs from
other hosts are not prevented, then proceeds. NFS mounted with ``nolock`` makes locks local to
each client, so runs on two hosts are not kept apart there: don't start them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from os import PathLike

from ..errors import LinkRefusedError, OutputDirError, OutputLockedError
from ..nofollow import open_nofollow

__all__ = ["LOCK_NAME", "output_lock", "lock_holder"]

logger = logging.getLogger(__name__)

#: name of the lock file inside the output directory (hidden: never taken as a source)
LOCK_NAME = ".dcbulk.lock"

_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[str, list] = {}  # realpath -> [fd, depth]
_guard = threading.Lock()


def lock_holder(output_dir: str | PathLike) -> str:
    """The note in the lock file (``host H pid P since T``), or ``""``."""
    try:
        fd = open_nofollow(os.path.join(os.fspath(output_dir), LOCK_NAME), os.O_RDONLY)
    except (OSError, LinkRefusedError):
        return ""
    with open(fd, encoding="utf-8", errors="replace") as fh:
        return fh.read(4096).strip()


def _note() -> str:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"host {socket.gethostname()} pid {os.getpid()} since {started}"


def _refuse(output_dir: str, holder: str) -> OutputLockedError:
    return OutputLockedError(
        f"{output_dir}: another dcbulk run is using this output directory "
        f"({holder or 'holder unknown'}); wait for it to finish or stop it")


def _alive_here(holder: str) -> bool:
    parts = holder.split()
    try:
        host, pid = parts[parts.index("host") + 1], int(parts[parts.index("pid") + 1])
    except (ValueError, IndexError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire(real: str, display: str) -> int:
    path = os.path.join(real, LOCK_NAME)
    try:
        os.makedirs(real, exist_ok=True)
        fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, single_link=True)  # it is truncated
    except OSError as exc:
        raise OutputDirError(f"{display}: cannot create or write the output directory "
                             f"({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refuse(display, lock_holder(real)) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            holder = lock_holder(real)
            if _alive_here(holder):
                raise _refuse(display, holder) from None
            logger.warning("%s: the file system does not support locks (%s); concurrent runs "
                           "from other hosts are not prevented", display, exc.strerror)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_note() + "\n").encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def output_lock(output_dir: str | PathLike) -> Iterator[str]:
    """Hold the output directory's lock (creating the directory) for the ``with`` block.

    Reentrant within a process. Yields the lock file's path.

    Raises
    ------
    OutputLockedError
        When another live process holds it; the message names its host and pid.
    LinkRefusedError
        When the lock file is a symbolic link (or not a regular file): never written through.
    OutputDirError
        When the directory or the lock file cannot be created (e.g. a read-only parent).
    """
    display = os.path.abspath(os.fspath(output_dir))
    real = os.path.realpath(display)
    with _guard:
        if real in _held:
            _held[real][1] += 1
        else:
            _held[real] = [_acquire(real, display), 1]
    try:
        yield os.path.join(real, LOCK_NAME)
    finally:
        with _guard:
            entry = _held[real]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[real]
                try:
                    os.ftruncate(entry[0], 0)  # the note is about a live run only
                except OSError:
                    pass
                os.close(entry[0])  # releases the flock
