"""Features as dask arrays, and dask arrays as a stream of finished chunks.

:func:`read_features` gives each feature of a source (own or from a basin, mapped or not) as a
dask array whose axis-0 blocks are whole HDF5 chunks of the *output*
(``HDF5Writer.get_best_nd_chunks``). Each block task carries only picklable recipes (the
feature's :class:`~dcbulk.read.inspect.FeatureSource` and the source event indices) and opens
the file itself.

:func:`iter_array_results` is the writer-side half of
:func:`~dcbulk.engine.api.store_features`: it computes the encode tasks of arbitrary dask
arrays in a bounded window and yields their finished chunks.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import cloudpickle
import dask
import numpy as np

from ..codec import ChunkCodec
from ..errors import PlanError
from ..plan import FeaturePlan, make_mapping, plan_feature, select_features
from ..read.chunks import OpenFiles, read_event_rows
from ..read.inspect import FeatureSource, inspect_source
from .tasks import TaskResult, encode_rows
from .writer import run_windowed

if TYPE_CHECKING:  # dask.array (and scipy behind it) is imported only when used
    import dask.array as da

__all__ = ["read_features", "ArrayBundle", "iter_array_results", "contiguous_slice"]


def contiguous_slice(events: np.ndarray) -> slice | np.ndarray:
    """A ``slice`` when the indices are consecutive and ascending, else the indices."""
    if events.size and int(events[-1]) - int(events[0]) + 1 == events.size \
            and (events.size < 2 or np.all(np.diff(events) == 1)):
        return slice(int(events[0]), int(events[-1]) + 1)
    return events


def _read_block(events: np.ndarray, fsrc: FeatureSource, dtype: str) -> np.ndarray:
    with OpenFiles() as files:
        rows = read_event_rows(files, fsrc, contiguous_slice(np.asarray(events)))
    if fsrc.feature == "mask" and rows.dtype == bool:
        rows = rows.astype(np.uint8) * np.uint8(255)
    return rows.astype(dtype, copy=False)


def read_features(path, features=None, mapping=None, *, chunks_per_block: int = 1
                  ) -> dict[str, da.Array]:
    """Return the features of a source as dask arrays aligned with the output chunks.

    Parameters
    ----------
    path
        The source ``.rtdc`` file.
    features
        Feature names (``None``: the source's own features; group names such as ``"trace"``
        expand to their members, e.g. ``"trace/fl1_raw"``).
    mapping
        Integer indices or a boolean filter over the source events; the arrays then hold
        ``feature[mapping]``.
    chunks_per_block
        HDF5 chunks per dask block (1: one block is exactly one output chunk).

    Returns
    -------
    dict of dask.array.Array
        Graphs hold only picklable recipes; each block task opens the file by path.
    """
    import dask.array as da
    if chunks_per_block < 1:
        raise ValueError(f"chunks_per_block must be >= 1, got {chunks_per_block}")
    info = inspect_source(path)
    idx = make_mapping(mapping, info.n_events)
    n_rows = info.n_events if idx is None else int(idx.size)
    out = {}
    for name in select_features(info, features):
        fp = plan_feature(info.features[name], n_rows, ChunkCodec(), mapped=True)
        rows_per_block = fp.chunk_rows * chunks_per_block
        events = (da.arange(n_rows, chunks=rows_per_block, dtype=np.int64) if idx is None
                  else da.from_array(idx, chunks=rows_per_block))
        new_axes = list(range(1, 1 + len(fp.item_shape)))
        token = dask.base.tokenize(info.path, info.mtime, name, idx, rows_per_block)
        out[name] = events.map_blocks(
            _read_block, fp.source, fp.dtype, dtype=np.dtype(fp.dtype),
            new_axis=new_axes or None,
            chunks=events.chunks + tuple((s,) for s in fp.item_shape),
            meta=np.empty((0,) * (1 + len(fp.item_shape)), dtype=fp.dtype),
            name=f"dcbulk-read-{name.replace('/', '-')}-{token}")
    return out


class ArrayBundle:
    """Dask arrays packed as opaque bytes, so that no scheduler looks inside them.

    The writer task unpacks them on its worker and submits their blocks itself.
    """

    def __init__(self, arrays: dict[str, da.Array]):
        try:
            self.payload = cloudpickle.dumps(arrays)
        except Exception as exc:
            raise PlanError(
                "these dask arrays cannot be sent to the cluster (they hold unpicklable "
                "objects such as h5py datasets); build them with dcbulk.read_features or "
                f"from numpy/dask operations: {type(exc).__name__}: {exc}") from exc

    def arrays(self) -> dict[str, da.Array]:
        return cloudpickle.loads(self.payload)


def _encode_block(rows: np.ndarray, fp: FeaturePlan, first_chunk: int, exact: bool
                  ) -> TaskResult:
    t0 = time.perf_counter()
    res = TaskResult(chunks=encode_rows(fp, np.asarray(rows), first_chunk, exact))
    res.seconds[fp.name] = time.perf_counter() - t0
    res.raw_bytes[fp.name] = int(np.asarray(rows).nbytes)
    return res


def iter_array_results(bundle: ArrayBundle, plans: dict[str, FeaturePlan],
                       exact: dict[str, bool], *, inline: bool, window: int | None = None
                       ) -> Iterator[TaskResult]:
    """Yield encoded chunks of every block of every array, computed in a bounded window."""
    arrays = bundle.arrays()
    items = []
    for name, arr in arrays.items():
        fp = plans[name]
        starts = np.cumsum((0,) + arr.chunks[0][:-1]) // fp.chunk_rows
        for block, start in zip(arr.to_delayed().ravel(), starts):
            items.append(dask.delayed(_encode_block)(block, fp, int(start), exact[name]))
    if inline:
        for item in items:
            yield item.compute(scheduler="sync")
        return
    yield from run_windowed((functools.partial(_compute, item) for item in items),
                            window=window)


def _compute(item, client):
    return client.compute(item)
