"""Deflate (HDF5 filter 1) streams exactly as HDF5 writes them.

Single responsibility: the zlib stream of HDF5's deflate filter where Python's ``zlib``
module would produce different bytes (level 0, stored blocks).
"""
from __future__ import annotations

import zlib
from typing import Any

__all__ = ["DEFLATE_FILTER_ID"]

DEFLATE_FILTER_ID = 1


def _deflate_stored(raw: memoryview) -> bytes:
    """zlib stream of level 0 as ``compress2`` writes it with a ``compressBound`` buffer.

    Python's ``zlib.compress`` feeds deflate a growing output buffer, which changes the
    stored-block boundaries; HDF5 gives deflate room for the whole stream at once, so
    every block but the last holds 65535 bytes.
    """
    parts: list[Any] = [b"\x78\x01"]
    pos, size = 0, len(raw)
    while True:
        take = min(65535, size - pos)
        last = pos + take >= size
        parts += [bytes((int(last),)), take.to_bytes(2, "little"),
                  (take ^ 0xFFFF).to_bytes(2, "little"), raw[pos:pos + take]]
        pos += take
        if last:
            break
    parts.append(zlib.adler32(raw).to_bytes(4, "big"))
    return b"".join(parts)
