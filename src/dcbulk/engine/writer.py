"""The one writer task per output file.

:func:`write_output` runs on a dask worker (or inline in any process). It creates the output
as ``<output>.<uuid>.partial`` through :class:`~dcbulk.write.HDF5Writer`, leaves the worker's
thread pool (``secede``) so it never occupies a compute slot, submits the encode tasks of its
plan in a bounded window, stores each finished chunk with a direct chunk write as soon as it
arrives, adds metadata, basins and a provenance log, and renames the file into place only
when everything succeeded. On failure the partial file is removed and outstanding tasks are
cancelled.
"""
from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..codec import verify_codec_with_hdf5
from ..errors import ConversionError, DcbulkError, OutputExistsError
from ..partials import commit_file, partial_path
from ..plan import ConversionPlan, FeaturePlan, block_events
from ..write import HDF5Writer
from .finish import write_metadata, write_trailer
from .tasks import ChunkResult, TaskPayload, TaskResult, run_task

__all__ = ["WriteSummary", "write_output", "make_payloads", "exact_features", "iter_results",
           "run_windowed"]

logger = logging.getLogger(__name__)


@dataclass
class WriteSummary:
    """What the writer reports back: small, picklable."""

    source: str
    output: str
    n_events: int
    seconds: float
    bytes_out: int
    features: dict[str, dict] = field(default_factory=dict)


def exact_features(features: Iterable[FeaturePlan], verdicts: dict | None = None
                   ) -> dict[str, bool]:
    """Check once per (filters, dtype, chunk shape) that worker encoding matches HDF5.

    ``verdicts`` maps such keys to earlier results and receives the new ones, so a caller
    converting many files checks each combination once (features copied as stored need no
    check).
    """
    verdicts = {} if verdicts is None else verdicts
    exact = {}
    rng = np.random.default_rng(0)
    for fp in features:
        if fp.raw_copy:
            exact[fp.name] = True
            continue
        key = (fp.codec, fp.dtype, fp.chunk_shape)
        if key not in verdicts:
            shape = (min(3, fp.chunk_rows),) + fp.item_shape
            sample = rng.integers(0, 12, size=shape).astype(fp.dtype)
            verdicts[key] = verify_codec_with_hdf5(fp.codec, np.dtype(fp.dtype),
                                                   fp.chunk_shape, sample)
            if not verdicts[key]:
                logger.warning("worker encoding of %s differs from HDF5 here; storing %s "
                               "through HDF5's filter pipeline", fp.codec.describe(), fp.name)
        exact[fp.name] = verdicts[key]
    return exact


def make_payloads(plan: ConversionPlan, exact: dict[str, bool]) -> Iterator[TaskPayload]:
    """Yield the payload of each task, slicing the mapping lazily."""
    plans = {fp.name: fp for fp in plan.features}
    for task in plan.tasks:
        fps = tuple({b.feature: plans[b.feature] for b in task.blocks}.values())
        yield TaskPayload(
            label=plan.source, features=fps, blocks=task.blocks,
            events=tuple(block_events(plans[b.feature], b, plan.mapping) for b in task.blocks),
            exact=tuple(exact[b.feature] for b in task.blocks))


def _window_size(client) -> int:
    return 2 * max(1, sum(client.nthreads().values())) + 2


def run_windowed(jobs: Iterator[Callable], *, window: int | None = None) -> Iterator:
    """From inside a task: run jobs on the cluster, at most ``window`` in flight.

    Each job is called with the worker's client and returns a future. The calling task
    leaves the worker's thread pool first (``secede``), so it never holds a compute slot
    while it waits. Results are yielded as they complete; a new job is submitted each time
    one has been consumed (backpressure). Outstanding futures are cancelled on error.
    """
    from distributed import as_completed, get_client, secede
    client = get_client()
    secede()
    window = window or _window_size(client)
    futures = as_completed()
    live = []

    def submit_next() -> None:
        job = next(jobs, None)
        if job is not None:
            fut = job(client)
            live.append(fut)
            futures.add(fut)

    for _ in range(window):
        submit_next()
    try:
        for fut in futures:
            result = fut.result()
            live.remove(fut)
            fut.release()
            yield result
            del result
            submit_next()
    finally:
        if live:
            client.cancel(live)


def iter_results(payloads: Iterator, *, inline: bool, window: int | None = None,
                 func=run_task) -> Iterator[TaskResult]:
    """Run payloads inline or on the cluster (see :func:`run_windowed`), yielding results."""
    if inline:
        for payload in payloads:
            yield func(payload)
        return
    prefix = f"dcbulk-encode-{uuid.uuid4().hex[:8]}"
    jobs = (functools.partial(_submit, func, payload, (prefix, i), -i)
            for i, payload in enumerate(payloads))
    yield from run_windowed(jobs, window=window)


def _submit(func, payload, key, priority, client):
    return client.submit(func, payload, key=key, pure=False, priority=priority)


def store_chunk(hw: HDF5Writer, plans: dict, chunk: ChunkResult) -> int:
    """Store one chunk through the writer; return the encoded bytes stored."""
    if chunk.encoded:
        return hw.store_encoded_chunk(chunk.feature, chunk.chunk_index, chunk.data,
                                      chunk.filter_mask)
    start, stop = plans[chunk.feature].chunk_rows_range(chunk.chunk_index)
    hw.events[chunk.feature][start:stop] = chunk.data
    return 0


def write_output(plan: ConversionPlan, *, inline: bool = False, overwrite: bool = False,
                 window: int | None = None, results: Iterator[TaskResult] | None = None,
                 fsync: bool = True, verdicts: dict | None = None) -> WriteSummary:
    """Write one output file from a plan (the single writer of that file).

    Parameters
    ----------
    plan
        The conversion plan.
    inline
        Run the encode tasks in this process instead of on the cluster (small files).
    overwrite
        Replace an existing output.
    window
        Maximum tasks in flight (default: twice the cluster's threads plus two).
    results
        Test/extension hook: an iterator of task results to store instead of running the
        plan's tasks (used by :func:`~dcbulk.engine.api.store_features`).
    fsync
        Make the output durable (file and directory entry) before it gets its final name.
    verdicts
        Known results of :func:`exact_features` (updated in place).

    Raises
    ------
    OutputExistsError
        The output exists and ``overwrite`` is False.
    ConversionError
        Any failure, naming the source and output; no file is left under the output name.
    """
    t0 = time.perf_counter()
    if os.path.exists(plan.output) and not overwrite:
        raise OutputExistsError(f"{plan.output}: exists already (use force/overwrite)")
    os.makedirs(os.path.dirname(os.path.abspath(plan.output)), exist_ok=True)
    partial = partial_path(plan.output)
    plans = {fp.name: fp for fp in plan.features}
    stats = {fp.name: {"mode": "raw-copy" if fp.raw_copy else "encode", "chunks": 0,
                       "raw_bytes": 0, "stored_bytes": 0, "seconds": 0.0,
                       "filters": fp.codec.describe()} for fp in plan.features}
    try:
        with HDF5Writer(partial, mode="w-", ds_kwds=plan.codec.ds_kwds()) as hw:
            write_metadata(hw, plan)
            for fp in plan.features:
                ds, _ = hw.require_feature(fp.name, fp.item_shape, np.dtype(fp.dtype),
                                           ds_kwds=fp.codec.ds_kwds())
                ds.resize(fp.n_rows, axis=0)
            if results is None:
                exact = exact_features(plan.features, verdicts)
                for name, ok in exact.items():
                    if not ok:
                        stats[name]["mode"] = "hdf5-filter"
                results = iter_results(make_payloads(plan, exact), inline=inline, window=window)
            for res in results:
                for chunk in res.chunks:
                    stats[chunk.feature]["stored_bytes"] += store_chunk(hw, plans, chunk)
                    stats[chunk.feature]["chunks"] += 1
                for name, secs in res.seconds.items():
                    stats[name]["seconds"] += secs
                    stats[name]["raw_bytes"] += res.raw_bytes.get(name, 0)
            write_trailer(hw, plan)
        commit_file(partial, plan.output, overwrite=overwrite, fsync=fsync)
    except BaseException as exc:
        if os.path.exists(partial):
            os.unlink(partial)
        if isinstance(exc, (DcbulkError, KeyboardInterrupt, SystemExit)):
            raise
        raise ConversionError(f"{plan.source} -> {plan.output}: {type(exc).__name__}: {exc}"
                              ) from exc
    return WriteSummary(source=plan.source, output=plan.output, n_events=plan.n_events,
                        seconds=time.perf_counter() - t0,
                        bytes_out=os.path.getsize(plan.output), features=stats)
