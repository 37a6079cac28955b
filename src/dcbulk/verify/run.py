"""Checking outputs against their sources, in parallel on a dask cluster.

Small outputs (up to ``FILE_TASK_BYTES`` on disk) are checked by one task each. A larger
output is checked by one metadata task (root attributes, logs, tables, basins,
contours) and one task per run of chunks of each feature (read every chunk of the output,
HDF5 checking Fletcher-32, and compare the decoded rows with ``source[mapping]``). Tasks
are independent (no h5py object travels; each opens its files by path), so dask spreads
them over the workers; ``inline=True`` runs them in the calling process (used by
``convert --verify`` inside a converting worker).

What to check (the pairs) is :mod:`dcbulk.modes.verify`'s: from the caller, a file's
provenance log or an output directory's manifest. Outputs of dcnum's pipeline
(``dcbulk process``) have new events: they are checked alone (:mod:`.processed`).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, field

import h5py
import numpy as np
from distributed import as_completed

from ..engine.client import client_context
from ..errors import DcbulkError, PlanError
from ..plan import ENUMERATE, best_chunk_rows, make_mapping, select_features
from ..filter_expr import parse_filter
from ..read.filtering import filter_mapping
from ..read.inspect import SourceInfo, _walk_event_datasets, empty_event_groups, inspect_source
from ..taskkey import file_key
from .processed import check_processed
from .compare import RowCheck, compare_contours, compare_metadata, compare_rows, file_problems

__all__ = ["VerifyPair", "FileVerdict", "VerifyReport", "VerifySettled", "plan_checks",
           "run_checks", "verify_pair_inline", "TASK_BYTES"]

#: uncompressed output bytes one comparison task reads
TASK_BYTES = 32 * 1024**2
#: outputs up to this size on disk are verified by one task each
FILE_TASK_BYTES = 8 * 1024**2


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # missing: one task reports it


@dataclass(frozen=True)
class VerifyPair:
    """One output and what it must equal."""

    output: str
    source: str
    features: tuple[str, ...] | None = None
    filter: str | None = None
    mapping: tuple | None = None  # explicit indices (API); np arrays are not hashable
    size: int | None = None  # manifest record
    sha256: str | None = None
    #: the output was converted with external data followed (source policy)
    follow_external: bool = False
    #: an output of dcnum's pipeline (``dcbulk process``): checked alone (:mod:`.processed`)
    processed: bool = False


@dataclass
class FileVerdict:
    """The result for one output: ``problems`` holds one line each (empty: equal)."""

    output: str
    source: str
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    """Outcome of :func:`verify` (``ok``: every output equals its source)."""

    files: list[FileVerdict] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def problems(self) -> list[str]:
        return [p for f in self.files for p in f.problems]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "wall_seconds": self.wall_seconds,
                "counts": {"files": len(self.files),
                           "equal": sum(f.ok for f in self.files),
                           "mismatched": sum(not f.ok for f in self.files),
                           "problems": len(self.problems)},
                "files": [asdict(f) for f in self.files]}


@dataclass(frozen=True)
class VerifySettled:
    """One settled verdict as a run's progress callback sees it (as an archive's file)."""

    source: str
    output: str
    status: str  # "done" (equal) or "failed" (differs)
    bytes_in: int
    error: str | None

    @classmethod
    def of(cls, verdict: FileVerdict) -> VerifySettled:
        return cls(verdict.source, verdict.output, "done" if verdict.ok else "failed",
                   _size(verdict.output), "; ".join(verdict.problems) or None)


def _mapping(pair: VerifyPair, info: SourceInfo) -> np.ndarray | None:
    if pair.mapping is not None:
        return make_mapping(np.asarray(pair.mapping), info.n_events)
    if pair.filter:
        return make_mapping(filter_mapping(info, parse_filter(pair.filter)), info.n_events)
    return None


def _out_features(output: str) -> tuple[dict[str, tuple], tuple[str, ...]]:
    """The output's features (shape, dtype) and the empty groups of its ``events``."""
    with h5py.File(output, "r", locking=False) as h5:
        return ({name: (tuple(d.shape), d.dtype.str)
                 for name, d in _walk_event_datasets(h5["events"])
                 if not name.startswith("basinmap")}, empty_event_groups(h5["events"]))


def _pack(checks: list[tuple[int, RowCheck]], task_bytes: int) -> list[list[RowCheck]]:
    """Group row checks into tasks of about ``task_bytes`` output bytes each."""
    tasks: list[list[RowCheck]] = []
    size = task_bytes
    for nbytes, check in checks:
        if size + nbytes > task_bytes:
            tasks.append([])
            size = 0
        tasks[-1].append(check)
        size += nbytes
    return tasks


def plan_checks(pair: VerifyPair, *, task_bytes: int = TASK_BYTES
                ) -> tuple[list[str], list[list[RowCheck]], dict]:
    """Problems found while planning, the row-check tasks, and the metadata-task arguments."""
    try:
        info = inspect_source(pair.source, follow_external=pair.follow_external)
    except DcbulkError as exc:
        return [f"{pair.output}: source {exc}"], [], {}
    try:
        mapping = _mapping(pair, info)
        wanted = [f for f in select_features(
            info, [f for f in pair.features if f != "contour"] if pair.features else None)]
    except (PlanError, DcbulkError) as exc:
        return [f"{pair.output}: {exc}"], [], {}
    try:
        present, empty = _out_features(pair.output)
    except (OSError, KeyError) as exc:
        return [f"{pair.output}: cannot open ({exc})"], [], {}
    n_out = info.n_events if mapping is None else int(mapping.size)
    problems = [f"{pair.output}: feature '{f}' is missing" for f in wanted if f not in present]
    problems += [f"{pair.output}: feature '{f}' is not in the source's selection"
                 for f in present if f not in wanted]
    want_empty = info.empty_groups if pair.features is None else ()
    problems += [f"{pair.output}: empty group 'events/{g}' of the source is missing"
                 for g in want_empty if g not in empty]
    problems += [f"{pair.output}: empty group 'events/{g}' is not in the source"
                 for g in empty if g not in want_empty]
    checks = []
    for name in wanted:
        if name not in present:
            continue
        shape, dtype = present[name]
        if shape[0] != n_out:
            problems.append(f"{pair.output}: feature '{name}' has {shape[0]} events, "
                            f"expected {n_out}")
            continue
        fsrc = info.features[name]
        rows = best_chunk_rows(shape[1:], np.dtype(dtype))
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize)
        step = max(rows, (task_bytes // (rows * row_bytes)) * rows)
        renumber = mapping is not None and name == "index"
        for start in range(0, n_out, step):
            stop = min(start + step, n_out)
            checks.append(((stop - start) * row_bytes, RowCheck(
                output=pair.output, feature=name, start=start, stop=stop, source=fsrc,
                events=None if mapping is None else mapping[start:stop],
                enumerate=renumber or fsrc.origin == ENUMERATE)))
    contour = info.has_contour and (pair.features is None or "contour" in pair.features)
    meta = {"mapping": mapping, "n_source": info.n_events, "contour": contour}
    return problems, _pack(checks, task_bytes), meta


def _metadata_task(pair: VerifyPair, meta: dict) -> list[str]:
    problems = file_problems(pair.output, pair.size, pair.sha256)
    problems += compare_metadata(pair.output, pair.source, mapping=meta["mapping"],
                                 n_source=meta["n_source"])
    try:
        problems += compare_contours(pair.output, pair.source, mapping=meta["mapping"],
                                     expected=meta["contour"])
    except (OSError, KeyError) as exc:
        problems.append(f"{pair.output}: contours unreadable ({exc})")
    return problems


def verify_pair_inline(pair: VerifyPair) -> FileVerdict:
    """Verify one pair in this process (for ``convert --verify`` inside a worker)."""
    if pair.processed:
        return FileVerdict(pair.output, pair.source,
                           file_problems(pair.output, pair.size, pair.sha256)
                           or check_processed(pair.output), ["dcnum output"])
    problems, tasks, meta = plan_checks(pair)
    verdict = FileVerdict(pair.output, pair.source, problems)
    if meta:
        verdict.problems += _metadata_task(pair, meta)
        for task in tasks:
            verdict.problems += compare_rows(task)
        verdict.checked = sorted({c.feature for task in tasks for c in task})
    return verdict


def run_checks(pairs: list[VerifyPair], *, client=None, inline: bool = False,
               progress=None) -> VerifyReport:
    """Check every pair: small outputs one task each, large ones split into runs of rows.

    ``client``: a ``distributed.Client`` (default: a LocalCluster unless ``inline``);
    ``inline`` runs every check in this process; ``progress`` is called as
    ``progress(result, done_count, total_count)`` as each output's verdict settles
    (``result``: :class:`VerifySettled`, ``failed`` when it differs).
    """
    t0 = time.perf_counter()
    report = VerifyReport()
    if inline:
        report.files = [verify_pair_inline(p) for p in pairs]
        report.wall_seconds = time.perf_counter() - t0
        return report
    # small outputs: one task each (no per-chunk scheduling); large ones: split into runs
    whole = [p for p in pairs if p.processed or _size(p.output) <= FILE_TASK_BYTES]
    split = [p for p in pairs if not p.processed and _size(p.output) > FILE_TASK_BYTES]
    split_verdicts: list[FileVerdict] = []

    def tell(verdict: FileVerdict) -> None:
        report.files.append(verdict)
        if progress is not None:
            progress(VerifySettled.of(verdict), len(report.files), len(pairs))

    run = uuid.uuid4().hex[:8]  # keys of this call only: a key still held would give its result
    with client_context(client) as cl:
        # keys as convert_archive's file tasks: the dashboard page lists them in flight
        whole_futs = cl.map(verify_pair_inline, whole, pure=False,
                            key=[file_key(p.output, f"{run}{i}")
                                 for i, p in enumerate(whole)])
        planned = cl.gather(cl.map(plan_checks, split, pure=False))
        futures = []
        for pair, (problems, tasks, meta) in zip(split, planned):
            verdict = FileVerdict(pair.output, pair.source, list(problems),
                                  sorted({c.feature for task in tasks for c in task}))
            split_verdicts.append(verdict)
            if meta:
                futures.append((verdict, cl.submit(_metadata_task, pair, meta, pure=False)))
                futures.extend((verdict, f) for f in cl.map(compare_rows, tasks, pure=False))
        for fut in as_completed(whole_futs):
            tell(fut.result())
        for verdict, fut in futures:
            verdict.problems.extend(fut.result())
        for verdict in split_verdicts:
            tell(verdict)
    order = {p.output: i for i, p in enumerate(pairs)}
    report.files.sort(key=lambda f: order[f.output])
    report.wall_seconds = time.perf_counter() - t0
    return report
