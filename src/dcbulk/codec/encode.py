"""Chunk bytes encoded and checked in parallel threads, outside HDF5's lock.

HDF5 runs every call of a process under one lock, so a block encoded through HDF5 (even an
in-memory file) occupies its whole process. Where the codec table
(:mod:`dcbulk.codec.table`) names a numcodecs pipeline whose bytes equal what HDF5's filters
store -- zstd (hdf5plugin.Zstd), deflate levels 1-9, no compression, each with or without
Fletcher-32 last -- :func:`encode_chunks` encodes with numcodecs (the checksum by HDF5's own
function, :mod:`.fletcher`), both releasing the GIL, so the threads of one process encode
blocks at the same time. Everything else (HDF5-framed
lz4, bitshuffle, blosc2, deflate level 0, record dtypes) goes to HDF5 itself
(:func:`dcbulk.codec.hdf5.encode_chunks`). Both give identical bytes; the tests prove it
against files h5py writes with hdf5plugin's own filter classes.

:func:`decode_stored_chunks` proves stored chunks sound before they are copied: the same
pipeline checks Fletcher-32 and decompresses each chunk (again without HDF5's lock) where it
can, HDF5 otherwise.
"""
from __future__ import annotations

import functools
import logging
import zlib

import h5py
import hdf5plugin
import numcodecs
import numpy as np

from ..errors import ChecksumMismatchError, one_line
from . import hdf5
from .spec import ChunkCodec

__all__ = ["agrees_with_hdf5", "encode_chunks", "decode_stored_chunks", "encodes_in_threads"]

logger = logging.getLogger(__name__)

#: dtype kinds whose bytes in memory are the bytes HDF5 stores (no conversion of the type)
_PLAIN_KINDS = frozenset("biufS")


def encodes_in_threads(codec: ChunkCodec, dtype) -> bool:
    """Whether :func:`encode_chunks` encodes ``dtype`` with numcodecs (outside HDF5).

    Only where the codec table names a pipeline and, checked once per process, that
    pipeline gives HDF5's very bytes with the libraries installed here
    (:func:`agrees_with_hdf5`).
    """
    dtype = np.dtype(dtype)
    return (dtype.names is None and dtype.kind in _PLAIN_KINDS and dtype.subdtype is None
            and codec.numcodecs_pipeline() is not None and agrees_with_hdf5(codec, dtype.str))


@functools.lru_cache(maxsize=None)
def agrees_with_hdf5(codec: ChunkCodec, dtype: str) -> bool:
    """Whether numcodecs encodes a test block of ``dtype`` into the bytes HDF5 stores.

    The codec table's claim, proved by the tests for the versions they ran with, checked
    again in this process for the numcodecs and hdf5plugin installed here (a library
    update could change the bytes, or break a checksum HDF5 then refuses). On any
    difference dcbulk encodes through HDF5 itself (slower, never wrong) and says so once.
    """
    rng = np.random.default_rng(0)  # compressible rows with some noise, two chunks
    rows = (np.cumsum(rng.integers(0, 3, size=(2 * 4096, 3)), axis=0) % 251).astype(dtype)
    ours = _encode_numcodecs(rows, 4096, codec.numcodecs_pipeline())
    theirs = hdf5.encode_chunks(rows, 4096, codec)
    same = ours == theirs
    if not same:
        logger.warning("numcodecs %s does not give HDF5's bytes for %s chunks in this "
                       "process (numcodecs %s, hdf5plugin %s); encoding through HDF5 instead",
                       codec.describe(), np.dtype(dtype), numcodecs.__version__,
                       hdf5plugin.version)
    return same


def _encode_numcodecs(rows: np.ndarray, chunk_rows: int, stages: tuple
                      ) -> list[tuple[int, bytes]]:
    rows = np.ascontiguousarray(rows)
    out = []
    for start in range(0, rows.shape[0], chunk_rows):
        part = rows[start:start + chunk_rows]
        if part.shape[0] < chunk_rows:
            full = np.zeros((chunk_rows,) + rows.shape[1:], dtype=rows.dtype)
            full[:part.shape[0]] = part
            part = full
        out.append((0, _run(stages, part.reshape(-1).view(np.uint8))))
    return out


def _run(stages: tuple, data) -> bytes:
    for stage in stages:
        data = stage.encode(data)
    return bytes(data)


def encode_chunks(rows: np.ndarray, chunk_rows: int, codec: ChunkCodec
                  ) -> list[tuple[int, bytes]]:
    """Encode a block of rows into the stored bytes of its output chunks.

    Parameters
    ----------
    rows
        Whole output chunks of a feature (the last one may be short: it is padded with
        zeros, the output's fill value, as HDF5 pads the last chunk of a dataset).
    chunk_rows
        Rows per chunk of the output dataset (its chunks never split the item axes).
    codec
        The output's filters.

    Returns
    -------
    list of (filter_mask, bytes)
        One entry per chunk, ready for ``write_direct_chunk``.
    """
    rows = hdf5.checked_block(rows)
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if not encodes_in_threads(codec, rows.dtype):
        return hdf5.encode_chunks(rows, chunk_rows, codec)
    return _encode_numcodecs(rows, chunk_rows, codec.numcodecs_pipeline())


def decode_stored_chunks(stored: list[tuple[int, bytes]], dcpl: h5py.h5p.PropDCID,
                         dtype: np.dtype, shape: tuple[int, ...], *, label: str,
                         first_chunk: int, codec: ChunkCodec | None = None) -> None:
    """Prove stored chunks sound: each passes its filters' checks and decompresses whole.

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
    codec
        The source dataset's filters as :meth:`ChunkCodec.from_dataset` describes them:
        numcodecs then checks the chunks in this thread without HDF5's lock (None: HDF5
        checks them through ``dcpl``).

    Raises
    ------
    ChecksumMismatchError
        When a chunk does not pass the filter pipeline (checksum, decompression, size).
    """
    stages = None if codec is None else codec.numcodecs_pipeline(exact=False)
    if stages is None or any(mask for mask, _ in stored):
        hdf5.decode_stored_chunks(stored, dcpl, dtype, shape, label=label,
                                  first_chunk=first_chunk)
        return
    chunk = dcpl.get_chunk()
    nbytes = int(np.prod(chunk, dtype=np.int64)) * np.dtype(dtype).itemsize
    for i, (_mask, data) in enumerate(stored):
        try:
            for stage in reversed(stages):
                data = stage.decode(data)
            size = memoryview(data).nbytes
        except (RuntimeError, ValueError, TypeError, zlib.error) as exc:
            size, problem = -1, one_line(f"{type(exc).__name__}: {exc}", 200)
        else:
            problem = f"decodes to {size} bytes, a chunk holds {nbytes}"
        if size != nbytes:
            raise ChecksumMismatchError(
                f"{label}: stored chunk {first_chunk + i} is damaged ({problem}); "
                f"refusing to copy it")
