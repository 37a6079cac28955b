"""The Python API of the engine: :func:`convert` one file, :func:`store_features` of dask arrays.

Both plan on the client (small I/O: one inspection of the source) and submit exactly one
writer task per output to the cluster. ``convert``'s writer builds the engine's dask arrays
(read -> encode) on its worker from the plan; ``store_features`` encodes the caller's
arrays (``map_blocks``) and ships that graph to its writer. Errors from workers or the writer reach the caller as
:class:`~dcbulk.errors.DcbulkError` subclasses naming the file and feature.
"""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import cloudpickle
import numpy as np

from ..arguments import (check_timeout, client_arg, feature_names, flag_args, mapping_arg,
                         path_arg)
from ..codec import ChunkCodec, parse_compression
from ..errors import FileTimeoutError, PlanError
from ..partials import commit_deadline, current_deadline, refuse_existing
from ..plan import (DEFAULT_TASK_BYTES, BlockGroup, ConversionPlan, ExtraMetadata,
                    FeaturePlan, best_chunk_rows, make_mapping, plan_conversion,
                    plan_stored_prefix)
from ..read.inspect import DatasetRef, FeatureSource, SourceInfo, inspect_source
from .arrays import encode_array
from .blockpool import lone_block_pool
from .columns import Column, column_array, column_blocks
from .client import client_context
from .report import Report
from .writer import write_output

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["Report", "check_new_features", "convert", "store_features",
           "submit_conversion"]


def _codec(compression) -> ChunkCodec:
    return compression if isinstance(compression, ChunkCodec) else parse_compression(compression)


def submit_conversion(client, plan: ConversionPlan, *, overwrite: bool = False,
                      inline: bool = False, lone: bool = False):
    """Submit the writer task of one plan; return its future (a :class:`Report`).

    The task's key is a random token, never the file's name (names need not be valid
    UTF-8, keys must be); the caller's :func:`~dcbulk.partials.commit_deadline` goes along.
    With ``lone`` (the cluster has nothing else to do) the writer computes the blocks with
    its host's threads in its own process (:func:`~dcbulk.engine.blockpool.lone_block_pool`).
    """
    return client.submit(_write_plan, plan, inline=inline, lone=lone, overwrite=overwrite,
                         deadline=current_deadline(), pure=False,
                         key=f"dcbulk-write-{uuid.uuid4().hex}")


def _write_plan(plan: ConversionPlan, *, inline: bool, lone: bool, overwrite: bool,
                deadline: float | None) -> Report:
    """The writer task of :func:`submit_conversion` (within the caller's deadline)."""
    with commit_deadline(deadline), lone_block_pool(lone) as here:
        return write_output(plan, inline=inline or here, overwrite=overwrite)


def convert(source, output, *, features=None, mapping=None, compression="zstd:5",
            client=None, basin_to_source: bool = False, overwrite: bool = False,
            max_task_bytes: int = DEFAULT_TASK_BYTES, extra: ExtraMetadata | None = None,
            timeout: float | None = None, follow_external: bool = False) -> Report:
    """Convert one ``.rtdc`` file: read, map, encode on the workers, write once.

    Parameters
    ----------
    source
        The source file.
    output
        The output file; written as a ``.partial`` sibling and renamed when complete.
    features
        Feature names (``None``: every own feature of the source; basins are carried over).
    mapping
        Integer indices or boolean filter over the source events (``None``: all events).
    compression
        A ``--compression`` spec of the codec table (:data:`dcbulk.codec.COMPRESSORS`:
        ``"zstd:5"`` (default), ``"gzip:N"``, ``"lz4"``, ``"blosc2-zstd:N"``, ...,
        ``"none"``) or a ChunkCodec.
        Source chunks already stored with these filters at an equal or higher level are
        copied as stored.
    client
        A ``distributed.Client``; by default a LocalCluster sized to the machine is started
        and closed again. The conversion takes the cluster for itself: when all its workers
        run on one host, the writer's worker computes every block with as many threads as
        they have (:func:`~dcbulk.engine.blockpool.lone_block_pool`), else the blocks are
        tasks on all workers.
    basin_to_source
        Add a file basin that points back to the source (with the mapping), so every
        feature of the source remains reachable from the output.
    overwrite
        Replace an existing output.
    max_task_bytes
        Uncompressed bytes per worker task.
    extra
        Root attributes, logs and tables written on top of the source's metadata.
    timeout
        Seconds the writer may take from its submission; past it the output is not
        committed and :class:`~dcbulk.errors.FileTimeoutError` is raised (a writer that
        never returns is abandoned: its thread cannot be stopped, but it commits nothing).
    follow_external
        Follow external links, virtual datasets and external raw storage in the source
        (refused by default, see :mod:`dcbulk.read.policy`).

    Returns
    -------
    Report

    Raises
    ------
    UsageError
        A source or output that is not one path (one line naming it).
    SourceError
        The source is missing, not HDF5 or not an .rtdc file, or breaks the source policy.
    PlanError
        Bad feature names or mapping.
    OutputExistsError
        The output exists and ``overwrite`` is False.
    ChecksumMismatchError
        A chunk to be copied as stored is damaged (the message names file, feature and
        chunk index); no file is left under the output name.
    ConversionError
        A worker or the writer failed; no file is left under the output name.
    """
    t0 = time.perf_counter()
    flag_args(basin_to_source=basin_to_source, overwrite=overwrite,
              follow_external=follow_external)
    client_arg(client)
    output = os.path.abspath(path_arg("output", output))
    refuse_existing(output, overwrite=overwrite)
    info = inspect_source(path_arg("source", source), follow_external=follow_external)
    options = {"compression": _codec(compression).describe(), "features": features,
               "basin_to_source": basin_to_source}
    if follow_external:
        options["follow_external"] = True
    plan = plan_conversion(info, output, features=features, mapping=mapping,
                           codec=_codec(compression), max_task_bytes=max_task_bytes,
                           basin_to_source=basin_to_source, options=options)
    if extra is not None:
        plan = replace(plan, extra=extra)
    with client_context(client) as cl, commit_deadline(_deadline(timeout)):
        report = result_within(submit_conversion(cl, plan, overwrite=overwrite, lone=True),
                               timeout, output)
    return replace(report, wall_seconds=time.perf_counter() - t0)


def _deadline(timeout: float | None) -> float | None:
    """The commit deadline of a call with ``timeout``; else the caller's (if any)."""
    check_timeout(timeout)
    return current_deadline() if timeout is None else time.time() + timeout


def result_within(fut, timeout: float | None, output: str) -> Report:
    """The future's result, waiting at most ``timeout`` (plus a grace for its answer).

    Raises
    ------
    FileTimeoutError
        The task ran past its limit; its future is cancelled (the task commits nothing
        after its deadline).
    """
    if timeout is None:
        return fut.result()
    try:
        return fut.result(timeout=timeout + max(2.0, 0.1 * timeout))
    except TimeoutError:
        fut.cancel()
        raise FileTimeoutError(f"{output}: exceeded the time limit of {timeout:g} s per "
                               f"file; its output was not kept") from None


def _feature_groups(arrays: dict, codec: ChunkCodec, max_task_bytes: int,
                    stored: dict[str, FeatureSource], named: dict[str, FeatureSource]
                    ) -> tuple[tuple[BlockGroup, ...], int, dict[str, FeaturePlan]]:
    """One block group per array (or :class:`~dcbulk.engine.columns.Column`), the rows, and
    the raw-copy plans of the leading stored chunks of those in ``stored`` (``named``: the
    source features some arrays hold, whose attributes the writer then keeps)."""
    if not arrays:
        raise PlanError("store_features needs at least one array")
    lengths = {name: int(arr.shape[0]) for name, arr in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise PlanError(f"arrays differ in length: {lengths}")
    n_rows = next(iter(lengths.values()))
    groups, prefixes = [], {}
    for name, arr in arrays.items():
        dtype = np.dtype(arr.dtype)
        if name == "mask" and dtype == bool:
            dtype = np.dtype(np.uint8)
        item_shape = tuple(int(s) for s in arr.shape[1:])
        what = arr.name if hasattr(arr, "name") else type(arr).__name__  # (a Column)
        ref = DatasetRef(path="", name=f"dask:{what}", shape=tuple(arr.shape),
                         dtype=dtype.str, chunks=None, codec=None)
        fp = FeaturePlan(name=name, source=named.get(name, FeatureSource(name, ref, "dask")),
                         item_shape=item_shape, dtype=dtype.str,
                         chunk_rows=best_chunk_rows(item_shape, dtype), n_rows=n_rows,
                         codec=codec)
        per_block = fp.chunks_per_task(max_task_bytes)
        prefix = plan_stored_prefix(fp, stored[name], per_block) if name in stored else None
        if prefix is not None:
            prefixes[name], per_block = prefix
        groups.append(BlockGroup((fp,), per_block))
    return tuple(groups), n_rows, prefixes


def _name_fault(name, nested: bool) -> str | None:
    """Why ``name`` cannot be the name of a feature ``events/<name>``, or None."""
    if not isinstance(name, str) or not name:
        return "is no feature name (need a non-empty string)"
    if "\x00" in name:
        return "holds a NUL character (HDF5 would cut the name there)"
    if "/" in name and not nested:
        return "holds '/' (it would become nested groups)"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "is or holds an empty, '.' or '..' path part"
    if name.split("/")[0] == "contour":  # dclab could not read the file
        return ("is dclab's contour, stored as one dataset per event (events/contour/<n>), "
                "not one array")
    return None


def check_new_features(arrays: Mapping, who: str, *, nested: bool = True) -> None:
    """Refuse arrays that cannot be stored as the features ``events/<name>``: a name that is
    not a non-empty string, holds NUL, an empty, ``.`` or ``..`` part, or, without
    ``nested`` (a trace's ``trace/<name>``), any ``/``; ``contour``; an array of Python
    objects.

    Raises
    ------
    PlanError
        One line, ``who`` (what gave the arrays) and the feature.
    """
    for name, arr in arrays.items():
        fault = _name_fault(name, nested)
        if fault is not None:
            raise PlanError(f"{who}: the feature name {name!r} {fault}")
        dtype = getattr(arr, "dtype", None)
        if np.dtype(np.asarray(arr).dtype if dtype is None else dtype).kind == "O":
            raise PlanError(f"{who}: the feature {name!r} holds Python objects (dtype "
                            f"object); HDF5 stores numbers (a numeric or boolean array)")


def _named(info: SourceInfo | None, arrays: dict, names: str | Iterable[str]
           ) -> dict[str, FeatureSource]:
    """The source features ``store_features(source_features=names)`` says arrays hold."""
    names = list(feature_names(names, "source_features")) if names else []
    if names and info is None:
        raise PlanError("store_features: source_features= needs metadata_from=")
    unknown = [n for n in names if n not in arrays or n not in info.features]
    if unknown:
        raise PlanError(f"store_features: source_features {unknown} are not both an array "
                        f"and a feature of {info.path}")
    return {n: info.features[n] for n in names}


def _dask_arrays(arrays: dict) -> dict:
    """The arrays as dask arrays of known chunks (columns stay as they are)."""
    import dask.array as da
    out = {}
    for name, arr in arrays.items():
        if not isinstance(arr, (da.Array, Column)):
            arr = da.from_array(np.asarray(arr))
        if isinstance(arr, da.Array) and any(np.isnan(c) for dim in arr.chunks for c in dim):
            raise PlanError(f"array '{name}' has unknown chunk sizes; call compute_chunk_sizes()")
        if not arr.shape:  # (a Column has a shape, no ndim)
            raise PlanError(f"array '{name}' holds a single value (shape ()), not one per event")
        out[name] = arr
    return out


def _aligned(arr, group: BlockGroup) -> da.Array:
    """An array (or column) as a dask array with the blocks of ``group``."""
    name = group.features[0].name
    if isinstance(arr, Column):
        return column_array(arr, group, f"dcbulk-column-{name.replace('/', '-')}-"
                                        f"{uuid.uuid4().hex}")
    return arr.rechunk((group.block_rows,) + tuple(-1 for _ in arr.shape[1:]))


def _write_bundle(plan: ConversionPlan, payload: bytes, *, overwrite: bool,
                  deadline: float | None = None) -> Report:
    """The writer task of store_features: unpack the encoded arrays and write them
    (within the caller's :func:`~dcbulk.partials.commit_deadline`)."""
    with commit_deadline(deadline):
        return write_output(plan, arrays=cloudpickle.loads(payload), overwrite=overwrite)


def store_features(arrays: dict, output, *, metadata_from=None, basins: bool = True,
                   mapping=None, compression="zstd:5", client=None, overwrite: bool = False,
                   max_task_bytes: int = DEFAULT_TASK_BYTES,
                   extra: ExtraMetadata | None = None, timeout: float | None = None,
                   inline: bool = False, stored: dict | None = None,
                   source_features: Iterable[str] = ()) -> Report:
    """Write dask arrays as features of a new ``.rtdc`` file.

    Arrays are rechunked to whole multiples of the best HDF5 chunks, encoded on the workers
    and stored by one writer task (with ``inline``: computed, encoded and written in this
    thread, no task submitted).

    Parameters
    ----------
    arrays
        Feature name -> dask (or numpy) array, or :class:`~dcbulk.engine.columns.Column`
        (pieces of source features, a join's), all of the same length. Columns alone with
        ``inline`` are computed without dask (:func:`~dcbulk.engine.columns.column_blocks`).
        Names and dtypes are checked first (:func:`check_new_features`).
    output
        The output file.
    metadata_from
        A source file whose attributes, logs and tables are copied (never overriding).
    basins
        With ``metadata_from``: copy its basins and add a file basin pointing to it, so its
        other features stay reachable from the output.
    mapping
        With ``metadata_from``: the arrays hold these events of it (indices or boolean
        filter, as for :func:`~dcbulk.read_features`); its basins and the basin to it carry
        the mapping, so the output is a filtered subset of ``metadata_from``.
    compression, client, overwrite, max_task_bytes, extra, timeout
        As for :func:`convert`.
    inline
        Compute and write everything in the calling thread, without a cluster (small
        outputs; a file task of a job uses it so that it never waits for other tasks).
    stored
        Feature name -> the :class:`~dcbulk.read.inspect.FeatureSource` whose rows are the
        array's first rows, unchanged (a join's first input): its whole stored chunks that
        have the output's chunk shape and filters at least as good as ``compression`` are
        copied as stored, each proved sound first, instead of being decoded and encoded.
    source_features
        With ``metadata_from``: names of arrays that hold its feature of that name, with the
        rows ``mapping`` selects (as :func:`~dcbulk.read_features` gives them); the
        feature's own attributes (e.g. a ``unit``) and, unmapped, its statistics are then
        kept, as :func:`convert` keeps them.
    """
    t0 = time.perf_counter()
    mapping_arg("arrays", arrays, "a dict of feature name -> array")
    flag_args(basins=basins, overwrite=overwrite, inline=inline)
    client_arg(client)
    check_new_features(arrays, "store_features")
    output = os.path.abspath(path_arg("output", output))
    refuse_existing(output, overwrite=overwrite)
    codec = _codec(compression)
    in_process = bool(inline and arrays
                      and all(isinstance(a, Column) for a in arrays.values()))
    arrays = arrays if in_process else _dask_arrays(arrays)
    info = (inspect_source(path_arg("metadata_from", metadata_from))
            if metadata_from is not None else None)
    groups, n_rows, prefixes = _feature_groups(arrays, codec, max_task_bytes, stored or {},
                                               _named(info, arrays, source_features))
    if mapping is not None and info is None:
        raise PlanError("store_features: mapping= needs metadata_from= (the mapped source)")
    idx = make_mapping(mapping, info.n_events) if info is not None else None
    expected = info.n_events if idx is None and info is not None else (
        idx.size if idx is not None else n_rows)
    if info is not None and expected != n_rows:
        what = "the mapping selects" if idx is not None else f"{info.path} has"
        raise PlanError(f"{what} {expected} events but the arrays have {n_rows}")
    if info is not None and not basins:
        info = replace(info, basins=())
    plan = ConversionPlan(source=info.path if info else "", output=output, n_events=n_rows,
                          features=tuple(g.features[0] for g in groups), groups=groups,
                          codec=codec, mapping=idx, source_info=info,
                          basin_to_source=bool(basins and info is not None),
                          options={"compression": codec.describe(), "store_features": True},
                          extra=extra)
    label = info.path if info else output
    if in_process:  # no dask at all: blocks computed by this thread's block pool
        with commit_deadline(_deadline(timeout)):
            report = write_output(plan, blocks=column_blocks(arrays, groups, prefixes, label),
                                  inline=True, overwrite=overwrite)
        return replace(report, wall_seconds=time.perf_counter() - t0)
    encoded = [(g, encode_array(_aligned(arrays[g.features[0].name], g), g, label,
                                prefixes.get(g.features[0].name))) for g in groups if g.n_rows]
    try:
        payload = cloudpickle.dumps(encoded)
    except Exception as exc:
        raise PlanError(
            "these dask arrays cannot be sent to the cluster (they hold unpicklable "
            "objects such as h5py datasets); build them with dcbulk.read_features or "
            f"from numpy/dask operations: {type(exc).__name__}: {exc}") from exc
    if inline:
        with commit_deadline(_deadline(timeout)):
            report = write_output(plan, arrays=encoded, inline=True, overwrite=overwrite)
        return replace(report, wall_seconds=time.perf_counter() - t0)
    with client_context(client) as cl, commit_deadline(_deadline(timeout)):
        fut = cl.submit(_write_bundle, plan, payload, overwrite=overwrite, pure=False,
                        deadline=current_deadline(), key=f"dcbulk-write-{uuid.uuid4().hex}")
        report = result_within(fut, timeout, output)
    return replace(report, wall_seconds=time.perf_counter() - t0)
