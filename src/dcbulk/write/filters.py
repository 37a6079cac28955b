"""Dataset creation defaults: HDF5 filter keywords and chunk shapes."""
from __future__ import annotations

import logging
import math
from typing import Any

import hdf5plugin  # registers the Zstd filter with HDF5
import numpy as np
import numpy.typing as npt

__all__ = ["set_default_filter_kwargs", "best_nd_chunks"]

logger = logging.getLogger(__name__)

#: Zstandard compression level of dcnum-compatible outputs.
ZSTD_LEVEL = 5
#: Target size of one HDF5 chunk in bytes.
CHUNK_TARGET_BYTES = 1024 ** 2
#: Smallest and largest number of events per chunk.
CHUNK_MIN_EVENTS = 10
CHUNK_MAX_EVENTS = 1000


def set_default_filter_kwargs(ds_kwds: dict[str, Any] | None = None,
                              compression: bool = True) -> dict[str, Any]:
    """Fill in the default filter keywords for ``create_dataset``

    Like dcnum, this updates the given dictionary in place (keys that are
    already set are kept) and returns it.

    Parameters
    ----------
    ds_kwds
        Keyword arguments for :meth:`h5py.Group.create_dataset`; a new
        dictionary is used when None.
    compression
        If True and `ds_kwds` has no ``compression`` key, add Zstandard
        level 5 (hdf5plugin). Otherwise set ``compression`` and
        ``compression_opts`` to None where they are missing.

    Returns
    -------
    dict
        `ds_kwds` with ``fletcher32`` (default True) and the compression
        keys filled in.

    Examples
    --------
    >>> set_default_filter_kwargs()
    {'compression': 32015, 'compression_opts': (5,), 'fletcher32': True}
    >>> set_default_filter_kwargs(compression=False)
    {'compression': None, 'compression_opts': None, 'fletcher32': True}
    """
    if ds_kwds is None:
        ds_kwds = {}
    if compression and "compression" not in ds_kwds:
        for key, value in dict(hdf5plugin.Zstd(clevel=ZSTD_LEVEL)).items():
            ds_kwds.setdefault(key, value)
    else:
        ds_kwds.setdefault("compression", None)
        ds_kwds.setdefault("compression_opts", None)
    ds_kwds.setdefault("fletcher32", True)
    return ds_kwds


def best_nd_chunks(item_shape: tuple[int, ...] | list[int],
                   feat_dtype: npt.DTypeLike = np.float64
                   ) -> tuple[int, ...]:
    """Return the HDF5 chunk shape for a feature with events of `item_shape`

    A chunk holds about 1 MiB, but at least 10 and at most 1000 events;
    the item dimensions are never split. The result equals dcnum's
    ``HDF5Writer.get_best_nd_chunks``.

    Parameters
    ----------
    item_shape
        Shape of one event, ``()`` for scalar features.
    feat_dtype
        Data type of the feature.

    Returns
    -------
    tuple[int, ...]
        ``(events_per_chunk, *item_shape)``.

    Examples
    --------
    >>> best_nd_chunks((80, 250), "uint8")
    (52, 80, 250)
    >>> best_nd_chunks((), "float64")
    (1000,)
    """
    item_shape = tuple(int(s) for s in item_shape)
    event_bytes = math.prod(item_shape) * np.dtype(feat_dtype).itemsize
    if event_bytes <= 0:
        events = CHUNK_MAX_EVENTS
    else:
        events = CHUNK_TARGET_BYTES // event_bytes
    events = min(CHUNK_MAX_EVENTS, max(CHUNK_MIN_EVENTS, events))
    return (events, *item_shape)
