"""Worker-side readers: rows and raw chunks of datasets described by :class:`DatasetRef`.

Everything here runs inside a dask task. Files are opened by path (read-only) for the
duration of one task through :class:`OpenFiles`, so no handle ever travels in a graph.
Gathering rows by index reads only the source chunks that hold them, in sorted order,
in bounded runs, so memory stays proportional to the output block, not to the source.
"""
from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (registers the filters before any compressed read)
import numpy as np

from ..errors import SourceError
from .files import open_rtdc
from .inspect import DatasetRef, FeatureSource

__all__ = ["OpenFiles", "read_event_rows", "gather_rows"]

#: upper bound for one contiguous read while gathering rows
MAX_RUN_BYTES = 32 * 1024**2


class OpenFiles:
    """Read-only h5py files opened on demand by path, closed together.

    Use as a context manager inside one task; it is never pickled.
    """

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}

    def dataset(self, ref: DatasetRef) -> h5py.Dataset:
        """Return the open dataset ``ref`` points to."""
        h5 = self._files.get(ref.path)
        if h5 is None:
            h5 = self._files[ref.path] = open_rtdc(ref.path)
        try:
            return h5[ref.name]
        except KeyError as exc:
            raise SourceError(f"{ref.path}: dataset '{ref.name}' has vanished") from exc

    def close(self) -> None:
        for h5 in self._files.values():
            h5.close()
        self._files.clear()

    def __enter__(self) -> OpenFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError("OpenFiles holds h5py handles and cannot be pickled")


def _rows_per_chunk(ds: h5py.Dataset) -> int:
    if ds.chunks is not None:
        return int(ds.chunks[0])
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    return max(1, (1024**2) // row_bytes)


def gather_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Return ``ds[rows]`` for any integer index array (unsorted, repeated).

    Reads the touched source chunks in ascending order, grouping neighbouring chunks into
    runs of at most :data:`MAX_RUN_BYTES`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size,) + ds.shape[1:], dtype=ds.dtype)
    if rows.size == 0:
        return out
    if rows.min() < 0 or rows.max() >= ds.shape[0]:
        raise SourceError(f"{ds.file.filename}: index out of range for '{ds.name}' "
                          f"(rows {rows.min()}..{rows.max()}, length {ds.shape[0]})")
    order = np.argsort(rows, kind="stable")
    srows = rows[order]
    cr = _rows_per_chunk(ds)
    row_bytes = max(1, out[0].nbytes)
    max_chunks = max(1, MAX_RUN_BYTES // (cr * row_bytes))
    chunk_ids = srows // cr
    # start a new run where chunks are not neighbours or the run would get too long
    breaks = np.flatnonzero(np.diff(chunk_ids) > 1) + 1
    bounds = [0, *breaks.tolist(), srows.size]
    for a, b in zip(bounds[:-1], bounds[1:]):
        while a < b:
            stop = a + int(np.searchsorted(chunk_ids[a:b], chunk_ids[a] + max_chunks))
            lo, hi = int(srows[a]), int(srows[stop - 1]) + 1
            block = ds[lo:hi]
            out[order[a:stop]] = block[srows[a:stop] - lo]
            a = stop
    return out


def read_event_rows(files: OpenFiles, fsrc: FeatureSource,
                    events: slice | np.ndarray) -> np.ndarray:
    """Return the rows of a feature for the given source events.

    Parameters
    ----------
    files
        The task's open files.
    fsrc
        The feature and where it lives.
    events
        Source event indices: a ``slice`` with step 1 for contiguous events, or an integer array.
    """
    ds = files.dataset(fsrc.data)
    if fsrc.rowmap is not None:
        rmap = files.dataset(fsrc.rowmap)
        rows = rmap[events] if isinstance(events, slice) else gather_rows(rmap, events)
        return gather_rows(ds, rows)
    if isinstance(events, slice):
        return ds[events]
    return gather_rows(ds, events)

