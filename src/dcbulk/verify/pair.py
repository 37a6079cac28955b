"""What verify plans from: the pair (an output and what it must equal), the output's
features as stored, and their row checks, packed into tasks.

Shared by the checks of a converted or split output (:mod:`.checks`) and of a joined one
(:mod:`.joined`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..codec import ChunkCodec
from ..errors import NotRtdcError
from ..plan import best_chunk_rows, carries_statistics
from ..read.inspect import (DatasetRef, FeatureSource, _walk_event_datasets, describe_dataset,
                            empty_event_groups)
from ..read.policy import misshapen
from .rows import Joined, RowCheck
from .storage import stored_otherwise
from .written import image_attr_problems

__all__ = ["STATISTICS_TASK_BYTES", "VerifyPair", "feature_checks", "misshapen_file",
           "out_features", "pack", "special_file", "unopenable"]

#: a scalar feature carrying statistics up to this size is checked by one task whole, so
#: its ``min``/``max``/``mean`` can be checked (32 M events of 8 bytes; larger: split, and
#: its statistics are not checked)
STATISTICS_TASK_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class VerifyPair:
    """One output and what it must equal."""

    output: str
    source: str
    features: tuple[str, ...] | None = None
    filter: str | None = None
    mapping: tuple | None = None  # explicit indices (API); np arrays are not hashable
    size: int | None = None  # manifest record
    sha256: str | None = None
    #: the output was converted with external data followed (source policy)
    follow_external: bool = False
    #: an output of dcnum's pipeline (``dcbulk process``): checked alone (:mod:`.processed`)
    processed: bool = False
    #: the ``--compression`` it was made with (``ChunkCodec.describe`` text, from the
    #: manifest or provenance log): every feature must be stored so; None: not checked
    compression: str | None = None
    #: a piece of ``split``: ``(first, stop, skip_empty)``, the source's events
    #: ``first..stop-1`` that ``filter`` and the boundary-image rule keep
    #: (:func:`~dcbulk.read.filtering.kept_events`)
    piece: tuple[int, int, bool] | None = None
    #: what the run appended to the source's ``experiment:sample`` (split: `` k/n``)
    sample_suffix: str = ""
    #: the source when the output was made (manifest record or provenance log): its size,
    #: measurement identifier and :func:`~dcbulk.read.digests.head_sha256` (None: unknown)
    source_size: int | None = None
    source_identifier: str | None = None
    source_head: str | None = None
    #: the inputs of a ``join``, in its order (``source`` is the first), and each one's
    #: measurement identifier when the output was made (from its provenance log)
    inputs: tuple[str, ...] | None = None
    input_identifiers: tuple[str | None, ...] | None = None
    #: ... their sizes in bytes and the time offsets of their recording starts, as the join
    #: log holds them (None: unknown)
    input_sizes: tuple[int | None, ...] | None = None
    input_offsets: tuple[float | None, ...] | None = None
    #: settled without opening anything (one line): a file its directory's manifest does
    #: not record (nothing says what it must equal), or a source the manifest says has no
    #: output (failed, or planned by a run that never ended)
    verdict: str | None = None
    #: an output of ``condense`` (:mod:`.condensed`), with dclab's ancillary features
    condensed: bool = False
    ancillary: bool = False
    #: the output holds a file basin to its source (``--basin-to-source``; every condensed one)
    basin_to_source: bool = False
    #: made by a recorded run of dcbulk: the output must hold dcbulk's provenance log
    logged: bool = False
    #: ``source`` was given as a copy of the one the provenance log names (``--against``)
    copy: bool = False
    #: the dcbulk mode that made it (``convert``, ``condense``, ``split``: the run's own log
    #: is ``dcbulk-<mode>``, :mod:`.written`); None: unknown (any mode's)
    mode: str | None = None


def special_file(path: str) -> str | None:
    """The line for an output that exists but is not a regular file (a FIFO would block
    its opening forever), or None: such a file is never opened."""
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        return f"{path}: not a regular file (a FIFO, device or socket); not opened"
    return None


def unopenable(path: str) -> str | None:
    """The line for an output that is gone or not a regular file, or None: never opened
    (a gone output was HDF5's 'cannot open ([Errno 2] Unable to synchronously open ...')."""
    return f"{path}: missing" if not os.path.lexists(path) else special_file(path)


def _misshapen_line(path: str, h5: h5py.File) -> str | None:
    bad = misshapen(h5)
    return f"{path}: {'; '.join(bad)}" if bad else None


def misshapen_file(path: str) -> str | None:
    """The line for a file whose layout is no .rtdc file's
    (:func:`~dcbulk.read.policy.misshapen`), or None (also for a file that is not HDF5:
    said by the check that opens it)."""
    try:
        with h5py.File(path, "r", locking=False) as h5:
            return _misshapen_line(path, h5)
    except OSError:
        return None


def out_features(output: str, want: ChunkCodec | None
                 ) -> tuple[dict[str, DatasetRef], tuple[str, ...], list[str]]:
    """The output's features (as the row checks read them, so that they ask HDF5 for no
    layout again), the empty groups of its ``events`` and the problems of how its datasets
    are stored (one line each): given the filters ``want`` of its run, those stored
    otherwise, and the image attributes the writer sets (:mod:`.written`).

    Raises
    ------
    NotRtdcError
        Its layout is no .rtdc file's (:func:`~dcbulk.read.policy.misshapen`, one line:
        every check would fail with its own exception).
    """
    present, stored = {}, []
    with h5py.File(output, "r", locking=False) as h5:
        shape = _misshapen_line(output, h5)
        if shape:
            raise NotRtdcError(shape)
        for name, dset in _walk_event_datasets(h5["events"]):
            layout = describe_dataset(output, dset, f"events/{name}")
            found = None if layout.codec is None else ChunkCodec.from_dict(layout.codec)
            if not name.startswith("basinmap"):
                present[name] = layout
            if want is not None:
                stored += stored_otherwise(output, f"feature '{name}'", dset, want, found)
            stored += [f"{output}: {line}" for line in image_attr_problems(name, dset)]
        return present, empty_event_groups(h5["events"]), stored


def feature_checks(output: str, name: str, layout: DatasetRef, source: FeatureSource | None,
                   first: int, n_rows: int, *, events: np.ndarray | None = None,
                   enumerate: bool = False, joined: Joined | None = None,
                   own: bool = False, task_bytes: int) -> list[tuple[int, RowCheck]]:
    """The row checks of output rows ``first .. first+n_rows-1`` of one feature, with their
    output bytes: of about ``task_bytes`` each (whole chunks' rows); a feature carrying statistics
    whole up to :data:`STATISTICS_TASK_BYTES` (``events``: the source's events of those
    rows, None: its rows from 0; ``own``: :attr:`RowCheck.own`)."""
    shape, dtype = layout.shape, np.dtype(layout.dtype)
    rows = best_chunk_rows(shape[1:], dtype)
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
    step = max(rows, (task_bytes // (rows * row_bytes)) * rows)
    if carries_statistics(name, dtype, shape[1:]) and n_rows * row_bytes <= STATISTICS_TASK_BYTES:
        step = max(step, n_rows)
    checks = []  # a feature without events gets one check too: its dtype and attributes
    for start in range(0, n_rows, step) or ([0] if joined is None else []):
        stop = min(start + step, n_rows)
        checks.append(((stop - start) * row_bytes, RowCheck(
            output=output, feature=name, start=first + start, stop=first + stop,
            source=source, events=None if events is None else events[start:stop],
            enumerate=enumerate, layout=layout, joined=joined, own=own)))
    return checks


def pack(checks: list[tuple[int, RowCheck]], task_bytes: int) -> list[list[RowCheck]]:
    """Group row checks into tasks of about ``task_bytes`` output bytes each."""
    tasks: list[list[RowCheck]] = []
    size = 0
    for nbytes, check in checks:
        if not tasks or size + nbytes > task_bytes:
            tasks.append([])
            size = 0
        tasks[-1].append(check)
        size += nbytes
    return tasks
