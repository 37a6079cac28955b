"""Checking a bulk run's arguments before anything starts: feature names, where the output
directory lies, memory limits. A wrong argument is a :class:`~dcbulk.errors.UsageError`
(exit status 2) raised before a cluster starts or a file is opened.

Feature names are checked with dclab's own list (:func:`dclab.definitions.feature_exists`:
the scalar and non-scalar features, ``ml_score_*``, ``userdef*``, ``basinmap*``, ...), which
makes dclab a runtime dependency. That is deliberate: dcbulk writes files for dclab and dcnum,
a name that dclab does not know can never be read back by them, and a hand-kept copy of the
list would fall behind dclab's. dclab (and scipy, which it imports) is imported only here, in
the client process, once per run, never in the workers. A valid name that one file lacks
stays a per-file error.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from os import PathLike

from dask.utils import parse_bytes

from ..errors import OutputDirError, UsageError

__all__ = ["check_feature_names", "check_memory_limit", "check_output_dir",
           "check_output_placement", "check_outputs_are_not_sources", "inode_key"]


def check_feature_names(names: Iterable[str], *, what: str, scalar: bool = False) -> None:
    """Refuse names that are not dclab feature names (``what`` says where they came from),
    or, with ``scalar``, not scalar ones (a filter compares one value per event).

    Raises
    ------
    UsageError
        Naming every unknown feature.
    """
    # dclab (and scipy behind it) is heavy: imported only when a name is checked
    from dclab.definitions import feature_exists, scalar_feature_exists
    bad = [n for n in dict.fromkeys(names) if not feature_exists(n)]
    if bad:
        raise UsageError(f"{what}: {', '.join(repr(n) for n in bad)} "
                         f"{'is not a' if len(bad) == 1 else 'are not'} dclab feature "
                         f"name{'s' if len(bad) > 1 else ''} (see dclab.definitions.feature_names)")
    whole = [n for n in dict.fromkeys(names) if scalar and not scalar_feature_exists(n)]
    if whole:
        verb = "is not a scalar feature" if len(whole) == 1 else "are not scalar features"
        raise UsageError(f"{what}: {', '.join(repr(n) for n in whole)} {verb} (an image, mask, "
                         f"trace or contour per event: a filter compares one value per event)")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def check_output_placement(sources: Iterable[str | PathLike], output_dir: str | PathLike
                           ) -> None:
    """Refuse an output directory inside a source directory (later runs would take the
    outputs as sources), or inside the tree of a glob pattern that descends into directories.

    Raises
    ------
    UsageError
        Naming the output directory and the source.
    """
    out = os.path.realpath(os.fspath(output_dir))
    for source in sources:
        text = os.path.expanduser(os.fspath(source))
        if os.path.isdir(text):
            root = os.path.realpath(text)
        elif any(ch in text for ch in "*?["):
            parts = text.replace(os.sep, "/").split("/")
            if not any(ch in part for part in parts[:-1] for ch in "*?["):
                continue  # e.g. "data/*.rtdc": does not descend
            literal = []
            for part in parts:
                if any(ch in part for ch in "*?["):
                    break
                literal.append(part)
            root = os.path.realpath("/".join(literal) or os.curdir)
        else:
            continue
        if _inside(out, root):
            raise UsageError(f"output directory {output_dir} lies inside the source {source}; "
                             f"choose one outside it (later runs would convert the outputs)")


def inode_key(path: str) -> tuple[int, int] | None:
    """The file ``path`` is, however it is named (links, relative paths); None if it
    cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs_are_not_sources(sources: Iterable[str], outputs: Iterable[str]) -> None:
    """Refuse a run one of whose outputs is one of its source files (by path, link or inode:
    a file converted into its own directory, a join's output named as an input), with or
    without ``--force``: writing it would replace the source.

    Raises
    ------
    UsageError
        Naming the output and the source.
    """
    keys = {key: path for path in sources if (key := inode_key(path)) is not None}
    for output in outputs:
        source = keys.get(inode_key(output)) if os.path.exists(output) else None
        if source is not None:
            raise UsageError(f"output {output} is the source {source}: it would be replaced "
                             f"(also with --force); choose another output")


#: the smallest per-worker memory limit accepted (a dask worker process alone needs ~100 MiB)
MIN_WORKER_MEMORY = 256 << 20


def check_memory_limit(value: str | int | float | None) -> None:
    """Refuse a memory limit that dask cannot read (``auto``, a number of bytes, a fraction
    of the machine's memory such as ``0.5``, or a size such as ``4GB``/``4 GiB``).

    Raises
    ------
    UsageError
        Naming the value.
    """
    if value is None:
        return
    text = str(value).strip()
    if text.lower() == "auto":
        return
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number <= 0:
        raise UsageError(f"--memory-limit {value}: must be positive")
    if number is not None and number <= 1:
        return  # a fraction of the machine's memory
    try:
        nbytes = parse_bytes(text)
    except (ValueError, OverflowError):  # OverflowError: 1e400, infinity to dask
        raise UsageError(f"--memory-limit {value}: not a size (use e.g. 4GB, 4GiB, 0.5 for "
                         f"half the memory, or auto)") from None
    if nbytes < MIN_WORKER_MEMORY:
        raise UsageError(f"--memory-limit {value}: too small for a dask worker (at least "
                         f"{MIN_WORKER_MEMORY >> 20} MiB; dask pauses a worker above 80% of it)")


def check_output_dir(output_dir: str | PathLike) -> None:
    """Refuse an output directory that cannot be created or written (checked on its nearest
    existing ancestor, so a dry run creates nothing).

    Raises
    ------
    OutputDirError
        Naming the output directory and the reason.
    """
    path = os.path.abspath(os.fspath(output_dir))
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputDirError(f"{output_dir}: cannot create the output directory ({probe} is "
                             f"not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputDirError(f"{output_dir}: cannot create or write the output directory "
                             f"(Permission denied on {probe})")
