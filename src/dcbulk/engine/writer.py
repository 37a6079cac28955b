"""The one writer task per output file.

:func:`write_output` runs on a dask worker (or in any process). It creates the output as
``<output>.<uuid>.partial`` through :class:`~dcbulk.write.HDF5Writer`, computes the blocks of
the engine's arrays (:func:`~dcbulk.engine.arrays.plan_arrays`, or arrays handed in by
``store_features``) -- on the cluster in a bounded window (:mod:`.window`, the writer leaves
the worker's thread pool meanwhile) or, for small files, itself (``inline``, keeping its
compute slot, so that no core is oversubscribed; without a dask graph at all:
:func:`~dcbulk.engine.arrays.plan_blocks`) -- stores each block's chunks as it
arrives with ``HDF5Writer.store_encoded_chunk``, adds metadata, basins and a provenance log,
and renames the file into place only when everything succeeded. On failure the partial
file is removed and outstanding tasks are cancelled. A writer whose block pool was closed
(its run in dcbulk's process stops: Ctrl-C) fails at its next block, before its trailer
or before its rename, whichever comes first, so no output appears after the stop began.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator

import numpy as np

from ..errors import ConversionError, DcbulkError
from ..partials import commit_file, partial_path, refuse_existing
from ..plan import BlockGroup, ConversionPlan
from ..write import HDF5Writer
from .arrays import EncodedBlock, plan_arrays, plan_blocks
from .blockpool import raise_if_stopped, run_blocks
from .finish import write_metadata, write_trailer
from .report import Report
from .window import run_windowed

__all__ = ["write_output"]


def _fused_blocks(arr) -> list:
    """The delayed blocks of ``arr``, each the fused read+encode task itself.

    After optimisation dask keeps each block's key as an alias of the fused task; computing
    the alias would schedule two tasks per block (the fused one and a no-op), so the fused
    key is computed directly when the graph says so.
    """
    from dask.delayed import Delayed
    blocks = list(arr.to_delayed(optimize_graph=True).ravel())
    if not blocks:
        return blocks
    graph = dict(blocks[0].dask)
    out = []
    for block in blocks:
        task = graph.get(block.key)
        target = getattr(task, "target", None)
        fused = type(task).__name__ == "Alias" and target in graph
        out.append(Delayed(target if fused else block.key, graph))
    return out


def _jobs(arrays) -> Iterator[tuple[tuple[BlockGroup, int], object]]:
    """``((group, block index), delayed block)`` of every block, group after group."""
    for group, arr in arrays:
        for i, block in enumerate(_fused_blocks(arr)):
            yield (group, i), block


def _blocks(arrays, *, inline: bool, window: int | None
            ) -> Iterator[tuple[tuple[BlockGroup, int], EncodedBlock]]:
    if inline:  # computed by this task's block pool, or here block after block
        from dask.local import get_sync  # the function, not "sync": dask would import
        # distributed to look for a default client first (a run in dcbulk's process never does)
        yield from ((tag, result[0]) for tag, result in run_blocks(
            (tag, functools.partial(block.compute, scheduler=get_sync))
            for tag, block in _jobs(arrays)))
        return
    order = iter(range(0, -1 << 30, -1))
    jobs = ((tag, lambda client, b=block: client.compute(b, priority=next(order)))
            for tag, block in _jobs(arrays))
    for tag, result in run_windowed(jobs, window=window):
        yield tag, result[0]


def _abandon(hw: HDF5Writer | None, partial: str) -> None:
    """Remove a failed output's partial file. One whose last flush failed (a full disk)
    is still open in HDF5: it is emptied first, so that closing it can write what HDF5
    holds (else every later close fails, h5py prints a traceback for each object freed,
    and HDF5 crashes the process at exit)."""
    if hw is not None and hw.h5.id.valid:
        with contextlib.suppress(OSError):
            os.truncate(partial, 0)
        with contextlib.suppress(Exception):
            hw.h5.close()
    if os.path.exists(partial):
        os.unlink(partial)


def write_output(plan: ConversionPlan, *, arrays: list | None = None,
                 blocks: Iterator | None = None, inline: bool = False,
                 overwrite: bool = False, window: int | None = None,
                 fsync: bool = True) -> Report:
    """Write one output file from a plan (the single writer of that file).

    Parameters
    ----------
    plan
        The conversion plan.
    arrays
        ``(BlockGroup, dask array of EncodedBlock)`` pairs to store; by default those of
        :func:`~dcbulk.engine.arrays.plan_arrays` (``store_features`` passes its own).
    blocks
        Instead of ``arrays``: ``((BlockGroup, block index), EncodedBlock)`` pairs computed
        elsewhere (:func:`~dcbulk.engine.columns.column_blocks`), iterated only here.
    inline
        Compute the blocks in this task instead of on the cluster (small files).
    overwrite
        Replace an existing output.
    window
        Maximum blocks in flight (default: twice the cluster's threads plus two).
    fsync
        Make the output durable (file and directory entry) before it gets its final name.

    Raises
    ------
    OutputExistsError
        The output exists and ``overwrite`` is False.
    ConversionError
        Any failure, naming the source and output; no file is left under the output name.
    """
    t0 = time.perf_counter()
    refuse_existing(plan.output, overwrite=overwrite)
    os.makedirs(os.path.dirname(os.path.abspath(plan.output)), exist_ok=True)
    partial = partial_path(plan.output)
    stats = {fp.name: {"mode": "raw-copy" if fp.raw_copy else "encode", "chunks": 0,
                       "copied_chunks": 0, "raw_bytes": 0, "stored_bytes": 0,
                       "seconds": 0.0, "filters": fp.codec.describe()} for fp in plan.features}
    hw = None
    try:
        with HDF5Writer(partial, mode="w-", ds_kwds=plan.codec.ds_kwds()) as hw:
            write_metadata(hw, plan)
            targets = {}  # feature -> its dataset, so no group look-up per chunk
            for fp in plan.features:
                ds, _ = hw.require_feature(fp.name, fp.item_shape, np.dtype(fp.dtype),
                                           ds_kwds=fp.codec.ds_kwds())
                ds.resize(fp.n_rows, axis=0)
                targets[fp.name] = ds
            if blocks is None and arrays is None and inline:  # no graph: computed here
                blocks = plan_blocks(plan)
            elif blocks is None:
                blocks = _blocks(plan_arrays(plan) if arrays is None else arrays,
                                 inline=inline, window=window)
            for (group, index), block in blocks:
                first = index * group.chunks_per_block
                share = block.seconds / max(1, len(block.chunks))
                for name, chunks in block.chunks.items():
                    st, target = stats[name], targets[name]
                    for k, (mask, data) in enumerate(chunks):
                        st["stored_bytes"] += hw.store_encoded_chunk(target, first + k, data,
                                                                     mask)
                    st["chunks"] += len(chunks)
                    st["copied_chunks"] += len(chunks) if block.stored else 0
                    st["raw_bytes"] += block.raw_bytes.get(name, 0)
                    st["seconds"] += share
                del block
            del targets
            raise_if_stopped()  # a run that stops makes nothing more
            write_trailer(hw, plan, {name: st["copied_chunks"] for name, st in stats.items()})
        raise_if_stopped()
        commit_file(partial, plan.output, overwrite=overwrite, fsync=fsync)
    except BaseException as exc:
        _abandon(hw, partial)
        if isinstance(exc, (DcbulkError, KeyboardInterrupt, SystemExit)):
            raise
        raise ConversionError(f"{plan.source} -> {plan.output}: {type(exc).__name__}: {exc}"
                              ) from exc
    raw = sum(s["raw_bytes"] for s in stats.values())
    stored = sum(s["stored_bytes"] for s in stats.values())
    info = plan.source_info
    return Report(source=plan.source or None, output=plan.output, events=plan.n_events,
                  bytes_in=info.size if info else 0, bytes_out=os.path.getsize(plan.output),
                  raw_bytes=raw, compression_ratio=raw / stored if stored else float("nan"),
                  wall_seconds=time.perf_counter() - t0, features=stats,
                  identifier=info.identifier if info else None, inline=inline)
