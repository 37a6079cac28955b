"""Output filters and chunk encoding (public entry points).

:mod:`.table` is the one table of ``--compression`` choices (name, levels, HDF5 filter,
label, numcodecs pipeline); :mod:`.spec` holds :class:`ChunkCodec` (a small frozen,
picklable choice of one row) and :func:`parse_compression`; :mod:`.encode` encodes blocks
into the exact bytes HDF5 stores and proves stored chunks sound, with numcodecs in parallel
threads where it reproduces HDF5's bytes, else with :mod:`.hdf5` (HDF5's own filter pipeline
on an in-memory file); :mod:`.fletcher` is the checksum stage of those pipelines (HDF5's own
function, called without the GIL).
"""
from __future__ import annotations

from .encode import decode_stored_chunks, encode_chunks, encodes_in_threads
from .spec import COMPRESSION_CHOICES, ChunkCodec, parse_compression
from .table import COMPRESSORS, FILTER_NAMES, Compressor, choices_text

__all__ = ["COMPRESSION_CHOICES", "COMPRESSORS", "FILTER_NAMES", "ChunkCodec", "Compressor",
           "choices_text", "decode_stored_chunks", "encode_chunks", "encodes_in_threads",
           "parse_compression"]
