"""Decoding a stored zstd chunk straight into the caller's buffer, sparing one copy.

numcodecs' ``Zstd.decode(buf, out=...)`` writes the decompressed bytes where they are
wanted, but raises only when they would not fit: a frame that holds fewer bytes than
``out`` leaves the rest of ``out`` as it was, which in a reused buffer is an earlier read's
data. So a chunk is decoded into ``out`` only when its first frame's header declares
exactly ``out``'s size (zstd checks the decoded size against that declaration, and
numcodecs refuses more frames' content than ``out`` holds); any other chunk is decoded by
the caller as before. Reading the size from the frame header is written by hand because
numcodecs does not expose it (RFC 8878, section 3.1.1.1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["decode_into"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DICT_ID_BYTES = (0, 1, 2, 4)


def zstd_content_size(frame) -> int | None:
    """The content size the first zstd frame of ``frame`` declares, or None (not a zstd
    frame, or one that declares none)."""
    head = bytes(memoryview(frame)[:18])
    if len(head) < 5 or head[:4] != _ZSTD_MAGIC:
        return None
    descriptor = head[4]
    fcs_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
    size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    at = 5 + (0 if single_segment else 1) + _DICT_ID_BYTES[descriptor & 3]
    if len(head) < at + size:
        return None
    value = int.from_bytes(head[at:at + size], "little")
    return value + 256 if size == 2 else value


def decode_into(compressor, data, target: np.ndarray) -> bool:
    """Decode ``data`` (a chunk as ``compressor``, a numcodecs codec, stores it, checksum
    removed) into ``target``, a C-contiguous array of the chunk's size; False, doing
    nothing, where that is not a numcodecs ``Zstd`` whose frame declares ``target``'s size."""
    if getattr(compressor, "codec_id", None) != "zstd" or not target.flags.c_contiguous:
        return False
    if zstd_content_size(data) != target.nbytes:
        return False
    compressor.decode(data, out=target.reshape(-1).view(np.uint8))
    return True
