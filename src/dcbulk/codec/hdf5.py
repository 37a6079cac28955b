"""Chunk bytes made and checked by HDF5 itself, on in-memory files.

:func:`encode_chunks` writes a block of rows into an in-memory HDF5 file
(``driver="core", backing_store=False``) with the output's chunk shape and filter pipeline
and reads the stored chunks back with ``read_direct_chunk``: the bytes are exactly those
HDF5 would store in the output, for any filter hdf5plugin provides, by construction.

:func:`decode_stored_chunks` is the converse proof for chunks copied as stored: it writes
the stored bytes into an in-memory dataset with the *source's* creation property list and
reads them through the filter pipeline, so HDF5 checks Fletcher-32 and decompresses every
chunk before it may be copied. A chunk that fails raises
:class:`~dcbulk.errors.ChecksumMismatchError` naming the file, feature and chunk index.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator

import h5py
import hdf5plugin  # noqa: F401  (registers the filters in this process)
import numpy as np

from ..errors import ChecksumMismatchError
from .spec import ChunkCodec

__all__ = ["checked_block", "encode_chunks", "decode_stored_chunks"]

_names = itertools.count()
_lock = threading.Lock()
_local = threading.local()

#: a thread's scratch file is closed (its memory freed) once it has grown past this size
SCRATCH_LIMIT = 64 << 20


def _memory_file() -> h5py.File:
    with _lock:
        name = f"dcbulk-mem-{threading.get_ident()}-{next(_names)}.h5"
    return h5py.File(name, "w", driver="core", backing_store=False, block_size=4 << 20)


@contextlib.contextmanager
def _scratch() -> Iterator[h5py.File]:
    """This thread's in-memory file, reused across blocks (creating one costs ~0.5 ms).

    Each use creates one dataset and unlinks it afterwards, so HDF5 may reuse the space;
    the file is closed (and a new one made next time) once it exceeds
    :data:`SCRATCH_LIMIT`, or after a failure, so memory stays bounded per thread. The
    stored chunk bytes depend only on the data and the filters, never on the file.
    """
    cached = getattr(_local, "file", None)
    if cached is not None and (cached[0] != os.getpid() or not cached[1].id.valid):
        cached = None  # a forked child, or closed: never share HDF5 state across them
    h5 = cached[1] if cached else _memory_file()
    _local.file = None
    ok = False
    try:
        yield h5
        ok = True
    finally:
        for name in list(h5):
            del h5[name]
        if ok and h5.id.get_filesize() <= SCRATCH_LIMIT:
            _local.file = (os.getpid(), h5)
        else:
            h5.close()


def checked_block(rows) -> np.ndarray:
    """``rows`` as an array both encoders accept: fixed-size items, at least one row."""
    rows = np.asarray(rows)
    if rows.dtype.hasobject:
        raise TypeError(f"cannot encode dtype {rows.dtype} (object / variable-length)")
    if rows.ndim == 0 or rows.shape[0] == 0:
        raise ValueError(f"cannot encode an empty block of shape {rows.shape}")
    return rows


def encode_chunks(rows: np.ndarray, chunk_rows: int, codec: ChunkCodec
                  ) -> list[tuple[int, bytes]]:
    """Encode a block of rows into the stored bytes of its output chunks.

    Parameters
    ----------
    rows
        Whole output chunks of a feature (the last one may be short: HDF5 pads it with the
        zero fill value, as in the output's last chunk).
    chunk_rows
        Rows per chunk of the output dataset (its chunks never split the item axes).
    codec
        The output's filters.

    Returns
    -------
    list of (filter_mask, bytes)
        One entry per chunk, ready for ``write_direct_chunk``.
    """
    rows = checked_block(rows)
    chunks = (int(chunk_rows),) + rows.shape[1:]
    with _scratch() as h5:
        dset = h5.create_dataset("x", shape=rows.shape, dtype=rows.dtype, chunks=chunks,
                                 maxshape=(None,) + rows.shape[1:], **codec.ds_kwds())
        dset[...] = rows
        tail = (0,) * (rows.ndim - 1)
        return [dset.id.read_direct_chunk((start,) + tail)
                for start in range(0, rows.shape[0], chunks[0])]


def decode_stored_chunks(stored: list[tuple[int, bytes]], dcpl: h5py.h5p.PropDCID,
                         dtype: np.dtype, shape: tuple[int, ...], *, label: str,
                         first_chunk: int) -> None:
    """Prove stored chunks sound: HDF5 checks and decodes each through ``dcpl``'s filters.

    Parameters
    ----------
    stored
        ``read_direct_chunk`` results of consecutive chunks along axis 0.
    dcpl
        The source dataset's creation property list (its chunk shape and filters).
    dtype, shape
        The source dataset's dtype and shape.
    label
        ``"<file>: feature '<name>'"``, for the error message.
    first_chunk
        Index of the first chunk in ``stored``.

    Raises
    ------
    ChecksumMismatchError
        When a chunk does not pass the filter pipeline (checksum, decompression).
    """
    chunk_rows = dcpl.get_chunk()[0]
    n = len(stored)
    start = first_chunk * chunk_rows
    rows = min(n * chunk_rows, shape[0] - start)
    local = (max(rows, 1),) + tuple(shape[1:])
    with _scratch() as h5:
        dsid = h5py.h5d.create(h5.id, b"x", h5py.h5t.py_create(np.dtype(dtype)),
                               h5py.h5s.create_simple(local, (h5py.h5s.UNLIMITED,) + local[1:]),
                               dcpl=dcpl)
        dset = h5py.Dataset(dsid)
        tail = (0,) * (len(shape) - 1)
        for i, (mask, data) in enumerate(stored):
            dset.id.write_direct_chunk((i * chunk_rows,) + tail, data, mask)
        for i in range(n):
            try:
                dset[i * chunk_rows:(i + 1) * chunk_rows]
            except OSError as exc:
                raise ChecksumMismatchError(
                    f"{label}: stored chunk {first_chunk + i} is damaged ({exc}); "
                    f"refusing to copy it") from exc
