"""How an output stores its data: each feature and contour with the filters its run asked for.

A user who deletes the originals trusts that the archive is in the format the run's
``--compression`` names (compressed, checksummed), not only that its values are right. The
run's codec comes from the manifest, the provenance log or ``convert --verify``; chunks of a
source at a higher zstd level copied as stored are as good
(:func:`~dcbulk.plan.keeps_stored_chunks`, the planner's rule). zstd, deflate and plain
datasets are described by :meth:`~dcbulk.codec.ChunkCodec.from_dataset`; every other choice
of the codec table is matched by :meth:`~dcbulk.codec.ChunkCodec.stores`.
"""
from __future__ import annotations

import h5py

from ..codec import COMPRESSORS, ChunkCodec
from ..plan import keeps_stored_chunks
from ..read.layout import describe_filters

__all__ = ["stored_how", "stored_otherwise"]


def stored_otherwise(output: str, what: str, dset: h5py.Dataset, want: ChunkCodec,
                     found: ChunkCodec | None) -> list[str]:
    """A line unless ``dset`` (``what``: ``feature 'deform'``, ``contour 3``) is stored as
    ``want`` asks, or better (``found``: ``ChunkCodec.from_dataset(dset)``)."""
    if keeps_stored_chunks(found, want) if want.recognised else want.stores(dset):
        return []
    how = found.describe() if found is not None else _table_choice(dset)
    return [f"{output}: {what} is stored {how}, not {want.describe()} (the run's "
            f"--compression)"]


def stored_how(dset: h5py.Dataset) -> str:
    """How ``dset`` is stored, as a line names it: its codec's text (``zstd:5+fletcher32``)
    or, for filters no codec describes, their names."""
    found = ChunkCodec.from_dataset(dset)
    return found.describe() if found is not None else _table_choice(dset)


def _table_choice(dset: h5py.Dataset) -> str:
    """The choice of a plugin :meth:`~dcbulk.codec.ChunkCodec.from_dataset` does not describe
    that ``dset`` is stored with, else its filters' names (a zstd or deflate pipeline that
    ``from_dataset`` refused, e.g. for a non-zero fill value, is not named as that choice)."""
    for row in COMPRESSORS:
        if ChunkCodec(None if row.name == "none" else row.name, row.default).recognised:
            continue
        for level in row.levels or (row.default,):
            for checksum in (True, False):
                codec = ChunkCodec(row.name, level, checksum)
                if codec.stores(dset):
                    return codec.describe()
    return describe_filters(dset)
