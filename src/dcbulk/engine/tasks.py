"""Worker tasks: read the rows of a task's blocks and turn them into finished HDF5 chunks.

A task receives a :class:`TaskPayload` (plain, picklable data), opens the sources it needs
by path, and returns a :class:`TaskResult` with, per output chunk, either the exact bytes
HDF5 would store (``encoded=True``, written with ``write_direct_chunk``) or the decoded rows
(``encoded=False``, for filters the worker cannot reproduce; the writer then stores them
through HDF5's own filter pipeline).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConversionError, DcbulkError
from ..plan import ENUMERATE, BlockRecipe, FeaturePlan
from ..read.chunks import OpenFiles, read_event_rows, read_raw_chunk

__all__ = ["TaskPayload", "ChunkResult", "TaskResult", "run_task", "encode_rows"]


@dataclass(frozen=True, eq=False)
class TaskPayload:
    """One worker task: blocks of features plus the source events of each block."""

    label: str
    features: tuple[FeaturePlan, ...]
    blocks: tuple[BlockRecipe, ...]
    events: tuple[slice | np.ndarray, ...]
    exact: tuple[bool, ...]


@dataclass(frozen=True, eq=False)
class ChunkResult:
    """One finished output chunk (or, when not ``encoded``, its rows)."""

    feature: str
    chunk_index: int
    data: bytes | np.ndarray
    filter_mask: int = 0
    encoded: bool = True


@dataclass(eq=False)
class TaskResult:
    """What a task hands to the writer, with per-feature bookkeeping."""

    chunks: list[ChunkResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    raw_bytes: dict[str, int] = field(default_factory=dict)


def encode_rows(fp: FeaturePlan, rows: np.ndarray, first_chunk: int, exact: bool
                ) -> list[ChunkResult]:
    """Split decoded rows into the output chunks of ``fp``, encoding when ``exact``."""
    if fp.name == "mask" and rows.dtype == bool:
        rows = rows.astype(np.uint8) * np.uint8(255)
    rows = np.ascontiguousarray(rows, dtype=np.dtype(fp.dtype))
    out = []
    for pos in range(0, rows.shape[0], fp.chunk_rows):
        part = rows[pos:pos + fp.chunk_rows]
        index = first_chunk + pos // fp.chunk_rows
        if exact:
            out.append(ChunkResult(fp.name, index, fp.codec.encode(part, fp.chunk_shape)))
        else:
            out.append(ChunkResult(fp.name, index, part.copy(), encoded=False))
    return out


def _run_block(files: OpenFiles, fp: FeaturePlan, block: BlockRecipe,
               events, exact: bool) -> list[ChunkResult]:
    if fp.raw_copy:
        out = []
        for index in range(block.chunk_start, block.chunk_stop):
            mask, data = read_raw_chunk(files, fp.source.data, index)
            out.append(ChunkResult(fp.name, index, data, filter_mask=mask))
        return out
    if fp.source.origin == ENUMERATE:
        start, _ = fp.chunk_rows_range(block.chunk_start)
        _, stop = fp.chunk_rows_range(block.chunk_stop - 1)
        rows = np.arange(start + 1, stop + 1).astype(fp.dtype)
    else:
        rows = read_event_rows(files, fp.source, events)
    return encode_rows(fp, rows, block.chunk_start, exact)


def run_task(payload: TaskPayload) -> TaskResult:
    """Read, map and encode every block of a task.

    Raises
    ------
    ConversionError
        Naming the source and the feature, chained to the original error.
    """
    plans = {fp.name: fp for fp in payload.features}
    result = TaskResult()
    with OpenFiles() as files:
        for block, events, exact in zip(payload.blocks, payload.events, payload.exact):
            fp = plans[block.feature]
            t0 = time.perf_counter()
            try:
                chunks = _run_block(files, fp, block, events, exact)
            except (DcbulkError, OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ConversionError(
                    f"{payload.label}: feature '{fp.name}' (chunks {block.chunk_start}.."
                    f"{block.chunk_stop - 1}): {type(exc).__name__}: {exc}") from exc
            result.chunks.extend(chunks)
            result.seconds[fp.name] = result.seconds.get(fp.name, 0.0) + time.perf_counter() - t0
            start, _ = fp.chunk_rows_range(block.chunk_start)
            _, stop = fp.chunk_rows_range(block.chunk_stop - 1)
            result.raw_bytes[fp.name] = (result.raw_bytes.get(fp.name, 0)
                                         + (stop - start) * fp.row_nbytes)
    return result
