"""Worker-side readers: rows and raw chunks of datasets described by :class:`DatasetRef`.

Everything here runs inside a dask task. Files are opened by path (read-only) for the
duration of one task through :class:`OpenFiles`, so no handle ever travels in a graph.
Gathering rows by index reads only the source chunks that hold them, in sorted order,
in bounded runs, so memory stays proportional to the output block, not to the source.

Rows of chunked sources whose filters numcodecs can decode (zstd, deflate, with or
without Fletcher-32, or none: :meth:`~dcbulk.codec.ChunkCodec.from_dataset`) are read as
stored chunks (``read_direct_chunk``, brief under HDF5's lock) and decoded by numcodecs
outside the lock and the GIL, so the threads of one worker decompress at the same time
(:func:`read_rows`); everything else is read through h5py.
"""
from __future__ import annotations

import functools
import threading
import zlib

import h5py
import hdf5plugin  # noqa: F401  (registers the filters before any compressed read)
import numpy as np

from ..codec import ChunkCodec
from ..codec.into import decode_into
from ..errors import ChecksumMismatchError, SourceError, one_line
from .files import open_child, open_rtdc
from .inspect import DatasetRef, FeatureSource

__all__ = ["OpenFiles", "read_event_rows", "gather_rows", "read_rows"]

#: upper bound for one contiguous read while gathering rows
MAX_RUN_BYTES = 32 * 1024**2


class OpenFiles:
    """Read-only h5py files opened on demand by path, closed together.

    Use as a context manager inside one task (whose block jobs may share it from several
    threads: a file is opened once); it is never pickled.
    """

    def __init__(self) -> None:
        self._files: dict[str, h5py.File] = {}
        self._opening = threading.Lock()

    def dataset(self, ref: DatasetRef) -> h5py.Dataset:
        """Return the open dataset ``ref`` points to."""
        with self._opening:
            h5 = self._files.get(ref.path)
            if h5 is None:
                h5 = self._files[ref.path] = open_rtdc(ref.path)
        dset = open_child(h5, ref.name)
        if not isinstance(dset, h5py.Dataset):
            raise SourceError(f"{ref.path}: dataset '{ref.name}' has vanished")
        return dset

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


@functools.lru_cache(maxsize=None)
def _stages(codec: ChunkCodec) -> tuple | None:
    """numcodecs stages decoding chunks stored with ``codec`` (stateless: shared by threads);
    none for plain chunks, which are read as stored too: HDF5's own read of an unfiltered
    chunked dataset (hyperslab selection, chunk cache) moved 0.85 GB/s here, its stored
    chunks 3-8 GB/s, both under the GIL."""
    return codec.numcodecs_pipeline(exact=False)


def _layout(ds: h5py.Dataset, ref: DatasetRef | None = None) -> tuple:
    """``(shape, dtype, chunks, codec)`` of ``ds``: from ``ref``, the inspection's description
    of it, without asking HDF5 again (its creation properties cost a tenth of a small file's
    conversion), else from the dataset."""
    if ref is not None:
        return (tuple(ref.shape), np.dtype(ref.dtype),
                None if ref.chunks is None else tuple(ref.chunks),
                None if ref.codec is None else ChunkCodec.from_dict(ref.codec))
    chunks = ds.chunks
    return ds.shape, ds.dtype, chunks, None if chunks is None else ChunkCodec.from_dataset(ds)


def _stages_of(shape: tuple, chunks: tuple | None, codec: ChunkCodec | None) -> tuple | None:
    if chunks is None or tuple(chunks[1:]) != tuple(shape[1:]) or codec is None:
        return None
    return _stages(codec)


def _decoder(ds: h5py.Dataset) -> tuple | None:
    """numcodecs stages :func:`read_rows` decodes ``ds``'s stored chunks with (none for
    unfiltered chunks), or None (read through h5py): only chunked datasets whose chunks hold
    whole items and whose filters numcodecs decodes, with a zero fill value."""
    shape, _dtype, chunks, codec = _layout(ds)
    return _stages_of(shape, chunks, codec)


def read_rows(ds: h5py.Dataset, start: int, stop: int, *, out: np.ndarray | None = None,
              ref: DatasetRef | None = None) -> np.ndarray:
    """Return ``ds[start:stop]``, decoding stored chunks with numcodecs where it can.

    Each touched chunk is read as stored (``read_direct_chunk``) and decoded in this
    thread without HDF5's lock; a chunk that is not stored (fill value), was stored with a
    filter skipped, or a dataset numcodecs cannot decode is read through h5py instead.
    ``out`` (of shape ``(stop - start,) + ds.shape[1:]`` and ``ds.dtype``) receives the rows
    instead of a new array (a reused buffer). ``ref``, the inspection's description of
    ``ds``, gives its shape, dtype, chunks and filters without asking HDF5 again.

    Raises
    ------
    ChecksumMismatchError
        A stored chunk fails its checksum or does not decompress to a whole chunk.
    SourceError
        ``ref`` no longer describes ``ds`` (rewritten since the inspection).
    """
    shape, dtype, chunks, codec = _layout(ds, ref)
    start, stop = max(0, int(start)), min(int(stop), shape[0])
    if stop <= start:
        return np.empty((0,) + shape[1:], dtype=dtype)
    stages = _stages_of(shape, chunks, codec)
    if stages is None and out is None:
        return ds[start:stop]
    if out is None:
        out = np.empty((stop - start,) + shape[1:], dtype=dtype)
    if stages is None:
        ds.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        return out
    cr = int(chunks[0])
    tail = (0,) * (len(shape) - 1)
    for first in range(start - start % cr, stop, cr):
        lo, hi = max(start, first), min(stop, first + cr)
        try:
            mask, data = ds.id.read_direct_chunk((first,) + tail)
        except (OSError, KeyError, ValueError, RuntimeError):  # not stored: h5py gives the fill
            mask, data = -1, None
        if mask:
            out[lo - start:hi - start] = ds[lo:hi]
            continue
        target = out[lo - start:hi - start] if hi - lo == cr else None  # a whole chunk
        try:
            for stage in reversed(stages[1:]):
                data = stage.decode(data)
            if target is not None and stages and decode_into(stages[0], data, target):
                continue
            if stages:
                data = stages[0].decode(data)
            rows = np.frombuffer(data, dtype=dtype).reshape((cr,) + shape[1:])
        except (RuntimeError, ValueError, TypeError, zlib.error) as exc:
            if ref is not None and _layout(ds)[1:] != (dtype, chunks, codec):
                raise SourceError(f"{ds.file.filename}: '{ds.name}' was rewritten with other "
                                  f"filters or chunks after it was inspected") from exc
            raise ChecksumMismatchError(
                f"{ds.file.filename}: '{ds.name}' chunk {first // cr} is damaged: "
                f"{one_line(exc, 200)}") from exc
        out[lo - start:hi - start] = rows[lo - first:hi - first]
    return out


def _rows_per_chunk(ds: h5py.Dataset) -> int:
    if ds.chunks is not None:
        return int(ds.chunks[0])
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    return max(1, (1024**2) // row_bytes)


def gather_rows(ds: h5py.Dataset, rows: np.ndarray, ref: DatasetRef | None = None
                ) -> np.ndarray:
    """Return ``ds[rows]`` for any integer index array (unsorted, repeated).

    Reads the touched source chunks in ascending order, grouping neighbouring chunks into
    runs of at most :data:`MAX_RUN_BYTES` (``ref``: as for :func:`read_rows`).
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
            block = read_rows(ds, lo, hi, ref=ref)
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
        rows = (rmap[events] if isinstance(events, slice)
                else gather_rows(rmap, events, fsrc.rowmap))
        return gather_rows(ds, rows, fsrc.data)
    if isinstance(events, slice) and events.step in (None, 1):
        begin, end, _ = events.indices(fsrc.data.shape[0])
        return read_rows(ds, begin, end, ref=fsrc.data)
    if isinstance(events, slice):
        return ds[events]
    return gather_rows(ds, events, fsrc.data)
