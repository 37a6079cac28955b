"""Generate realistic synthetic ``.rtdc`` files and archives of them.

Single responsibility: re-export the synthetic-data API. The generator produces
deterministic test, demo and benchmark data (images with cell-like blobs, consistent masks
and scalar features, fluorescence traces, logs, a table and complete metadata) through
:class:`dcbulk.write.HDF5Writer`, in bounded-memory blocks: :mod:`.cells` (blobs),
:mod:`.events` (events), :mod:`.metadata` (attributes, logs, table), :mod:`.rtdc`
(:func:`make_rtdc`) and :mod:`.archive` (:func:`make_archive`, broken files).
"""
from __future__ import annotations

from .archive import BROKEN_KINDS, broken_kind, make_archive
from .rtdc import compression_kwargs, make_rtdc

__all__ = ["BROKEN_KINDS", "broken_kind", "compression_kwargs",
           "make_archive", "make_rtdc"]
