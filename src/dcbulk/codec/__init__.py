"""Output filters and chunk encoding, done by HDF5 itself (public entry points).

:mod:`.spec` holds :class:`ChunkCodec` (a small frozen, picklable description of a filter
pipeline that hdf5plugin provides) and :func:`parse_compression`; :mod:`.hdf5` encodes
blocks into the exact bytes HDF5 stores and proves stored chunks sound, both by running
HDF5's own filter pipeline on an in-memory file.
"""
from __future__ import annotations

from .hdf5 import decode_stored_chunks, encode_chunks
from .spec import COMPRESSION_CHOICES, ChunkCodec, parse_compression

__all__ = ["COMPRESSION_CHOICES", "ChunkCodec", "decode_stored_chunks", "encode_chunks",
           "parse_compression"]
