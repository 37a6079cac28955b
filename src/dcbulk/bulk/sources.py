"""Finding the input files of a bulk conversion and where each one's output goes.

:func:`discover_sources` turns the user's files, directories and glob patterns into a
deterministic, duplicate-free list of :class:`SourceEntry` objects; :func:`output_path`
mirrors an entry's place in its source tree below the output directory. A directory given is
walked by :func:`~dcbulk.bulk.walk.walk_tree`.
"""
from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike

from ..errors import PlanError, SourceError, SourceNotFoundError
from .walk import excluded, outside, skipped_name, walk_tree, why_unusable

__all__ = ["SourceEntry", "discover_sources", "output_path"]

logger = logging.getLogger(__name__)

_GLOB_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class SourceEntry:
    """One input file of a bulk conversion.

    Attributes
    ----------
    path : str
        Absolute path of the file (symbolic links are not resolved).
    relpath : str
        POSIX-style path relative to ``root``; the output keeps this place below the output
        directory. For a file given directly, its name.
    root : str
        Absolute path of the directory the file was found under (the directory given, the
        literal leading part of a glob pattern, or the parent of a file given directly).
    """

    path: str
    relpath: str
    root: str


def _is_glob(text: str) -> bool:
    return any(ch in _GLOB_MAGIC for ch in text)


def _glob_root(pattern: str) -> str:
    """The leading directories of ``pattern`` that contain no glob characters."""
    parts = pattern.replace(os.sep, "/").split("/")
    literal: list[str] = []
    for part in parts[:-1]:
        if _is_glob(part):
            break
        literal.append(part)
    if not literal:
        return os.path.abspath(os.curdir)
    root = "/".join(literal) or "/"  # a pattern such as "/x*" has the root "/"
    return os.path.abspath(root)


def _glob_match_dropped(relpath: str, exclude: tuple[str, ...]) -> bool:
    """Whether a glob match, or any directory on its way from the root, is skipped."""
    parts = relpath.split("/")
    for i, part in enumerate(parts):
        if skipped_name(part) or excluded(part, "/".join(parts[:i + 1]), exclude):
            return True
    return False


def discover_sources(sources: Iterable[str | PathLike], include: str = "*.rtdc",
                     exclude: Iterable[str] = (), output_dir: str | PathLike | None = None,
                     follow_links: bool = False) -> list[SourceEntry]:
    """List the input files of a bulk conversion.

    Parameters
    ----------
    sources : iterable of str or path-like
        Files (always taken, whatever their name), directories (walked recursively) and glob
        patterns (``*``, ``?``, ``[...]``, ``**`` for any depth). A directory's files keep their
        place relative to that directory; files matched by a pattern keep their place relative
        to the pattern's leading literal directories; a file given directly (or matched by a
        pattern without directories) lands at the top of the output tree.
    include : str
        Glob matched (case-sensitively) against the *name* of each file found while walking a
        directory. Files given directly or matched by a pattern are not filtered by it.
    exclude : iterable of str
        Globs matched against the name and against the relative path of each file and each
        directory met while walking or globbing; a match drops it (a directory with all its
        content). Files given directly are never excluded.
    output_dir : str or path-like, optional
        The output directory; when it lies inside a source directory it is not walked.
    follow_links : bool
        Also take symbolic links (to files or directories) that lead out of the directory
        walked or the pattern's leading directories; by default they are skipped with one
        warning line each. Links inside the tree are always followed.

    Returns
    -------
    list of SourceEntry
        In the order of ``sources``, each source's files sorted by relative path; a file
        reached twice (same resolved path) is listed once, at its first place. Hidden files
        and directories (name starting with ``.``) and ``*.partial`` files are skipped while
        walking and globbing.

    Raises
    ------
    SourceNotFoundError
        Naming every path that does not exist, every pattern that matched nothing, and every
        pattern or directory that gave only unusable entries (symbolic link loops, dangling
        links, links out of the tree, FIFOs, devices, sockets); a directory without a file
        to take is no error (one warning line).
        Skipped links (loops, links to directories walked already) and directories whose
        name matches ``include`` are logged as warnings.
    PlanError
        When two different files would be written to the same output path; names both.
    SourceError
        When a directory cannot be listed or a path is neither file nor directory.
    """
    if isinstance(sources, (str, bytes, PathLike)):
        sources = [sources]
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    found = _Discovery(include, exclude, follow_links,
                       os.path.realpath(output_dir) if output_dir is not None else None)
    empty = []  # directories without a file to take (nor an unusable entry): said once
    for source in sources:
        start, bad = len(found.entries), len(found.bad)
        path = os.path.expanduser(os.fspath(source))
        found.add_source(path)
        found.entries[start:] = sorted(found.entries[start:],
                                       key=lambda e: e.relpath.split("/"))
        if len(found.entries) == start and len(found.bad) == bad and os.path.isdir(path):
            empty.append(path)
    if found.missing or found.bad:
        what = "path does not exist or pattern matched nothing"
        raise SourceNotFoundError("; ".join(
            ([f"{what}: " + ", ".join(found.missing)] if found.missing else [])
            + ([f"no usable file: {', '.join(found.bad)}"] if found.bad else [])))
    for source in empty:  # a typo'd tree: say so
        logger.warning("%s: no file matching %r below it", source, include)
    _check_unique_relpaths(found.entries)
    return found.entries


def _entries(n: int) -> str:
    return f"{n} unusable entr{'y' if n == 1 else 'ies'}"


@dataclass
class _Discovery:
    """The files :func:`discover_sources` found so far (each real file once), and the
    sources that gave none (``missing``: not there; ``bad``: only unusable entries)."""

    include: str
    exclude: tuple[str, ...]
    follow_links: bool
    real_output: str | None
    entries: list[SourceEntry] = field(default_factory=list)
    seen: dict[str, SourceEntry] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def add(self, path: str, relpath: str, root: str, real: str) -> None:
        """Take one file (unless its real path was taken already: under another name, a
        link or a hard link elsewhere, said in a warning)."""
        first = self.seen.get(real)
        if first is None:
            self.seen[real] = SourceEntry(path=path, relpath=relpath, root=root)
            self.entries.append(self.seen[real])
        elif first.path != path:
            logger.warning("%s is the same file as %s; made once, as %s", path, first.path,
                           first.relpath)

    def add_source(self, text: str) -> None:
        """Take what one of the user's sources names: a file, a directory or a pattern."""
        if os.path.isfile(text):
            path = os.path.abspath(text)
            self.add(path, os.path.basename(path), os.path.dirname(path),
                     os.path.realpath(path))
        elif os.path.isdir(text):
            root = os.path.abspath(text)
            matched, unusable = self.add_dir(root, root, "")
            if unusable and not matched:  # like a glob of loops: nothing to convert here
                self.bad.append(f"{text} (no file matching '{self.include}', "
                                f"{_entries(len(unusable))}, e.g. symbolic link loops or "
                                f"links out of the tree)")
        elif _is_glob(text):
            self.add_glob(text)
        elif os.path.lexists(text):
            raise SourceError(f"{text}: neither a regular file nor a directory")
        else:
            self.missing.append(text)

    def add_dir(self, directory: str, root: str, rel_prefix: str,
                real_tree: str | None = None) -> tuple[int, list[str]]:
        """Take the files below ``directory`` (inside ``real_tree``, default: itself);
        return how many matched and the unusable entries."""
        real_dir = os.path.realpath(directory)
        if real_dir == self.real_output:
            return 0, []
        matched, unusable = 0, []
        for path, rel, real in walk_tree(directory, real_dir, include=self.include,
                                     exclude=self.exclude, real_output=self.real_output,
                                     unusable=unusable, follow_links=self.follow_links,
                                     real_tree=real_tree):
            self.add(path, rel_prefix + rel, root, real)
            matched += 1
        return matched, unusable

    def add_glob(self, text: str) -> None:
        """Take what a glob pattern matches (directories walked), relative to its root."""
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            self.missing.append(text)
            return
        start, root = len(self.entries), _glob_root(text)
        real_tree = os.path.realpath(root)
        unusable: list[str] = []
        for match in matches:
            path = os.path.abspath(match)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            real = os.path.realpath(path)
            if _glob_match_dropped(rel, self.exclude) or self._in_output(real):
                continue
            if not self.follow_links and outside(path, real, real_tree):
                unusable.append(path)
            elif os.path.isdir(path):
                self.add_dir(path, root, rel + "/", real_tree)
            elif os.path.isfile(path):
                self.add(path, rel, root, real)
            else:
                logger.warning("skipping %s: %s", path, _not_usable(path))
                unusable.append(path)
        if unusable and len(self.entries) == start and not any(
                os.path.isfile(m) or os.path.isdir(m) for m in matches):
            self.bad.append(f"{text} (matched only {_entries(len(unusable))}, e.g. symbolic "
                            f"link loops or links out of the tree)")

    def _in_output(self, real: str) -> bool:
        out = self.real_output
        return out is not None and (real == out or real.startswith(out.rstrip(os.sep) + os.sep))


def _not_usable(path: str) -> str:
    """Why a glob match is neither a file nor a directory."""
    try:
        os.stat(path)
    except OSError as exc:
        return why_unusable(exc)
    return "neither a regular file nor a directory"


def _check_unique_relpaths(entries: list[SourceEntry]) -> None:
    by_relpath: dict[str, SourceEntry] = {}
    for entry in entries:
        other = by_relpath.setdefault(entry.relpath, entry)
        if other is not entry:
            raise PlanError(f"{other.path} and {entry.path} would both be written to "
                            f"'{entry.relpath}' in the output directory; give their parent "
                            f"directories instead, or convert them separately")


def output_path(entry: SourceEntry, output_dir: str | PathLike) -> str:
    """The output file of ``entry``: its relative path below ``output_dir``, same file name.

    Raises
    ------
    PlanError
        If the entry's relative path is absolute or leaves the output directory.
    """
    parts = entry.relpath.split("/")
    if not entry.relpath or entry.relpath.startswith("/") or ".." in parts or "" in parts:
        raise PlanError(f"{entry.path}: relative path '{entry.relpath}' cannot be placed "
                        f"below an output directory")
    return os.path.join(os.fspath(output_dir), *parts)
