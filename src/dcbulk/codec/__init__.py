"""Byte-exact HDF5 chunk encoding outside h5py (public entry points of the codec package).

Single responsibility: re-export the codec API. :mod:`.chunk_codec` holds
:class:`ChunkCodec`, :func:`parse_compression` and :func:`verify_codec_with_hdf5`;
:mod:`.checksum` Fletcher-32; :mod:`.zstd` and :mod:`.deflate` the compression back-ends.
"""
from __future__ import annotations

from .checksum import FLETCHER32_FILTER_ID, fletcher32
from .chunk_codec import ChunkCodec, parse_compression, verify_codec_with_hdf5
from .deflate import DEFLATE_FILTER_ID
from .zstd import ZSTD_FILTER_ID

__all__ = ["ChunkCodec", "parse_compression", "fletcher32", "verify_codec_with_hdf5",
           "ZSTD_FILTER_ID", "DEFLATE_FILTER_ID", "FLETCHER32_FILTER_ID"]
