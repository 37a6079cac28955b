"""Converting whole archives: many outputs at once, resumable, each file isolated.

:func:`convert_archive` discovers the sources, consults the manifest (skip what is finished,
redo what is not), submits one *file task* (:mod:`.filetask`) per output to the cluster,
keeping at most ``max_open_outputs`` in flight, and records each outcome. A file is encoded inline by its
task (no per-block scheduling, no transfers) when it is small or when enough other files
remain to keep every thread busy (at most half of a thread's share of the remaining bytes);
only the others feed the workers with encode tasks.
A failing file is recorded with its reason and never stops the others.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

from ..codec import parse_compression
from ..engine.report import Report
from ..errors import (LinkRefusedError, OutputExistsError, PlanError, UsageError,
                      describe_failure)
from ..filter_expr import parse_filter
from ..nofollow import check_parents
from .filetask import INLINE_BYTES, ArchiveOptions, convert_file, run_file_job, timeout_message
from .lock import output_lock
from .manifest import Manifest
from .resume import adopt_output, refuse_overwrite
from .sources import SourceEntry, discover_sources, output_path
from .usage import (check_feature_names, check_output_dir, check_output_placement,
                    check_timeout)

__all__ = ["FileResult", "ArchiveReport", "convert_archive",
           # the file task (:mod:`.filetask`), importable from here as before
           "ArchiveOptions", "INLINE_BYTES", "convert_file", "run_file_job"]


logger = logging.getLogger(__name__)


@dataclass
class FileResult:
    """The outcome for one source file."""

    source: str
    output: str
    status: str  # "done", "skipped", "failed", "planned"
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    raw_bytes: int = 0
    ratio: float | None = None
    seconds: float = 0.0
    reason: str = ""
    error: str | None = None


@dataclass
class ArchiveReport:
    """Outcome of :func:`convert_archive` (``ok`` is False when any file failed)."""

    output_dir: str
    files: list[FileResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    dashboard: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        done = [f for f in self.files if f.status == "done"]
        return {
            "output_dir": self.output_dir, "wall_seconds": self.wall_seconds,
            "dashboard": self.dashboard,
            "counts": {s: self.count(s) for s in ("done", "skipped", "failed", "planned")},
            "bytes_in": sum(f.bytes_in for f in done), "bytes_out": sum(f.bytes_out for f in done),
            "files": [asdict(f) for f in self.files],
        }


def _settled(entry: SourceEntry, out: str, manifest: Manifest, options: ArchiveOptions, *,
             resume: bool, force: bool, record: bool = True,
             finished: Callable | None = None) -> FileResult | None:
    """The result for a file that needs no conversion (finished, or blocked), else None.

    With ``record`` False (dry runs) nothing is entered in the manifest.
    """
    decision = manifest.decide(entry)
    if resume and not force and decision.action == "skip":
        return FileResult(entry.path, out, "skipped", bytes_in=decision.size,
                          reason=decision.reason)
    if decision.reason != "unrecorded output exists" or force:
        return None
    if resume and adopt_output(entry, out, options.fingerprint_dict(), manifest, record=record,
                               finished=finished):
        return FileResult(entry.path, out, "skipped", bytes_in=decision.size,
                          reason="finished (found by its provenance log)")
    error = OutputExistsError(f"{out}: exists and is not a finished output of this archive "
                              f"(use --force to replace it)")
    return FileResult(entry.path, out, "failed", reason="output exists", error=str(error))


def _result_from(entry: SourceEntry, out: str, res: Report) -> FileResult:
    ratio = res.compression_ratio if res.compression_ratio == res.compression_ratio else None
    return FileResult(source=entry.path, output=out, status="done", events=res.events,
                      bytes_in=res.bytes_in, bytes_out=res.bytes_out,
                      raw_bytes=res.raw_bytes, ratio=ratio, seconds=res.wall_seconds)


def convert_archive(sources: Iterable, output_dir, *, include: str = "*.rtdc",
                    features=None, filter: str | None = None, compression: str = "zstd:5",
                    client=None, resume: bool = True, force: bool = False,
                    max_open_outputs: int | None = None, basin_to_source: bool = False,
                    dry_run: bool = False, inline_bytes: int = INLINE_BYTES, verify: bool = False,
                    follow_external: bool = False,
                    progress: Callable[[FileResult, int, int], None] | None = None,
                    file_job: Callable | None = None, timeout: float | None = None,
                    follow_links: bool = False) -> ArchiveReport:
    """Convert every source of an archive into ``output_dir``, mirroring the tree.

    Parameters
    ----------
    sources
        Files, directories (walked recursively) or glob patterns.
    output_dir
        Where outputs (and ``dcbulk-manifest.jsonl``, ``.dcbulk.lock``) go; one run at a
        time (a second one raises :class:`~dcbulk.errors.OutputLockedError`).
    include
        File-name pattern for files found in directories.
    features, filter, compression, basin_to_source
        Conversion options: feature selection, event filter expression over scalar
        features (e.g. ``"deform < 0.1"``), output filters, basin back to the source.
    client
        A ``distributed.Client``; by default a LocalCluster sized to the machine.
    resume
        Skip files the manifest records as finished (unchanged source, output present).
        ``False`` redoes them, which needs ``force`` where outputs exist (else
        :class:`~dcbulk.errors.OutputExistsError` before any work).
    force
        Redo every file, overwrite outputs and accept changed options.
    max_open_outputs
        Output files being written at once (default: the cluster's threads + 2).
    dry_run
        Only decide what would be done (status ``planned`` or ``skipped``).
    inline_bytes
        Files with at most this many uncompressed bytes are always encoded by their writer
        task; larger ones too while the remaining files keep every thread busy.
    progress
        Called as ``progress(result, done_count, total_count)`` after each file.
    verify
        Compare each output with its source before recording it as done (a mismatch fails
        the file and removes its output).
    follow_external
        Follow HDF5 external links, soft links out of their group, virtual datasets and
        external raw storage in sources (by default a file holding one fails with one line
        naming it; see :mod:`dcbulk.read.policy`).
    file_job
        Replaces :func:`convert_file` as the task that makes one output (same call and
        result dict; used by :mod:`dcbulk.modes`). Its ``fingerprint`` attribute (a
        JSON-ready dict, if any) joins the options fingerprint in the manifest; its
        optional ``output_relpath(relpath)`` names the outputs (e.g. ``_dcn.rtdc``), its
        optional ``finished(source, output)`` recognises an output a killed run finished
        but could not record, and a result with a ``note`` is reported as skipped (not
        recorded).
    timeout
        Seconds one file's task may run (from when it starts on its worker); a file that
        exceeds it fails alone, without output. A task that never returns is abandoned
        (its future cancelled); its worker thread cannot be stopped and may go on running,
        but it commits no output after the limit and writes no manifest line.
    follow_links
        Walk symbolic links in source directories that lead out of the directory given
        (by default they are skipped with one warning line each).

    Returns
    -------
    ArchiveReport
        One entry per source, failures with their reason.
    """
    t0 = time.perf_counter()
    output_dir = os.path.abspath(output_dir)
    check_timeout(timeout)
    try:
        parse_compression(compression)  # fail early on a bad spec
    except PlanError as exc:
        raise UsageError(str(exc)) from exc
    if verify and file_job is not None:
        raise PlanError("verify compares conversions with their sources; it does not apply "
                        "to the outputs of a file job (reprocess, condense)")
    expr = parse_filter(filter)
    options = ArchiveOptions(features=tuple(features) if features else None,
                             filter=expr.text if expr is not None else None,
                             compression=str(compression), basin_to_source=basin_to_source,
                             follow_external=bool(follow_external),
                             job=getattr(file_job, "fingerprint", None))
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    sources = list(sources)
    if options.features:
        check_feature_names(options.features, what="features")
    if expr is not None:
        check_feature_names(expr.names, what=f"filter '{expr.text}'")
    check_output_placement(sources, output_dir)
    check_output_dir(output_dir)
    entries = discover_sources(sources, include=include, output_dir=output_dir,
                               follow_links=follow_links)
    if (rename := getattr(file_job, "output_relpath", None)) is not None:
        entries = [replace(e, relpath=rename(e.relpath)) for e in entries]
    run = dict(t0=t0, client=client, resume=resume, force=force, max_open=max_open_outputs,
               inline_bytes=inline_bytes, progress=progress, verify=verify,
               job=file_job or convert_file, timeout=timeout)
    if dry_run:
        return _convert_locked(entries, output_dir, options, dry_run=True, **run)
    with output_lock(output_dir):
        return _convert_locked(entries, output_dir, options, dry_run=False, **run)


def _convert_locked(entries, output_dir, options, *, t0, client, resume, force, dry_run,
                    max_open, inline_bytes, progress, verify, job, timeout) -> ArchiveReport:
    """The body of :func:`convert_archive`; holds the output lock unless ``dry_run``."""
    if not resume and not force:
        refuse_overwrite(entries, output_dir)
    manifest = Manifest.load(output_dir, read_only=dry_run)
    manifest.check_options(options.fingerprint_dict(), force=force)
    report = ArchiveReport(output_dir=output_dir)
    todo: list[tuple[SourceEntry, str, bool]] = []
    for entry in entries:
        out = output_path(entry, output_dir)
        settled = _settled(entry, out, manifest, options, resume=resume, force=force,
                           record=not dry_run, finished=getattr(job, "finished", None))
        if settled is not None:
            report.files.append(settled)
            if progress is not None and not dry_run:
                progress(settled, len(report.files), len(entries))
            continue
        # outputs recorded in the manifest are this archive's own: they may be replaced
        todo.append((entry, out, force or entry.relpath in manifest))
        if dry_run:
            report.files.append(FileResult(entry.path, out, "planned",
                                           reason=manifest.decide(entry, output_dir).reason))
    if dry_run:
        report.wall_seconds = time.perf_counter() - t0
        return report
    # the lock is held: every .partial below output_dir is an orphan of a dead run or worker
    manifest.clean_partials(output_dir)
    if todo:
        from ..engine.client import client_context
        own_cluster = client is None
        finished = False
        try:
            with client_context(client) as cl:
                report.dashboard = getattr(cl, "dashboard_link", None)
                _run(cl, todo, options, manifest, report, inline_bytes=inline_bytes,
                     max_open=max_open, progress=progress, total=len(entries),
                     verify=verify, job=job, timeout=timeout)
                finished = True
        finally:
            # every task of this run has ended (normal end) or its workers are gone (own
            # cluster closed): remove what killed or retried writers left behind. Tasks of
            # an interrupted run on the caller's cluster may still be writing: the next
            # run removes their files.
            if finished or own_cluster:
                manifest.clean_partials(output_dir)
    report.wall_seconds = time.perf_counter() - t0
    return report


def file_key(output: str, index: int) -> str:
    """The dask key of one file task: a hash of the output's name, never the name itself
    (a file name need not be valid UTF-8; a key must be)."""
    digest = hashlib.sha256(os.fsencode(output)).hexdigest()[:16]
    return f"dcbulk-file-{digest}-{index}"


def _grace(timeout: float) -> float:
    """How long past its limit the client waits for a task's own answer before abandoning
    it (the task stops committing at its limit; its answer may still be on its way)."""
    return max(2.0, 0.1 * timeout)


def _run(client, todo, options, manifest, report, *, inline_bytes, max_open,
         progress, total, verify=False, job=convert_file, timeout=None) -> None:
    from distributed import wait
    threads = sum(client.nthreads().values())
    max_open = max_open or threads + 2
    # largest files first (popped from the end), so no big file is left for the tail
    queue = sorted(todo, key=lambda item: os.path.getsize(item[0].path))
    remaining = sum(os.path.getsize(item[0].path) for item in queue)
    active: dict = {}
    started: dict[str, float] = {}  # task key -> when it started on its worker (client clock)
    topic = None
    if timeout is not None:
        topic = f"dcbulk-start-{uuid.uuid4().hex}"
        client.subscribe_topic(topic, lambda event: started.setdefault(
            event[1]["key"], time.monotonic()))

    def finish(result: FileResult) -> None:
        report.files.append(result)
        if progress is not None:
            progress(result, len(report.files), total)

    def submit_next() -> None:
        nonlocal remaining
        entry, out, overwrite = queue.pop()
        size = os.path.getsize(entry.path)
        share = remaining / max(1, threads)
        remaining -= size
        try:
            check_parents(manifest.output_dir, out)  # no output through a linked directory
        except LinkRefusedError as exc:
            finish(_failed(entry, out, manifest, f"{type(exc).__name__}: {exc}"))
            return
        extra = {"verify": True} if verify else {}  # file jobs of the modes do not verify
        fut = client.submit(run_file_job, job, entry.path, out, options, overwrite=overwrite,
                            inline_bytes=max(inline_bytes, int(share // 2)), pure=False,
                            timeout=timeout, start_topic=topic, **extra,
                            key=file_key(out, len(queue)))
        active[fut] = (entry, out)

    def fill() -> None:
        while queue and len(active) < max_open:
            submit_next()

    try:
        fill()
        while active:
            if timeout is not None:
                _abandon_overdue(client, active, started, timeout, manifest, finish)
                if not active:
                    fill()
                    continue
            try:
                done, _ = wait(list(active), return_when="FIRST_COMPLETED",
                               timeout=None if timeout is None else min(1.0, timeout))
            except TimeoutError:
                continue
            for fut in done:
                entry, out = active.pop(fut)
                result = _settle(fut, entry, out, manifest, options,
                                 finished=getattr(job, "finished", None))
                fut.release()
                finish(result)
            fill()
    except BaseException:  # Ctrl-C or a lost scheduler: stop what is still queued or running
        client.cancel(list(active))
        raise
    finally:
        if topic is not None:
            client.unsubscribe_topic(topic)


def _abandon_overdue(client, active: dict, started: dict, timeout: float,
                     manifest: Manifest, finish) -> None:
    """Fail the files whose task has run past the time limit without answering.

    Their futures are cancelled; a worker thread cannot be stopped, so the task may go on
    running, but it commits nothing after its limit (:func:`run_file_job`) and nothing of
    it reaches the manifest.
    """
    now = time.monotonic()
    for fut in [f for f in active if not f.done()]:
        began = started.get(fut.key)
        if began is None or now - began <= timeout + _grace(timeout):
            continue
        entry, out = active.pop(fut)
        client.cancel([fut])
        finish(_failed(entry, out, manifest, timeout_message(timeout)))


def _failed(entry: SourceEntry, out: str, manifest: Manifest, error: str) -> FileResult:
    """Record one failed file (one line in the log and the manifest) and return it."""
    logger.error("%s failed: %s", entry.path, error, extra={"per_file": True})
    manifest.record_failed(entry, error=error)
    return FileResult(entry.path, out, "failed", reason="error", error=error)


def _within(path: str, root: str) -> bool:
    """Whether ``path`` lies below the directory ``root`` (both resolved)."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _settle(fut, entry: SourceEntry, out: str, manifest: Manifest, options: ArchiveOptions,
            finished: Callable | None = None) -> FileResult:
    """Record the outcome of one file task in the manifest (fsynced) and return it."""
    identity = None
    try:
        identity, res = fut.result()
    except Exception as exc:  # per-file isolation: record and go on
        res = Report(source=entry.path, output=out, error=describe_failure(exc, out))
    if ((res.error or "").startswith("OutputExistsError")
            and adopt_output(entry, out, options.fingerprint_dict(), manifest,
                             finished=finished)):
        # the output did not exist when the task was submitted (and the lock keeps other
        # runs out): an earlier attempt of this task committed it, then its worker died
        record = manifest.records[entry.relpath]
        return FileResult(entry.path, out, "done", events=record.events or 0,
                          bytes_in=record.size, bytes_out=record.output_size or 0,
                          reason="committed by an earlier attempt of its task")
    if res.note and not res.error:  # e.g. a source that already is such an output
        return FileResult(entry.path, out, "skipped", events=res.events, reason=res.note)
    if res.error:
        return _failed(entry, out, manifest, res.error)
    outside = [p for p in getattr(res, "basin_files", ())
               if not _within(p, entry.root)]
    if outside:
        logger.warning("%s: file basin %s lies outside the archive tree %s", entry.path,
                       ", ".join(outside), entry.root)
    size, mtime_ns, head, checksum = identity
    manifest.record_done(entry, output=out, output_size=res.bytes_out, events=res.events,
                         seconds=res.wall_seconds, identifier=res.identifier, size=size,
                         mtime_ns=mtime_ns, head=head, checksum=checksum)
    return _result_from(entry, out, res)
