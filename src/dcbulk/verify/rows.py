"""Rows of one output compared with ``source[mapping]``, bit for bit: the row checks of verify.

Hand-written because no library compares an .rtdc output's features with ``source[mapping]``
under the community's rules (a renumbered ``index``, masks stored as uint8, the ``min``/
``max``/``mean`` attributes dclab reads instead of the data). HDF5's Fletcher-32 checksum of
every chunk is checked while the data are read (:func:`~dcbulk.read.chunks.read_rows`); a
chunk that fails to decode is reported as a problem, never raised. A :class:`RowCheck` is
picklable, so the checks run anywhere: inline, in a worker task, or in a converting worker.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading outputs)
import numpy as np
from h5py import h5o

from ..errors import ChecksumMismatchError, SourceError
from ..plan import (SET_APART_ATTRS, STAT_ATTRS, carries_statistics, keeps_statistics,
                    source_statistics, statistics)
from ..read.chunks import OpenFiles, read_event_rows, read_rows
from ..read.files import open_child
from ..read.inspect import DatasetRef, FeatureSource
from ..read.policy import IMAGE_ATTRS, is_reference
from .values import same_value, shown, stored_as

__all__ = ["Joined", "RowCheck", "compare_rows", "diff_rows"]


@dataclass(frozen=True)
class Joined:
    """How the rows of one input of a ``join`` become the output's, as dclab-join makes
    them: the input's first event is output row ``first``; its rows are cast to ``cast``,
    ``shift`` is added (``time``, ``frame``, ``index_online`` of the later inputs), and they
    are stored as ``dtype``, the earliest input's (None: each step left out)."""

    first: int
    cast: str | None = None
    shift: object = None
    dtype: str | None = None

    def apply(self, rows: np.ndarray) -> np.ndarray:
        if self.cast is not None:
            rows = rows.astype(self.cast)
        if self.shift is not None:
            rows = rows + self.shift
        return rows if self.dtype is None else rows.astype(self.dtype, copy=False)


@dataclass(frozen=True)
class RowCheck:
    """Rows ``start:stop`` of one output feature against the source (picklable task input).

    ``events`` are the source event indices of those rows (None: the same rows, or with
    ``joined`` rows ``start-first .. stop-first-1`` of a join's input); ``enumerate`` means
    the output holds ``start+1 .. stop`` (a renumbered ``index``); ``source`` None (and not
    ``enumerate``): only the statistics of the feature's rows are checked (a join's feature
    whose rows come from several inputs).
    """

    output: str
    feature: str
    start: int
    stop: int
    source: FeatureSource | None
    events: np.ndarray | None = None
    enumerate: bool = False
    #: the output dataset as planned (shape, dtype, chunks, filters: not asked of HDF5 again)
    layout: DatasetRef | None = None
    joined: Joined | None = None
    #: a dataset of the source itself (not a basin's, nor followed): the output feature's
    #: other attributes must be its own (checked with the first rows)
    own: bool = False


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bytes, compared as 8-byte words where the size
    allows (numpy compares element by element: 8x fewer elements, 2.2x faster on 4 MB)."""
    a = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    b = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
    if a.nbytes != b.nbytes:
        return False
    if a.nbytes % 8 == 0:
        a, b = a.view(np.uint64), b.view(np.uint64)
    return bool(np.array_equal(a, b))


def diff_rows(got: np.ndarray, want: np.ndarray, start: int) -> str | None:
    """How rows ``start..`` of an output differ from what they must hold (None: the same
    bytes, dtype included)."""
    if got.shape != want.shape:
        return f"shape {got.shape} != source {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != source {want.dtype}"
    if _same_bytes(got, want):  # bit for bit: -0.0 is not 0.0, nor one NaN another
        return None
    flat = (np.ascontiguousarray(got).reshape(len(got), -1).view(np.uint8)
            != np.ascontiguousarray(want).reshape(len(want), -1).view(np.uint8))
    bad = np.flatnonzero(flat.any(axis=1))
    return f"{bad.size} rows differ from the source (first: event {start + int(bad[0])})"


def compare_rows(checks: list[RowCheck]) -> list[str]:
    """Read rows of output features (every chunk, checksums checked) and compare them.

    One task handles a list of checks (a run of chunks of a large feature, or many small
    features of one output), opening each file once.
    """
    problems: list[str] = []
    by_output: dict[str, list[RowCheck]] = {}
    for check in checks:
        by_output.setdefault(check.output, []).append(check)
    for output, group in by_output.items():
        try:
            h5 = h5py.File(output, "r", locking=False)
        except OSError as exc:
            problems.append(f"{output}: cannot open ({exc})")
            continue
        with h5, OpenFiles() as files:
            events = h5["events"]
            for check in group:
                problems.extend(_compare_one(events, files, check))
    return problems


_buffers = threading.local()


def _buffer(slot: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable array of this thread (dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, so every
    fresh large array costs page faults; reusing two buffers per thread avoids that)."""
    cache = getattr(_buffers, "arrays", None)
    if cache is None:
        cache = _buffers.arrays = {}
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = cache.get(slot)
    if buf is None or buf.nbytes < need:
        buf = cache[slot] = np.empty(max(need, 1), dtype=np.uint8)
    return buf[:need].view(dtype).reshape(shape)


def _read_rows(dset: h5py.Dataset, start: int, stop: int, slot: str,
               ref: DatasetRef | None = None) -> np.ndarray:
    shape, dtype = (ref.shape, np.dtype(ref.dtype)) if ref else (dset.shape, dset.dtype)
    if dtype.hasobject or stop <= start or not shape:
        return dset[start:stop]
    out = _buffer(slot, dtype, (min(stop, shape[0]) - start,) + tuple(shape[1:]))
    # compressed: decoded outside HDF5's lock
    return read_rows(dset, start, stop, out=out, ref=ref)


def _source_rows(files: OpenFiles, check: RowCheck) -> np.ndarray:
    """What the output's rows of ``check`` must hold, read from the source."""
    first = 0 if check.joined is None else check.joined.first
    start, stop = check.start - first, check.stop - first
    if check.events is None and check.source.rowmap is None:
        want = _read_rows(files.dataset(check.source.data), start, stop, "source",
                          check.source.data)
    else:
        want = np.asarray(read_event_rows(files, check.source, np.asarray(check.events)
                                          if check.events is not None else slice(start, stop)))
    return want if check.joined is None else check.joined.apply(want)


def _compare_one(events: h5py.Group, files: OpenFiles, check: RowCheck) -> list[str]:
    where = f"{check.output}: feature '{check.feature}' " + (
        f"rows {check.start}..{check.stop - 1}" if check.stop > check.start else "(no events)")
    try:
        dset = open_child(events, check.feature)
        if not isinstance(dset, h5py.Dataset):
            raise KeyError(f"no dataset 'events/{check.feature}'")
        got = _read_rows(dset, check.start, check.stop, "output", check.layout)
    except (OSError, KeyError, ValueError, ChecksumMismatchError, SourceError) as exc:
        return [f"{where}: unreadable ({type(exc).__name__}: {exc})"]
    if check.enumerate:
        want = np.arange(check.start + 1, check.stop + 1).astype(got.dtype)
    elif check.source is None:
        want = got
    else:
        try:
            want = _source_rows(files, check)
        except (OSError, KeyError, ValueError, ChecksumMismatchError, SourceError) as exc:
            return [f"{where}: source unreadable ({type(exc).__name__}: {exc})"]
        if want.dtype == bool and got.dtype != bool:  # masks stored as uint8
            got = got > 0
    problem = diff_rows(got, want, check.start)
    about = []  # lines about the feature as a whole
    shape, dtype = ((check.layout.shape, check.layout.dtype) if check.layout is not None
                    else (dset.shape, dset.dtype))
    stats = carries_statistics(check.feature, dtype, shape[1:])
    if check.start == 0 and (check.source is not None or check.enumerate):  # once per feature
        about += _attribute_problems(dset, files.dataset(check.source.data) if check.own
                                     else None, stats)
    if problem is None and check.start == 0 and stats:  # rows: those of the whole feature
        about += _statistics_problems(dset, got if check.stop == shape[0] else None,
                                      shape[0], files, check)
    return ([] if problem is None else [f"{where}: {problem}"]) + [
        f"{check.output}: feature '{check.feature}': {p}" for p in about]


def _attribute_problems(dset: h5py.Dataset, source: h5py.Dataset | None,
                        stats: bool) -> list[str]:
    """An output feature's attributes against its source dataset's, as the writer copies
    them (statistics and the image class set apart, :data:`~dcbulk.plan.SET_APART_ATTRS`;
    references to the source's objects are not copied); ``source`` None: a feature the
    writer copies no attributes of (from a basin, or a join's), ``stats``: one it writes
    statistics on (:func:`~dcbulk.plan.carries_statistics`; on another, they are extra)."""
    if not (h5o.get_info(dset.id).num_attrs
            or source is not None and h5o.get_info(source.id).num_attrs):
        return []
    apart = SET_APART_ATTRS if stats else IMAGE_ATTRS
    got = {k: v for k, v in dset.attrs.items() if k not in apart}
    want = {} if source is None else {k: v for k, v in source.attrs.items()
                                      if k not in SET_APART_ATTRS and not is_reference(v)}
    return ([f"attribute '{k}' is missing" for k in want if k not in got]
            + [_extra_line(k, source is None) for k in got if k not in want]
            + [line for k, v in want.items() if k in got
               for line in [_value_problem(k, got[k], v)] if line])


def _extra_line(key: str, uncopied: bool) -> str:
    """The line of an attribute the writer does not write on an output feature."""
    if key in STAT_ATTRS:
        return (f"attribute '{key}' is not the source's (dcbulk writes it on numeric scalar "
                f"features only)")
    return f"attribute '{key}' is not the source's" + (
        " (dcbulk copies the attributes of the source's own features only, not a basin's "
        "or a join's input's)" if uncopied else "")


def _value_problem(key: str, got, want) -> str | None:
    """How a copied attribute differs from the source's: its value, or how it is stored
    (None: the same)."""
    if not same_value(got, want):
        return f"attribute '{key}' is {shown(got)!r}, source has {shown(want)!r}"
    if stored_as(got) != stored_as(want):
        return (f"attribute '{key}' is stored as {stored_as(got)}, the source's as "
                f"{stored_as(want)}")
    return None


def _statistics_problems(dset: h5py.Dataset, rows: np.ndarray | None, n_rows: int,
                         files: OpenFiles, check: RowCheck) -> list[str]:
    """The output's ``min``/``max``/``mean`` attributes (dclab reads them instead of the
    data): the source's where the output holds exactly its ``n_rows`` rows, else those of
    ``rows``, the whole feature (:func:`~dcbulk.plan.keeps_statistics`, the writer's rule; a
    join's are always its rows'; ``rows`` None: a feature above ``STATISTICS_TASK_BYTES``,
    whose rows no one check reads, so only copied statistics are checked). An output may
    lack them (dclab then computes them), not hold other values."""
    if not h5o.get_info(dset.id).num_attrs:
        return []
    attrs = dset.attrs
    found = {key: attrs[key] for key in STAT_ATTRS if key in attrs}
    if not found:
        return []
    want, origin = {}, "the source's"
    if check.source is not None and check.joined is None and keeps_statistics(
            check.source, mapped=check.events is not None, n_rows=n_rows):
        want = source_statistics(files.dataset(check.source.data).attrs)
    if not want and rows is None:
        return []
    if not want and not rows.size:  # nothing to compute them of
        return [f"attribute '{key}' is {shown(value)!r}, expected none (no events)"
                for key, value in found.items()]
    if not want:
        want, origin = statistics(rows), "that of its events"
    lines = []
    for key, value in found.items():
        if key not in want or not same_value(value, want[key]):
            lines.append(f"attribute '{key}' is {shown(value)!r}, expected " + (
                f"{shown(want[key])!r} ({origin})" if key in want else "none (not in the source)"))
        elif stored_as(value) != stored_as(want[key]):  # the writer's: as copied or computed
            lines.append(f"attribute '{key}' is stored as {stored_as(value)}, expected "
                         f"{stored_as(want[key])} ({origin})")
    return lines
