"""Writing into output directories without following symbolic links.

dcbulk may run as root over directories other people can write to: a ``.dcbulk.lock``,
``dcbulk-manifest.jsonl``, ``dcbulk-logs`` or report that is a symbolic link (or a hard link,
a FIFO, a device) would make a run truncate or append to a file elsewhere on the machine.
:func:`open_nofollow` opens a file with ``O_NOFOLLOW`` and accepts only a regular file with
one name; :func:`make_dir` creates a directory and refuses one that is a link;
:func:`check_parents` refuses an output whose directories below the output directory are
links. Each refusal is a :class:`~dcbulk.errors.LinkRefusedError` naming the path.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from os import PathLike

from .errors import LinkRefusedError

__all__ = ["check_parents", "make_dir", "open_nofollow", "refuse_link", "refuse_unless_file",
           "replace_nofollow", "write_nofollow"]


def _refuse(path: str, what: str) -> LinkRefusedError:
    return LinkRefusedError(f"{path}: {what}; dcbulk does not write through it (remove it "
                            f"or choose another path)")


def open_nofollow(path: str | PathLike, flags: int, mode: int = 0o644, *,
                  single_link: bool = False) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``, refusing anything but a regular file.

    Returns the descriptor. A FIFO is opened non-blocking (and then refused), so the call
    never waits for a writer. With ``single_link`` a file with other hard links is refused
    too (for files that are truncated, such as the lock: a manifest hard-linked by a
    snapshot such as ``cp -al`` stays usable).

    Raises
    ------
    LinkRefusedError
        ``path`` is a symbolic link, not a regular file, or (``single_link``) a regular
        file with other hard links (truncating it would change those files too).
    OSError
        Any other failure to open it.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno in (errno.ENXIO, errno.EMLINK)
                                        and os.path.islink(path)):
            raise _refuse(path, "is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, a socket
            raise _refuse(path, "is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "is not a regular file")
        if single_link and st.st_nlink > 1:
            raise _refuse(path, f"is a file with {st.st_nlink} hard links")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def refuse_link(path: str | PathLike) -> None:
    """Raise :class:`~dcbulk.errors.LinkRefusedError` if ``path`` is a symbolic link."""
    if os.path.islink(path):
        raise _refuse(os.fspath(path), "is a symbolic link")


def refuse_unless_file(path: str | PathLike) -> None:
    """Raise :class:`~dcbulk.errors.LinkRefusedError` if ``path`` exists but is a symbolic
    link or not a regular file (a directory, a FIFO): a file of dcbulk's own it would
    remove or replace."""
    try:
        st = os.lstat(path)
    except OSError:  # absent (or its directory is): nothing to refuse here
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(os.fspath(path), "is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(os.fspath(path), "is not a regular file")


def replace_nofollow(path: str | PathLike, write: Callable[[str], object]) -> str:
    """Make ``path`` by ``write(tmp)`` to a temporary sibling, renamed over ``path`` only
    if that is absent or a regular file (a rename would replace a link, FIFO or device
    node itself); the temporary file is removed on any error. Returns the absolute path.

    Raises
    ------
    LinkRefusedError
        ``path`` is a symbolic link or not a regular file.
    OSError
        Any failure to write or rename.
    """
    path = os.path.abspath(os.fspath(path))
    tmp = f"{path}.{os.getpid()}.partial"
    try:
        write(tmp)
        refuse_unless_file(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isfile(tmp) and not os.path.islink(tmp):
            os.remove(tmp)
        raise
    return path


def write_nofollow(path: str | PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated), never through a link."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT)
    try:
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def make_dir(path: str | PathLike) -> str:
    """Create the directory ``path`` (and its parents) unless it exists; refuse a link.

    Only ``path`` itself is checked: its parents are the user's choice.

    Raises
    ------
    LinkRefusedError
        ``path`` is a symbolic link (also a dangling one, or one to a file) or not a
        directory.
    OSError
        When it cannot be created (e.g. a parent is a file or a dangling link).
    """
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        if not os.path.lexists(path):
            raise
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory")
    return path


def check_parents(output_dir: str | PathLike, output: str | PathLike) -> None:
    """Refuse ``output`` when a directory between ``output_dir`` and it is a link.

    Directories that do not exist yet are fine (the writer creates them); ``output``
    itself is never written through (outputs are renamed into place).

    Raises
    ------
    LinkRefusedError
        Naming the first such directory.
    """
    base = os.path.abspath(os.fspath(output_dir))
    rel = os.path.relpath(os.path.dirname(os.path.abspath(os.fspath(output))), base)
    if rel == os.curdir:
        return
    here = base
    for part in rel.split(os.sep):
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(here, "is a symbolic link (a directory of the output tree)")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(here, "is not a directory")
