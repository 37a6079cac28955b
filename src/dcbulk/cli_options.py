"""Command-line options about hostile input: their argument types and checks.

``--timeout-per-file`` and ``--follow-links`` (every command that walks sources and writes one
output per file) and the refusal of a ``--report``/``--performance-report``/``--html-report``
path that a report must not replace, before any work starts: a symbolic link, a directory, a
FIFO, device or socket, an HDF5 file (a source, an output, any ``.rtdc`` file), dcbulk's
manifest, lock, log directory or marker, a file the run itself reads or writes, or a path in
a directory that does not exist.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

import h5py

from .bulk.inprocess import is_marker
from .bulk.lock import LOCK_NAME
from .bulk.manifest import MANIFEST_NAME
from .errors import UsageError
from .nofollow import refuse_link
from .runlog import LOG_DIRNAME

__all__ = ["add_source_args", "check_report_paths", "check_reports_spare", "seconds"]


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_source_args(p: argparse.ArgumentParser) -> None:
    """``--follow-links`` and ``--timeout-per-file`` on a sub-command's parser."""
    p.add_argument("--follow-links", action="store_true",
                   help="also take symbolic links that lead out of the source directories "
                   "(skipped with a warning by default)")
    p.add_argument("--timeout-per-file", type=seconds, metavar="SECONDS",
                   help="a file taking longer fails alone, without output (its task is "
                   "abandoned; the worker thread may run on, but commits nothing)")


def check_report_paths(*paths: str | None) -> None:
    """Refuse report paths that are symbolic links (one line, exit 3), directories, files
    that are not regular (a FIFO, device or socket), HDF5 files or dcbulk's own files (one
    line, exit 2), before any work: every report (``--report``, ``--html-report``,
    ``--performance-report``) is checked here.

    Raises
    ------
    LinkRefusedError
        Naming the first symbolic link.
    UsageError
        Naming the first path a report must not replace.
    """
    for path in paths:
        if path:
            _check_report(path)


def _check_report(path: str) -> None:
    refuse_link(path)
    if os.path.isdir(path):
        raise UsageError(f"report {path} is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"report {path} is not a regular file (a FIFO, device or socket); "
                         f"give a file name")
    name = os.path.basename(path)
    if name in (MANIFEST_NAME, LOCK_NAME, LOG_DIRNAME) or is_marker(name):
        raise UsageError(f"report {path} would replace dcbulk's own file; give another name")
    if os.path.isfile(path) and h5py.is_hdf5(path):
        raise UsageError(f"report {path} would replace an HDF5 file (.rtdc data); give "
                         f"another name")


def check_reports_spare(paths: Iterable[str | None], used: Iterable[str]) -> None:
    """After the run was planned (its output directory made): refuse a report path that is
    one of the files the run reads or makes (``used``: its sources and outputs, made or not
    yet), that :func:`check_report_paths` refuses now (e.g. the output directory itself), or
    whose directory does not exist.

    Raises
    ------
    LinkRefusedError, UsageError
        Naming the first such path.
    """
    taken = {os.path.realpath(p) for p in used}
    for path in paths:
        if not path:
            continue
        if os.path.realpath(path) in taken:
            raise UsageError(f"report {path} is a file this run reads or writes; give another "
                             f"name")
        _check_report(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageError(f"report {path}: its directory {parent} does not exist; give a "
                             f"path in an existing directory")
