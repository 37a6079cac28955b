"""The engine's dask arrays: features read block by block, and blocks encoded into chunks.

:func:`read_features` gives each feature of a source (own or from a basin, mapped or not) as
a dask array whose axis-0 blocks are whole chunks of the *output*
(``HDF5Writer.get_best_nd_chunks``). Each array is ``da.map_blocks(read, chunks=...,
dtype=..., block_info)`` without an input array, so a read fuses with what follows it (the
encode) into one task; the graph holds only picklable records
(:class:`~dcbulk.read.inspect.FeatureSource`) and the mapping (one delayed value when it is
large), and each task opens the file by path.

:func:`plan_arrays` builds, for a :class:`~dcbulk.plan.ConversionPlan`, one array of
:class:`EncodedBlock` objects per :class:`~dcbulk.plan.BlockGroup`: read -> encode (scalar
features of a block packed into one record array), or, for chunks copied as stored, one
task per run of stored chunks that proves each chunk sound before handing it on.
:func:`encode_array` does the same for any dask array (``store_features``; leading chunks
that are another file's stored chunks, such as a join's first input's, copied as stored), and
:func:`plan_blocks` computes a plan's blocks with the same functions in the calling thread,
without a graph (a small file's writer).
"""
from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dask
import numpy as np

from ..codec import ChunkCodec, decode_stored_chunks, encode_chunks
from ..errors import ConversionError, DcbulkError
from ..plan import ENUMERATE, BlockGroup, ConversionPlan, FeaturePlan, make_mapping, \
    plan_feature, select_features
from ..read.chunks import OpenFiles, read_event_rows
from ..read.inspect import DatasetRef, FeatureSource, SourceInfo, inspect_source
from .blockpool import run_blocks

if TYPE_CHECKING:  # dask.array (and scipy behind it) is imported only when used
    import dask.array as da

__all__ = ["EncodedBlock", "read_features", "plan_arrays", "plan_blocks", "encode_array",
           "stored_array", "stored_jobs", "contiguous_slice", "feature_rows", "encode_rows",
           "read_failure", "READ_ERRORS"]

#: what reading or encoding a block may raise (each becomes one line naming file and feature)
READ_ERRORS = (DcbulkError, OSError, ValueError, KeyError, RuntimeError, TypeError)


@dataclass(eq=False)
class EncodedBlock:
    """The stored bytes of the output chunks of one block, per feature, and its cost
    (``stored``: chunks copied as a source stored them, not encoded)."""

    chunks: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    raw_bytes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stored: bool = False


def contiguous_slice(events: np.ndarray) -> slice | np.ndarray:
    """A ``slice`` when the indices are consecutive and ascending, else the indices."""
    if events.size and int(events[-1]) - int(events[0]) + 1 == events.size \
            and (events.size < 2 or np.all(np.diff(events) == 1)):
        return slice(int(events[0]), int(events[-1]) + 1)
    return events


def feature_rows(files: OpenFiles, fsrc: FeatureSource, dtype: np.dtype, start: int, stop: int,
                 mapping: np.ndarray | None) -> np.ndarray:
    """Rows ``start:stop`` of a feature (of ``mapping``'s events when given) as ``dtype``."""
    if fsrc.origin == ENUMERATE:  # a mapped index is renumbered 1..n, as dclab requires
        return np.arange(start + 1, stop + 1).astype(dtype)
    events = slice(start, stop) if mapping is None else contiguous_slice(mapping[start:stop])
    rows = read_event_rows(files, fsrc, events)
    if fsrc.feature == "mask" and rows.dtype == bool:
        rows = rows.astype(np.uint8) * np.uint8(255)
    return rows.astype(dtype, copy=False)


def read_failure(label: str, name: str, start: int, stop: int, exc: Exception
                 ) -> ConversionError:
    """The one-line error of a failed read of rows ``start:stop`` of feature ``name``."""
    return ConversionError(f"{label}: feature '{name}' (events {start}..{stop - 1}): "
                           f"{type(exc).__name__}: {exc}")


def _block_rows(files: OpenFiles, fsrcs: tuple[FeatureSource, ...], dtype: np.dtype,
                start: int, stop: int, mapping, label: str) -> np.ndarray:
    """Rows ``start:stop`` of one feature, or of several scalars packed into a record array."""
    out = None if dtype.names is None else np.empty(stop - start, dtype=dtype)
    for fsrc in fsrcs:
        try:
            if out is None:
                return feature_rows(files, fsrc, dtype, start, stop, mapping)
            out[fsrc.feature] = feature_rows(files, fsrc, dtype[fsrc.feature], start, stop,
                                             mapping)
        except READ_ERRORS as exc:
            raise read_failure(label, fsrc.feature, start, stop, exc) from exc
    return out


def _read_block(fsrcs: tuple[FeatureSource, ...], dtype: np.dtype, mapping, label: str, *,
                block_info=None) -> np.ndarray:
    """The dask task of :func:`_block_rows`: one block, its files opened for it."""
    start, stop = block_info[None]["array-location"][0]
    with OpenFiles() as files:
        return _block_rows(files, fsrcs, dtype, start, stop, mapping, label)


def _one(block: EncodedBlock) -> np.ndarray:
    out = np.empty(1, dtype=object)
    out[0] = block
    return out


def encode_rows(rows: np.ndarray, features: tuple[FeaturePlan, ...], label: str
                ) -> EncodedBlock:
    """Encode a block (plain or record rows) into the stored bytes of its output chunks."""
    t0 = time.perf_counter()
    rows = np.asarray(rows)
    block = EncodedBlock()
    for fp in features:
        part = rows[fp.name] if rows.dtype.names else rows
        if fp.name == "mask" and part.dtype == bool:
            part = part.astype(np.uint8) * np.uint8(255)
        part = np.ascontiguousarray(part, dtype=np.dtype(fp.dtype))
        try:
            block.chunks[fp.name] = encode_chunks(part, fp.chunk_rows, fp.codec)
        except READ_ERRORS as exc:
            raise ConversionError(f"{label}: feature '{fp.name}': cannot encode "
                                  f"{fp.codec.describe()}: {type(exc).__name__}: {exc}"
                                  ) from exc
        block.raw_bytes[fp.name] = int(part.nbytes)
    block.seconds = time.perf_counter() - t0
    return block


def _encode_block(rows: np.ndarray, *, features: tuple[FeaturePlan, ...], label: str,
                  block_info=None) -> np.ndarray:
    """The dask task of :func:`encode_rows` (one :class:`EncodedBlock` in an object array).

    Raises
    ------
    ConversionError
        A block whose shape is not the one its array declares (a ``map_blocks`` function
        returning fewer or more rows than it said: the writer would pad or cut the chunk),
        or whose dtype does not cast to the declared one without changing values (float
        values in an array declared ``int16``: the writer would truncate them).
    """
    rows = np.asarray(rows)
    where = (block_info or {}).get(0)
    if where is not None:
        (start, stop), *_ = where["array-location"]
        declared = (stop - start,) + tuple(where["shape"][1:])
        block = (f"{label}: feature '{features[0].name}': block "
                 f"{where['chunk-location'][0]} (rows {start}..{stop - 1})")
        if rows.shape != declared:
            raise ConversionError(f"{block} holds shape {rows.shape}, its array declares "
                                  f"{declared}")
        dtype = np.dtype(features[0].dtype)
        if rows.dtype.names is None and not np.can_cast(rows.dtype, dtype, "safe"):
            raise ConversionError(f"{block} holds dtype {rows.dtype}, its array declares "
                                  f"{dtype} (storing would change values; return the "
                                  f"declared dtype)")
    return _one(encode_rows(rows, features, label))


def _stored_run(files: OpenFiles, fp: FeaturePlan, first: int, last: int, label: str
                ) -> EncodedBlock:
    """Stored chunks ``first:last`` of a feature as they are, each proved sound first."""
    t0 = time.perf_counter()
    ref: DatasetRef = fp.source.data
    tail = (0,) * len(fp.item_shape)
    try:
        ds = files.dataset(ref)
        stored = [ds.id.read_direct_chunk((i * fp.chunk_rows,) + tail)
                  for i in range(first, last)]
    except READ_ERRORS as exc:
        raise read_failure(label, fp.name, first * fp.chunk_rows,
                           min(last * fp.chunk_rows, fp.n_rows), exc) from exc
    dcpl, dtype, shape = ds.id.get_create_plist(), ds.dtype, ds.shape
    # numcodecs checks without HDF5's lock (the threads of a worker check at once)
    decode_stored_chunks(stored, dcpl, dtype, shape, label=f"{label}: feature '{fp.name}'",
                         first_chunk=first, codec=ref.chunk_codec())
    start, stop = first * fp.chunk_rows, min(last * fp.chunk_rows, fp.n_rows)
    return EncodedBlock(chunks={fp.name: stored},
                        raw_bytes={fp.name: (stop - start) * fp.row_nbytes},
                        seconds=time.perf_counter() - t0, stored=True)


def _copy_stored(fp: FeaturePlan, chunks_per_block: int, label: str, block_info=None
                 ) -> np.ndarray:
    """The dask task of :func:`_stored_run`: one block of stored chunks."""
    first = block_info[None]["chunk-location"][0] * chunks_per_block
    with OpenFiles() as files:
        return _one(_stored_run(files, fp, first, min(first + chunks_per_block, fp.n_chunks),
                                label))


def _bound(func, *args, **kwargs):
    """``functools.partial(func, *args, **kwargs)`` as a plain function.

    ``map_blocks`` inspects its function's signature three times (``block_info`` and
    friends); for a partial that costs ~0.2 ms each, a third of building a feature's array.
    """
    if "block_info" in _parameters(func):
        def bound(*more, block_info=None):
            return func(*args, *more, block_info=block_info, **kwargs)
    else:
        def bound(*more):
            return func(*args, *more, **kwargs)
    return bound


@functools.lru_cache(maxsize=None)
def _parameters(func) -> frozenset[str]:
    return frozenset(inspect.signature(func).parameters)


def _group_dtype(group: BlockGroup) -> np.dtype:
    if len(group.features) == 1:
        return np.dtype(group.features[0].dtype)
    return np.dtype([(fp.name, fp.dtype) for fp in group.features])


def _read_array(group: BlockGroup, mapping, label: str, token: str) -> da.Array:
    import dask.array as da
    dtype = _group_dtype(group)
    item = group.features[0].item_shape if dtype.names is None else ()
    name = "-".join(fp.name.replace("/", "-") for fp in group.features[:3])
    # records go inside a closure: dask traverses map_blocks arguments (dataclasses too)
    read = _bound(_read_block, tuple(fp.source for fp in group.features), dtype)
    return da.map_blocks(
        read, mapping, label, chunks=(group.block_chunks(),) + tuple((s,) for s in item), dtype=dtype,
        meta=np.empty((0,) * (1 + len(item)), dtype=dtype),
        name=f"dcbulk-read-{name}-{token}")


def _blocks_of(arr: da.Array, func, *, name: str, **kwargs) -> da.Array:
    """``arr.map_blocks(func, **kwargs)`` giving one :class:`EncodedBlock` per block."""
    n_blocks = len(arr.chunks[0])
    return arr.map_blocks(_bound(func, **kwargs), dtype=object, chunks=((1,) * n_blocks,),
                          drop_axis=list(range(1, arr.ndim)), meta=np.empty(0, dtype=object),
                          name=name)


def read_features(path, features=None, mapping=None, *, chunks_per_block: int = 1
                  ) -> dict[str, da.Array]:
    """Return the features of a source as dask arrays aligned with the output chunks.

    Parameters
    ----------
    path
        The source ``.rtdc`` file, or its :class:`~dcbulk.read.inspect.SourceInfo` when the
        caller inspected it already (a mode's planning: not inspected twice).
    features
        Feature names (``None``: the source's own features; group names such as ``"trace"``
        expand to their members, e.g. ``"trace/fl1_raw"``).
    mapping
        Integer indices or a boolean filter over the source events; the arrays then hold
        ``feature[mapping]``, except ``index``, which is renumbered ``1..n`` exactly as
        :func:`~dcbulk.convert` stores it (dclab requires an enumerated index).
    chunks_per_block
        Output chunks per dask block (1: one block is exactly one output chunk).

    Returns
    -------
    dict of dask.array.Array
        Graphs hold only picklable records; each block task opens the file by path.
    """
    if chunks_per_block < 1:
        raise ValueError(f"chunks_per_block must be >= 1, got {chunks_per_block}")
    info = path if isinstance(path, SourceInfo) else inspect_source(path)
    idx = make_mapping(mapping, info.n_events)
    n_rows = info.n_events if idx is None else int(idx.size)
    out = {}
    for name in select_features(info, features):
        fp = plan_feature(info.features[name], n_rows, ChunkCodec(), mapped=idx is not None)
        group = BlockGroup((fp,), chunks_per_block)
        token = dask.base.tokenize(info.path, info.mtime, name, idx, chunks_per_block)
        out[name] = _read_array(group, idx, info.path, token)
    return out


def plan_arrays(plan: ConversionPlan) -> list[tuple[BlockGroup, da.Array]]:
    """One dask array of :class:`EncodedBlock` objects per block group of the plan."""
    import dask.array as da
    info = plan.source_info
    token = dask.base.tokenize(plan.source, info.mtime if info else 0, plan.output,
                               plan.mapping, plan.codec)
    arrays = []
    for i, group in enumerate(plan.groups):
        if group.n_rows == 0:
            continue
        if group.raw_copy:
            arr = stored_array(group.features[0], group.chunks_per_block, plan.source,
                               f"dcbulk-copy-{i}-{token}")
        else:
            rows = _read_array(group, plan.mapping, plan.source, f"{i}-{token}")
            arr = _blocks_of(rows, _encode_block, features=group.features, label=plan.source,
                             name=f"dcbulk-encode-{i}-{token}")
        arrays.append((group, arr))
    return arrays


def stored_array(fp: FeaturePlan, chunks_per_block: int, label: str, name: str) -> da.Array:
    """The stored chunks of a raw-copy feature plan, ``chunks_per_block`` a block (one
    :class:`EncodedBlock` per block, each chunk proved sound by :func:`_stored_run`)."""
    import dask.array as da
    copy = functools.partial(_copy_stored, fp, chunks_per_block, label)
    return da.map_blocks(copy, chunks=((1,) * math.ceil(fp.n_chunks / chunks_per_block),),
                         dtype=object, meta=np.empty(0, dtype=object), name=name)


def plan_blocks(plan: ConversionPlan) -> Iterator[tuple[tuple[BlockGroup, int], EncodedBlock]]:
    """The encoded blocks of a plan computed in this process, without a graph.

    What :func:`plan_arrays`' tasks compute, by the calling task's block pool
    (:func:`~dcbulk.engine.blockpool.run_blocks`) or block after block in this thread, the
    source files opened once for the whole plan: a small file's writer, or a writer in
    dcbulk's own process, needs no dask graph (building and optimising one costs more than
    encoding a few chunks). Blocks come as they are done (not in order).
    """
    with OpenFiles() as files:
        yield from run_blocks(_block_jobs(plan, files))


def _block_jobs(plan: ConversionPlan, files: OpenFiles) -> Iterator[tuple[tuple, Callable]]:
    """``((group, block index), job)`` of every block of a plan; ``job()`` computes it."""
    label = plan.source
    for group in plan.groups:
        if group.n_rows == 0:
            continue
        if group.raw_copy:
            yield from (((group, i), job) for i, job in stored_jobs(
                files, group.features[0], group.chunks_per_block, label))
            continue
        fsrcs = tuple(fp.source for fp in group.features)
        dtype, start = _group_dtype(group), 0
        for i, rows in enumerate(group.block_chunks()):
            yield (group, i), functools.partial(_read_encoded, files, fsrcs, dtype, start,
                                                start + rows, plan.mapping, group.features,
                                                label)
            start += rows


def stored_jobs(files: OpenFiles, fp: FeaturePlan, chunks_per_block: int, label: str
                ) -> Iterator[tuple[int, Callable[[], EncodedBlock]]]:
    """``(block index, job)`` of a raw-copy plan's blocks of stored chunks (see
    :func:`stored_array`); ``job()`` reads them and proves each sound."""
    for i, first in enumerate(range(0, fp.n_chunks, chunks_per_block)):
        last = min(first + chunks_per_block, fp.n_chunks)
        yield i, functools.partial(_stored_run, files, fp, first, last, label)


def _read_encoded(files: OpenFiles, fsrcs: tuple[FeatureSource, ...], dtype: np.dtype,
                  start: int, stop: int, mapping, features: tuple[FeaturePlan, ...],
                  label: str) -> EncodedBlock:
    """One block read and encoded (a job of :func:`_block_jobs`)."""
    return encode_rows(_block_rows(files, fsrcs, dtype, start, stop, mapping, label), features,
                       label)


def encode_array(arr: da.Array, group: BlockGroup, label: str,
                 stored: FeaturePlan | None = None) -> da.Array:
    """Encode the blocks of any dask array already chunked as ``group`` (store_features).

    With ``stored`` (a raw-copy plan of the array's leading chunks:
    :func:`~dcbulk.plan.plan_stored_prefix`), those blocks are its stored chunks instead.
    """
    token = dask.base.tokenize(arr.name, group, stored)
    name = group.features[0].name.replace("/", "-")
    encoded = _blocks_of(arr, _encode_block, features=group.features, label=label,
                         name=f"dcbulk-encode-{name}-{token}")
    if stored is None:
        return encoded
    import dask.array as da
    copied = stored_array(stored, group.chunks_per_block, label, f"dcbulk-copy-{name}-{token}")
    n_copied = len(copied.chunks[0])
    if n_copied >= len(encoded.chunks[0]):
        return copied
    return da.concatenate([copied, encoded[n_copied:]])
