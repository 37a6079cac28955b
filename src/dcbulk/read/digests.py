"""Digests of whole files: the SHA-256 of an output, and the cheap content check of a
source (its first and last MiB) that the resume manifest records."""
from __future__ import annotations

import hashlib
import os
from os import PathLike

__all__ = ["HEAD_BYTES", "file_sha256", "head_sha256"]

#: bytes at each end of a source hashed as its content check (dclab's command log hashes
#: the first MiB of each input)
HEAD_BYTES = 1 << 20


def file_sha256(path: str | PathLike, bufsize: int = 4 << 20) -> str:
    """SHA-256 hex digest of a file, read in ``bufsize`` pieces into one reused buffer."""
    digest = hashlib.sha256()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def head_sha256(path: str | PathLike, *, nbytes: int = HEAD_BYTES) -> str:
    """SHA-256 hex digest of the first and the last ``nbytes`` of a file (all of a small one).

    An HDF5 file keeps its superblock, root attributes (the measurement identifier, time,
    setup) and most object headers at its start, and h5py flushes the rest of its metadata
    towards its end, so a source replaced by another file of the same size with the mtime
    restored (``cp -p``, ``rsync -t``, backups) is seen here at the cost of two small reads.
    Not seen: raw data edited in place beyond those ranges with the mtime reset by hand.
    """
    size = os.stat(path).st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(nbytes))
        if size > nbytes:
            fh.seek(max(nbytes, size - nbytes))
            digest.update(fh.read(nbytes))
    return digest.hexdigest()
