"""HDF5's Fletcher-32 checksum (filter 3), computed outside HDF5.

Single responsibility: the checksum HDF5's Fletcher-32 filter appends to a stored chunk
(and the byte-pair-swapped form older HDF5 releases wrote, which readers still accept).
"""
from __future__ import annotations

import numpy as np

__all__ = ["fletcher32", "FLETCHER32_FILTER_ID"]

FLETCHER32_FILTER_ID = 3
_FLETCHER_MOD = 65535
_ROW_WORDS = 4096  # 16-bit words per row of the Fletcher-32 reduction grid


def fletcher32(data: bytes | bytearray | memoryview) -> int:
    """HDF5's Fletcher-32 checksum (``H5_checksum_fletcher32``) of a byte string.

    The data are read as big-endian 16-bit words (an odd trailing byte is the high byte of a
    last word); both sums are reduced modulo 65535 with end-around carry, so a non-zero sum
    congruent to 0 is 0xFFFF and only all-zero data give 0. Vectorised: two numpy reductions
    over a (rows, 4096) grid of words, no copy of the input.

    Parameters
    ----------
    data
        Any C-contiguous buffer.

    Returns
    -------
    int
        ``(sum2 << 16) | sum1``; the filter stores it little-endian after the data.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    n_words = (buf.size + 1) // 2
    n_full = buf.size // 2
    rows = n_full // _ROW_WORDS
    mod = np.uint64(_FLETCHER_MOD)
    total = 0      # exact sum of all words
    weighted = 0   # sum of index * word, modulo 65535
    if rows:
        grid = buf[:rows * _ROW_WORDS * 2].view(">u2").reshape(rows, _ROW_WORDS)
        row_sums = grid.sum(axis=1, dtype=np.uint32).astype(np.uint64)
        col_acc = np.uint32 if rows <= 65537 else np.uint64
        col_sums = grid.sum(axis=0, dtype=col_acc).astype(np.uint64)
        total = int(row_sums.sum())
        row_idx = np.arange(rows, dtype=np.uint64) % mod
        weighted = (_ROW_WORDS * int(((row_sums % mod) * row_idx).sum())
                    + int(((col_sums % mod) * np.arange(_ROW_WORDS, dtype=np.uint64)).sum()))
    start = rows * _ROW_WORDS
    if n_full > start:
        # < 4096 words: index * word * count stays far below 2**63
        tail = buf[start * 2:n_full * 2].view(">u2").astype(np.int64)
        total += int(tail.sum())
        weighted += int(np.dot(tail, np.arange(start, n_full, dtype=np.int64)))
    if buf.size % 2:
        last = int(buf[-1]) << 8
        total += last
        weighted += last * (n_words - 1)
    if total == 0:
        return 0
    sum1 = total % _FLETCHER_MOD or 0xFFFF
    sum2 = (n_words * total - weighted) % _FLETCHER_MOD or 0xFFFF
    return (sum2 << 16) | sum1


def _swapped_pairs(value: int) -> int:
    """The checksum as HDF5 < 1.6.3 stored it on little-endian hosts (accepted on read)."""
    return ((value & 0x00FF00FF) << 8) | ((value >> 8) & 0x00FF00FF)
