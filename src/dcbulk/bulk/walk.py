"""Walking a source directory: the files below it that a bulk run takes, each real directory
once, with one warning line for every entry it leaves out (hidden names, symbolic link loops,
links out of the tree, FIFOs, devices, sockets, unreadable entries).

Written with :func:`os.scandir` (not :func:`os.walk`) so that each entry's type comes from the
directory listing and tens of thousands of files are listed without a ``stat`` per file, and
links are judged one by one (:func:`os.walk` follows them all or none).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..errors import SourceError

__all__ = ["excluded", "outside", "skipped_name", "walk_tree", "why_unusable"]

logger = logging.getLogger(__name__)


def excluded(name: str, relpath: str, exclude: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pat) or fnmatchcase(relpath, pat) for pat in exclude)


def skipped_name(name: str) -> bool:
    """Hidden names (also macOS ``._*`` resource forks) and unfinished ``*.partial`` files."""
    return name.startswith(".") or name.endswith(".partial")


def _say_hidden(entry: os.DirEntry, include: str) -> None:
    """Name a hidden directory, or hidden file matching ``include``, the walk leaves out."""
    with contextlib.suppress(OSError):
        if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            logger.warning("skipping hidden directory %s (names starting with '.' are not "
                           "walked; give it as a source to take its files)", entry.path)
            return
    if entry.name.startswith(".") and fnmatchcase(entry.name, include):
        logger.warning("skipping hidden file %s (names starting with '.' are not taken; "
                       "give it as a source to take it)", entry.path)


def why_unusable(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def outside(path: str, real: str, real_root: str) -> bool:
    """Whether the link ``path`` leads out of the tree (logged as a warning if so)."""
    if _inside(real, real_root):
        return False
    logger.warning("skipping symbolic link %s: it leads to %s, outside %s (follow_links=True "
                   "or --follow-links follows it)", path, real, real_root)
    return True


@dataclass
class _Walk:
    """One directory walk's settings and what it met (see :func:`walk_tree`)."""

    include: str
    exclude: tuple[str, ...]
    real_output: str | None
    follow_links: bool
    tree: str
    unusable: list[str]
    seen_dirs: set[str]

    def subdir(self, entry: os.DirEntry, real_dir: str, rel: str, is_link: bool
               ) -> str | None:
        """The real path of directory ``entry`` when it is to be walked, else None."""
        if excluded(entry.name, rel, self.exclude):
            return None
        real = os.path.realpath(entry.path) if is_link else os.path.join(real_dir, entry.name)
        if real == self.real_output:
            return None
        if is_link and not self.follow_links and outside(entry.path, real, self.tree):
            self.unusable.append(entry.path)
            return None
        if real in self.seen_dirs:
            if is_link:
                logger.warning("skipping symbolic link %s: it leads to %s, which is walked "
                               "already (a loop or a second link)", entry.path, real)
                if real_dir == real or real_dir.startswith(
                        real.rstrip(os.sep) + os.sep):  # a loop (itself, a parent)
                    self.unusable.append(entry.path)
            return None
        if fnmatchcase(entry.name, self.include):
            logger.warning("%s is a directory, not a file, although its name matches '%s'; "
                           "looking for files inside it", entry.path, self.include)
        self.seen_dirs.add(real)
        return real

    def file(self, entry: os.DirEntry, real_dir: str, is_link: bool) -> str | None:
        """The real path of file ``entry`` when it is taken, else None (nothing opened)."""
        if not entry.is_file():  # d_type of the entry: no stat, nothing opened
            if is_link and not os.path.exists(entry.path):
                logger.warning("skipping dangling symbolic link %s", entry.path)
            else:
                logger.warning("skipping %s: not a regular file (a FIFO, device or socket); "
                               "not opened", entry.path)
            self.unusable.append(entry.path)
            return None
        if not is_link:
            return os.path.join(real_dir, entry.name)
        real = os.path.realpath(entry.path)
        if not self.follow_links and outside(entry.path, real, self.tree):
            self.unusable.append(entry.path)
            return None
        return real


def walk_tree(root: str, real_root: str, *, include: str, exclude: tuple[str, ...],
          real_output: str | None, unusable: list[str] | None = None,
          follow_links: bool = False, real_tree: str | None = None
          ) -> Iterator[tuple[str, str, str]]:
    """Yield ``(path, relpath, realpath)`` of matching files below ``root``.

    Directories are visited in sorted order, each real directory once (symbolic links to
    directories inside the tree are followed, loops are cut; links that lead out of
    ``real_tree``, default ``real_root``, only with ``follow_links``). ``real_output`` is
    skipped entirely. Entries that cannot be used (symbolic link loops, dangling links,
    links out of the tree, FIFOs, devices, sockets, unreadable entries) are logged as
    warnings and appended to ``unusable``; a FIFO is never opened.
    """
    walk = _Walk(include, exclude, real_output, follow_links, real_tree or real_root,
                 [] if unusable is None else unusable, {real_root})
    stack: list[tuple[str, str, str]] = [(root, real_root, "")]
    while stack:
        directory, real_dir, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise SourceError(f"{directory}: cannot list directory ({exc.strerror})") from exc
        subdirs = []
        for entry in entries:
            if skipped_name(entry.name):
                _say_hidden(entry, include)
                continue
            rel = f"{rel_dir}{entry.name}"
            try:
                is_dir, is_link = entry.is_dir(), entry.is_symlink()
            except OSError as exc:
                logger.warning("skipping %s: %s", entry.path, why_unusable(exc))
                walk.unusable.append(entry.path)
                continue
            if is_dir:
                real = walk.subdir(entry, real_dir, rel, is_link)
                if real is not None:
                    subdirs.append((entry.path, real, rel + "/"))
            elif fnmatchcase(entry.name, include) and not excluded(entry.name, rel, exclude):
                real = walk.file(entry, real_dir, is_link)
                if real is not None:
                    yield entry.path, rel, real
        stack.extend(reversed(subdirs))
