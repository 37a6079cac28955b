"""Forgetting sources left out of an archive on purpose (``dcbulk forget``).

``dcbulk verify DIR`` names every source a run of the directory set out to make and that has
no output there (its conversion failed, or the run was killed): originals must not be deleted
while one is unconverted. A source that is left out on purpose (a damaged file given up on,
or one removed from the archive) would keep verify failing for good; forgetting it drops its
failed record and planned entry from the manifest (an appended line, under the directory's
lock), so verify is silent about it. Only sources without an output can be forgotten.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from ..arguments import path_arg, paths_arg
from ..errors import UsageError
from .lock import output_lock
from .manifest import MANIFEST_NAME, Manifest

__all__ = ["forget"]


def forget(output_dir, sources: Iterable) -> list[str]:
    """Forget ``sources`` in the manifest of ``output_dir``; return their relative paths.

    Parameters
    ----------
    output_dir
        An output directory of a dcbulk run (it holds ``dcbulk-manifest.jsonl``).
    sources
        Each source as ``dcbulk verify`` names it (its path) or its path relative to the
        archive (as the manifest keys it).

    Raises
    ------
    UsageError
        Before anything is written: a directory without manifest, a source the manifest
        does not name, or one with an output there.
    OutputLockedError
        A run holds the directory.
    """
    output_dir = os.path.abspath(os.fspath(path_arg("output_dir", output_dir)))
    names = [os.fspath(s) for s in paths_arg("sources", sources)]
    if not os.path.isfile(os.path.join(output_dir, MANIFEST_NAME)):
        raise UsageError(f"{output_dir}: no {MANIFEST_NAME}, not an output directory of a "
                         f"dcbulk run")
    with output_lock(output_dir):
        manifest = Manifest.load(output_dir)
        known = {**{rec.source: rel for rel, rec in manifest.records.items()},
                 **{path: rel for rel, path in manifest.planned.items()}}
        relpaths = [_relpath(manifest, known, name) for name in names]
        manifest.forget(list(dict.fromkeys(relpaths)))
    return relpaths


def _relpath(manifest: Manifest, known: dict[str, str], name: str) -> str:
    """The manifest's key of the source ``name`` (a path or a key; ``known``: source path
    -> key), if it has no output."""
    paths = {os.path.abspath(name), os.path.realpath(name)}
    rel = name if name in manifest.records or name in manifest.planned else next(
        (known[p] for p in paths if p in known), None)
    if rel is None:
        raise UsageError(f"{name}: not a source of {manifest.output_dir} (give it as "
                         f"dcbulk verify names it)")
    record = manifest.records.get(rel)
    if record is not None and record.status == "done":
        raise UsageError(f"{name}: has an output here ({record.output}); only a source "
                         f"without one can be forgotten")
    return rel
