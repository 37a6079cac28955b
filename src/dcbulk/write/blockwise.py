"""Compare and map HDF5 datasets block by block with bounded memory."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Union

import h5py
import numpy as np

__all__ = ["iter_slices", "arrays_equal", "check_mapping",
           "iter_mapped_blocks"]

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, h5py.Dataset]

#: Number of elements compared per block by :func:`arrays_equal`.
COMPARE_BLOCK_ELEMENTS = 2 ** 20


def iter_slices(size: int, step: int) -> Iterator[slice]:
    """Yield consecutive slices of length `step` covering ``range(size)``."""
    step = max(1, int(step))
    for start in range(0, size, step):
        yield slice(start, min(start + step, size))


def arrays_equal(a: ArrayLike, b: ArrayLike, *, equal_nan: bool = False
                 ) -> bool:
    """Return whether two arrays or datasets hold equal values

    Arrays of different shapes are unequal (never broadcast). Datasets are
    read in blocks of about 2**20 elements and the comparison stops at the
    first block that differs.

    Parameters
    ----------
    a, b
        numpy arrays or h5py datasets.
    equal_nan
        Treat NaN as equal to NaN (only for floating point data).
    """
    if tuple(a.shape) != tuple(b.shape):
        return False
    if len(a.shape) == 0:
        return bool(_equal(np.asarray(a[()]), np.asarray(b[()]), equal_nan))
    item_size = max(1, int(np.prod(a.shape[1:], dtype=np.int64)))
    step = max(1, COMPARE_BLOCK_ELEMENTS // item_size)
    for sl in iter_slices(a.shape[0], step):
        if not _equal(np.asarray(a[sl]), np.asarray(b[sl]), equal_nan):
            return False
    return True


def _equal(x: np.ndarray, y: np.ndarray, equal_nan: bool) -> bool:
    """Compare two numpy arrays of equal shape."""
    nan_ok = (equal_nan and x.dtype.kind in "fc" and y.dtype.kind in "fc")
    return bool(np.array_equal(x, y, equal_nan=nan_ok))


def check_mapping(mapping: object, size_in: int) -> np.ndarray:
    """Validate an index mapping into a feature of `size_in` events

    Parameters
    ----------
    mapping
        One-dimensional integer indices.
    size_in
        Number of events in the source feature.

    Returns
    -------
    np.ndarray
        The mapping as a 1-D integer array.

    Raises
    ------
    TypeError
        If the mapping does not hold integers.
    ValueError
        If it is not one-dimensional or an index is outside
        ``[0, size_in)``.
    """
    arr = np.asarray(mapping)
    if arr.ndim != 1:
        raise ValueError(
            f"`mapping` must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"`mapping` must hold integer indices, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= size_in:
        raise ValueError(
            f"`mapping` indices must lie in [0, {size_in}), "
            f"got the range [{lo}, {hi}]")
    return arr


def iter_mapped_blocks(dsi: h5py.Dataset, mapping: np.ndarray,
                       block_events: int) -> Iterator[np.ndarray]:
    """Yield ``dsi[mapping]`` in consecutive pieces, never the whole feature

    For a non-decreasing mapping (the usual case), the source is swept in
    blocks of `block_events` events, like dcnum does, and blocks that no
    index points into are not read. Any other mapping is served output
    block by output block, reading only the events it needs.

    Parameters
    ----------
    dsi
        Source dataset (events along axis 0).
    mapping
        Valid indices into `dsi` (see :func:`check_mapping`).
    block_events
        Number of events per read.

    Yields
    ------
    np.ndarray
        Consecutive parts of ``dsi[mapping]``; their concatenation equals
        it exactly.
    """
    if mapping.size == 0:
        return
    if np.all(mapping[1:] >= mapping[:-1]):
        yield from _iter_sorted(dsi, mapping, block_events)
    else:
        yield from _iter_unsorted(dsi, mapping, block_events)


def _iter_sorted(dsi: h5py.Dataset, mapping: np.ndarray,
                 block_events: int) -> Iterator[np.ndarray]:
    """Sweep the source in blocks for a non-decreasing mapping."""
    for sl in iter_slices(dsi.shape[0], block_events):
        lo = int(np.searchsorted(mapping, sl.start, side="left"))
        hi = int(np.searchsorted(mapping, sl.stop, side="left"))
        if hi == lo:
            continue
        first, last = int(mapping[lo]), int(mapping[hi - 1])
        data = dsi[first:last + 1]
        yield data[mapping[lo:hi] - first]


def _iter_unsorted(dsi: h5py.Dataset, mapping: np.ndarray,
                   block_events: int) -> Iterator[np.ndarray]:
    """Gather each output block from the events it needs."""
    logger.debug("Mapping for %s is not sorted; gathering block-wise",
                 dsi.name)
    chunks = getattr(dsi, "chunks", None)
    window = int(chunks[0]) if chunks else block_events
    for sl in iter_slices(mapping.size, block_events):
        uniq, inverse = np.unique(mapping[sl], return_inverse=True)
        first, last = int(uniq[0]), int(uniq[-1])
        if last + 1 - first <= 4 * uniq.size:
            rows = dsi[first:last + 1][uniq - first]
        else:
            rows = _gather_rows(dsi, uniq, window)
        yield rows[inverse.reshape(-1)]


def _gather_rows(dsi: h5py.Dataset, uniq: np.ndarray,
                 window: int) -> np.ndarray:
    """Read the sorted unique rows `uniq`, one slice per touched window.

    Slices within one HDF5 chunk (`window` rows) are much faster than
    h5py's fancy indexing with an index list.
    """
    breaks = np.flatnonzero(np.diff(uniq // window)) + 1
    parts = []
    for group in np.split(uniq, breaks):
        first, last = int(group[0]), int(group[-1])
        parts.append(dsi[first:last + 1][group - first])
    return np.concatenate(parts)
