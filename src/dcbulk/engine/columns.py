"""Output features made of pieces of source features, computed block by block.

A :class:`Column` is an output feature whose rows are pieces of source features one after
the other (:class:`Piece`: rows of one feature, mapped, cast and shifted; a join's inputs), or
``1..n``. :func:`column_blocks` computes the encoded blocks of columns in this process -- by
the calling thread's block pool, the source files opened once for the output, as
:func:`~dcbulk.engine.arrays.plan_blocks` does for a conversion -- and :func:`column_array`
makes a column a dask array of the same reads for a writer on a cluster.

Written by hand rather than as dask array operations (``read_features``, ``astype``, ``+``,
``concatenate``), which is what a column is on a cluster: in dcbulk's own process those cost
``import dask.array`` (with scipy, 0.3-1.0 s of a join's serial planning on 2 cores), a graph
built and optimised per output, blocks rechunked across the inputs' blocks, and the files
opened again for every block (a 4-input join of 104 MB: 8.8-9.0 s, 13-14 CPU-s as dask arrays,
5.4-6.1 s, 8.2-9.6 CPU-s as columns, in alternating runs).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConversionError
from ..plan import BlockGroup, FeaturePlan
from ..read.chunks import OpenFiles
from .arrays import (READ_ERRORS, EncodedBlock, encode_rows, feature_rows, read_failure,
                     stored_jobs)
from .blockpool import run_blocks

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["Piece", "Column", "as_dtype", "column_blocks", "column_array"]


def as_dtype(rows: np.ndarray, dtype, label: str, name: str) -> np.ndarray:
    """``rows`` as ``dtype``; float rows that an integer ``dtype`` cannot hold (NaN, inf,
    or outside its range) are one line naming ``label`` and feature ``name``, instead of
    numpy's garbage integers and its RuntimeWarning."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and rows.dtype.kind == "f" and rows.size:
        # the bounds as powers of two, exact in every float type: ``rows > info.max`` let
        # 2**64 through (2**64 - 1 is no float; it rounds to 2**64), then wrapped to 0
        low = float(np.iinfo(dtype).min)
        high = 2.0 ** (8 * dtype.itemsize - (dtype.kind == "i"))  # the first value too large
        wide = rows.astype(np.promote_types(rows.dtype, np.float64), copy=False)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(wide) | (wide < low) | (wide >= high)
        if bad.any():
            value = rows[bad].flat[0]
            what = ("NaN or inf" if not np.isfinite(value)
                    else f"{float(value):g}, outside {dtype}")
            raise ConversionError(f"{label}: feature '{name}' holds {what}, which must "
                                  f"become an integer ({dtype}) here")
    return rows.astype(dtype, copy=False)


@dataclass(frozen=True, eq=False)
class Piece:
    """``n_rows`` rows of one source feature, as a piece of a :class:`Column`.

    The rows are those ``feature`` plans (its source's events ``mapping[i]`` when mapped), as
    its dtype, then cast to ``cast`` and ``shift`` added when given -- the numpy operations,
    so their results are what the same dask array operations give. ``label`` names the
    source in errors; ``feature`` None: a piece of an enumerated column, never read.
    """

    feature: FeaturePlan | None
    n_rows: int
    label: str
    mapping: np.ndarray | None = None
    cast: str | None = None
    shift: object = None

    def rows(self, files: OpenFiles, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the piece."""
        fp = self.feature
        try:
            rows = feature_rows(files, fp.source, np.dtype(fp.dtype), start, stop, self.mapping)
        except READ_ERRORS as exc:
            raise read_failure(self.label, fp.name, start, stop, exc) from exc
        if self.cast is not None:
            rows = as_dtype(rows, self.cast, self.label, fp.name)
        return rows if self.shift is None else rows + self.shift


@dataclass(frozen=True, eq=False)
class Column:
    """An output feature: its pieces one after the other, each as ``dtype``; or, with
    ``enumerate``, ``1..n_rows`` (a renumbered ``index``; the pieces then give only the
    length)."""

    pieces: tuple[Piece, ...]
    dtype: str
    item_shape: tuple[int, ...] = ()
    enumerate: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(p.n_rows for p in self.pieces),) + tuple(self.item_shape)

    def rows(self, files: OpenFiles, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the column, read from the pieces they fall in."""
        dtype = np.dtype(self.dtype)
        if self.enumerate:
            return np.arange(start + 1, stop + 1, dtype=dtype)
        parts, first = [], 0
        for piece in self.pieces:
            lo, hi = max(start, first), min(stop, first + piece.n_rows)
            if lo < hi:
                parts.append(as_dtype(piece.rows(files, lo - first, hi - first), dtype,
                                      piece.label, piece.feature.name))
            first += piece.n_rows
        if len(parts) == 1:  # most blocks: no copy
            return parts[0]
        return np.concatenate(parts) if parts else np.empty((0,) + tuple(self.item_shape), dtype)


def _encoded(files: OpenFiles, column: Column, start: int, stop: int,
             features: tuple[FeaturePlan, ...], label: str) -> EncodedBlock:
    return encode_rows(column.rows(files, start, stop), features, label)


def _jobs(columns: dict[str, Column], groups: tuple[BlockGroup, ...],
          prefixes: dict[str, FeaturePlan], label: str, files: OpenFiles
          ) -> Iterator[tuple[tuple[BlockGroup, int], Callable[[], EncodedBlock]]]:
    for group in groups:
        if group.n_rows == 0:
            continue
        name = group.features[0].name
        n_copied = 0
        if name in prefixes:  # leading blocks of stored chunks, as encode_array's
            for i, job in stored_jobs(files, prefixes[name], group.chunks_per_block, label):
                yield (group, i), job
            n_copied = math.ceil(prefixes[name].n_chunks / group.chunks_per_block)
        start = 0
        for i, rows in enumerate(group.block_chunks()):
            if i >= n_copied:
                yield (group, i), functools.partial(_encoded, files, columns[name], start,
                                                    start + rows, group.features, label)
            start += rows


def column_blocks(columns: dict[str, Column], groups: tuple[BlockGroup, ...],
                  prefixes: dict[str, FeaturePlan], label: str
                  ) -> Iterator[tuple[tuple[BlockGroup, int], EncodedBlock]]:
    """The encoded blocks of one-feature ``groups`` of ``columns``, computed in this process.

    ``prefixes``: feature name -> a raw-copy plan of its leading stored chunks
    (:func:`~dcbulk.plan.plan_stored_prefix`), whose blocks are copied as stored.
    """
    with OpenFiles() as files:
        yield from run_blocks(_jobs(columns, groups, prefixes, label, files))


def _read_column(column: Column, block_info=None) -> np.ndarray:
    start, stop = block_info[None]["array-location"][0]
    with OpenFiles() as files:
        return column.rows(files, start, stop)


def column_array(column: Column, group: BlockGroup, name: str) -> da.Array:
    """The column as a dask array with the blocks of ``group`` (for a writer on a cluster)."""
    import dask.array as da
    dtype = np.dtype(column.dtype)
    return da.map_blocks(functools.partial(_read_column, column),
                         chunks=(group.block_chunks(),) + tuple((s,) for s in column.item_shape),
                         dtype=dtype, meta=np.empty((0,) * (1 + len(column.item_shape)), dtype),
                         name=name)
