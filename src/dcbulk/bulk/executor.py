"""The archive executor: plan a job's run once, then execute exactly that plan.

:func:`planned` discovers the sources, asks the job for its targets, takes the output
directory's lock (not for dry runs, nor for a job whose output is one file), and decides
every target once (:mod:`.resume`: skip, adopt, refuse, make). The :class:`RunPlan` it
yields is what ``--dry-run`` prints and the CLI's banner counts. :func:`execute` then runs
that plan: one task per target on the cluster (:func:`~dcbulk.bulk.job.run_target`), at
most ``max_open_outputs`` in flight (largest first, so no big file is left for the tail),
each outcome recorded in the manifest as it settles and passed to the ``progress``
observer, and the run's orphaned ``*.partial`` files removed once at its end. The job's
hooks (:class:`~dcbulk.bulk.job.Job`) add what a mode needs: the dask settings of a cluster
started for it, worker resources per task, a check of the workers, recognition of finished
outputs without dcbulk's provenance log, and a sweep of its own leftovers (under the lock,
at the run's start and end). A task whose report carries a ``note`` (it left its source
alone on purpose) settles as skipped, unrecorded.

A target is encoded inline by its task (no per-block scheduling, no transfers) when it is
small or when enough other targets remain to keep every thread busy (at most half of a
thread's share of the remaining bytes). A failing target never stops the others.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from distributed import wait

from ..engine.client import client_context
from ..engine.report import Report
from ..errors import LinkRefusedError, OutputExistsError, describe_failure
from ..nofollow import check_parents
from ..partials import clean_partials
from ..taskkey import file_key
from .inprocess import InProcessClient, clear_marker, in_process_run, runs_in_process
from .job import INLINE_BYTES, Job, Target, run_target, timeout_message
from .lock import output_lock
from .manifest import Manifest
from .options import ArchiveOptions
from .report import ArchiveReport, FileResult
from .resume import Step, adopt_options, adopt_output, refuse_overwrite, settle
from .sources import discover_sources
from .usage import check_output_dir, check_output_placement, check_timeout

__all__ = ["Progress", "RunPlan", "execute", "file_key", "planned", "run_job"]

logger = logging.getLogger(__name__)

#: the observer of a run: called as ``progress(result, done, total)`` as each file settles
Progress = Callable[[FileResult, int, int], None]


@dataclass
class RunPlan:
    """A run decided once: every target either settled (skipped, blocked) or a step."""

    job: Job
    options: ArchiveOptions
    output: str
    decisions: list[FileResult | Step]
    manifest: Manifest | None
    dry_run: bool
    t0: float = field(default_factory=time.perf_counter)
    targets: list = field(default_factory=list)

    @property
    def steps(self) -> list[Step]:
        """The targets to make."""
        return [d for d in self.decisions if isinstance(d, Step)]

    @property
    def files(self) -> list[FileResult]:
        """One result per target: settled ones as they are, steps as ``planned``."""
        return [d if isinstance(d, FileResult) else FileResult(
            d.target.source.path, d.target.output, "planned", bytes_in=d.target.size,
            reason=d.reason) for d in self.decisions]

    @property
    def total_bytes(self) -> int:
        """Bytes read by the whole run (settled targets included, as in the banner)."""
        return sum(f.bytes_in for f in self.files)

    @property
    def output_dir(self) -> str:
        """The directory the outputs go to."""
        return os.path.dirname(self.output) if self.job.one_file else self.output

    def report(self) -> ArchiveReport:
        """The report of a dry run: what would be done."""
        return ArchiveReport(output_dir=self.output_dir, files=self.files,
                             wall_seconds=time.perf_counter() - self.t0)


@contextlib.contextmanager
def planned(job: Job, sources: Iterable, output, options: ArchiveOptions, *,
            include: str = "*.rtdc", resume: bool = True, force: bool = False,
            dry_run: bool = False, follow_links: bool = False) -> Iterator[RunPlan]:
    """Plan a run of ``job`` (once) and hold the output directory's lock while it is used.

    Usage errors (an output directory inside a source, one that cannot be created) are
    raised before anything is written; a second run on the same directory raises
    :class:`~dcbulk.errors.OutputLockedError`. ``follow_links`` also walks symbolic links
    that lead out of the source directories.
    """
    t0 = time.perf_counter()
    output = os.path.abspath(os.fspath(output))
    sources = [sources] if isinstance(sources, (str, bytes, os.PathLike)) else list(sources)
    if not job.one_file:
        check_output_placement(sources, output)
        check_output_dir(output)
    entries = discover_sources(sources, include=include,
                               output_dir=None if job.one_file else output,
                               follow_links=follow_links)
    options = replace(options, job=job.fingerprint)
    targets = job.targets(entries, output, options)
    lock = (contextlib.nullcontext() if dry_run or job.one_file else output_lock(output))
    with lock:
        manifest = None
        fingerprint = options.fingerprint_dict()
        if job.resumable:
            if not resume and not force:
                refuse_overwrite(targets)
            manifest = Manifest.load(output, read_only=dry_run)
            adopt_options(manifest, fingerprint, force=force)
        if not (dry_run or job.one_file):
            _sweep(job, targets)
        decisions = [settle(t, manifest, fingerprint, resume=resume, force=force,
                            record=not dry_run, finished=job.finished) for t in targets]
        yield RunPlan(job, options, output, decisions, manifest, dry_run, t0, targets)


def _sweep(job: Job, targets: list[Target]) -> None:
    """The job's sweep of its leftovers (only while holding the output directory's lock)."""
    removed = job.sweep(targets)
    if removed:
        logger.info("%s: removed %d leftover file(s) of killed tasks", job.name, removed)


def execute(plan: RunPlan, *, client=None, open_client=None, progress: Progress | None = None,
            max_open_outputs: int | None = None, inline_bytes: int = INLINE_BYTES,
            timeout: float | None = None, in_process: bool | None = None) -> ArchiveReport:
    """Execute ``plan`` (from :func:`planned`, inside its ``with`` block).

    Parameters
    ----------
    client
        A ``distributed.Client``; by default ``open_client(in_process)``, a small run's
        :class:`~dcbulk.bulk.inprocess.InProcessClient` or a LocalCluster sized to the
        machine, started only when there is something to make.
    open_client
        A context manager factory yielding the client (the CLI's logged cluster), called
        as ``open_client(in_process)``: with True it yields
        :func:`~dcbulk.bulk.inprocess.in_process_run`'s client. A cluster started here
        or by ``open_client`` starts within the job's
        :meth:`~dcbulk.bulk.job.Job.cluster_settings`.
    progress
        Called as ``progress(result, done, total)`` as each file settles.
    max_open_outputs
        Targets in flight at once (default: the cluster's threads + 2).
    inline_bytes
        Targets of at most this many uncompressed bytes are always encoded by their task.
    in_process
        None: a small run (:func:`~dcbulk.bulk.inprocess.runs_in_process`) is made by
        threads of this process, without a cluster; False: never (a cluster was asked
        for). Ignored with ``client``.
    timeout
        Seconds one target's task may run (from when it starts on its worker); a target
        that exceeds it fails alone, without output. A task that never returns is
        abandoned (its future cancelled); its worker thread cannot be stopped and may go
        on running, but it commits no output after the limit and writes no manifest line.
    """
    check_timeout(timeout)
    report = ArchiveReport(output_dir=plan.output_dir)
    total = len(plan.decisions)
    for result in plan.decisions:
        if isinstance(result, FileResult):
            report.files.append(result)
            if progress is not None:
                progress(result, len(report.files), total)
    own_cluster, finished = client is None, False
    local = (client is None and in_process is not False and bool(plan.steps)
             and runs_in_process(plan.job, plan.output_dir,
                                 [step.target.size for step in plan.steps]))
    try:
        if plan.steps:
            settings = (contextlib.nullcontext() if client is not None or local
                        else plan.job.cluster_settings())
            opened = (contextlib.nullcontext(client) if client is not None
                      else open_client(local) if open_client is not None
                      else in_process_run(plan.output_dir) if local else client_context())
            with settings, opened as cl:
                if client is None and not local:  # a given client was checked before
                    plan.job.check_cluster(cl)
                report.dashboard = getattr(cl, "dashboard_link", None)
                _Runner(cl, plan, report, progress=progress, total=total,
                        timeout=timeout).run(max_open=max_open_outputs,
                                             inline_bytes=sys.maxsize if local
                                             else inline_bytes)
        finished = True
    finally:
        # every task of this run has ended (normal end) or its workers are gone (own
        # cluster closed): remove what killed or retried writers, or a dead run, left
        # behind. Tasks of an interrupted run on the caller's cluster may still be
        # writing: the next run removes their files.
        if not plan.job.one_file and (finished or own_cluster):
            clean_partials(plan.output)
            _sweep(plan.job, plan.targets)
            if finished and not local:  # the files of a dead in-process run are made
                clear_marker(plan.output_dir)
    report.wall_seconds = time.perf_counter() - plan.t0
    return report


class _Runner:
    """Submits a plan's steps, at most ``max_open`` at once, and settles each as it ends
    (or, past ``timeout`` since its task started, abandons it)."""

    def __init__(self, client, plan: RunPlan, report: ArchiveReport, *, progress, total,
                 timeout: float | None):
        self.client, self.plan, self.report = client, plan, report
        self.progress, self.total, self.timeout = progress, total, timeout
        self.active: dict = {}  # future -> step
        self.started: dict[str, float] = {}  # task key -> when it started (client clock)
        self.topic = None if timeout is None else f"dcbulk-start-{uuid.uuid4().hex}"

    def finish(self, result: FileResult) -> None:
        """Add a settled result to the report and tell the observer."""
        self.report.files.append(result)
        if self.progress is not None:
            self.progress(result, len(self.report.files), self.total)

    def run(self, *, max_open: int | None, inline_bytes: int) -> None:
        """Run every step of the plan (largest first, so no big file is left for the tail)."""
        client = self.client
        threads = sum(client.nthreads().values())
        max_open = max_open or threads + 2
        queue = sorted(self.plan.steps, key=lambda step: step.target.size)  # popped: largest
        remaining = sum(step.target.size for step in queue)
        if self.topic is not None:
            client.subscribe_topic(self.topic, lambda event: self.started.setdefault(
                event[1]["key"], time.monotonic()))
        try:
            while queue or self.active:
                while queue and len(self.active) < max_open:
                    share = remaining / max(1, threads)
                    remaining -= queue[-1].target.size
                    self.submit(queue.pop(), len(queue), max(inline_bytes, int(share // 2)))
                self.settle_some()
        except BaseException:  # Ctrl-C or a lost scheduler: stop what is queued or running
            client.cancel(list(self.active))
            raise
        finally:
            if self.topic is not None:
                client.unsubscribe_topic(self.topic)

    def submit(self, step: Step, index: int, inline_bytes: int) -> None:
        """Submit one step's task (an output through a linked directory fails at once)."""
        target, manifest = step.target, self.plan.manifest
        if not self.plan.job.one_file:
            try:  # no output through a linked directory
                check_parents(self.plan.output, target.output)
            except LinkRefusedError as exc:
                self.finish(_failed(step, manifest, f"{type(exc).__name__}: {exc}"))
                return
        fut = self.client.submit(run_target, self.plan.job, target, self.plan.options,
                                 overwrite=step.overwrite, inline_bytes=inline_bytes,
                                 timeout=self.timeout, start_topic=self.topic, pure=False,
                                 key=file_key(target.output, index),
                                 resources=self.plan.job.resources)
        self.active[fut] = step

    def settle_some(self) -> None:
        """Wait for a task to end (at most a second with a time limit) and settle it."""
        if not self.active:
            return
        if self.timeout is not None:
            self.abandon_overdue()
            if not self.active:
                return
        limit = None if self.timeout is None else min(1.0, self.timeout)
        if isinstance(self.client, InProcessClient):
            done = self.client.wait_first(list(self.active), limit)
        else:
            try:
                done, _ = wait(list(self.active), return_when="FIRST_COMPLETED", timeout=limit)
            except TimeoutError:
                return
        for fut in done:
            result = settle_task(fut, self.active.pop(fut), self.plan)
            fut.release()
            self.finish(result)

    def abandon_overdue(self) -> None:
        """Fail the targets whose task has run past the time limit without answering.

        Their futures are cancelled; a worker thread cannot be stopped, so the task may go
        on running, but it commits nothing after its limit (:func:`run_target`) and nothing
        of it reaches the manifest.
        """
        now, grace = time.monotonic(), max(2.0, 0.1 * self.timeout)
        for fut in [f for f in self.active if not f.done()]:
            began = self.started.get(fut.key)
            if began is None or now - began <= self.timeout + grace:
                continue
            step = self.active.pop(fut)
            self.client.cancel([fut])
            self.finish(_failed(step, self.plan.manifest, timeout_message(self.timeout)))


def _failed(step: Step, manifest: Manifest | None, error: str) -> FileResult:
    """Record one failed target (one line in the log and the manifest) and return it."""
    entry, out = step.target.source, step.target.output
    logger.error("%s failed: %s", entry.path, error, extra={"per_file": True})
    if manifest is not None:
        manifest.record_failed(entry, error=error)
    return FileResult(entry.path, out, "failed", reason="error", error=error)


def _within(path: str, root: str) -> bool:
    """Whether ``path`` lies below the directory ``root`` (both resolved)."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def settle_task(fut, step: Step, plan: RunPlan) -> FileResult:
    """Record the outcome of one target's task in the manifest (fsynced) and return it."""
    target, manifest = step.target, plan.manifest
    entry, out = target.source, target.output
    identity = None
    try:
        identity, res = fut.result()
    except Exception as exc:  # per-file isolation: record and go on
        res = Report(source=entry.path, output=out, error=describe_failure(exc, out),
                     error_type=type(exc))
    if (manifest is not None and res.error_type is not None
            and issubclass(res.error_type, OutputExistsError)
            and adopt_output(target, plan.options.fingerprint_dict(), manifest,
                             finished=plan.job.finished)):
        # the output did not exist when the task was submitted (and the lock keeps other
        # runs out): an earlier attempt of this task committed it, then its worker died
        record = manifest.records[entry.relpath]
        return FileResult(entry.path, out, "done", events=record.events or 0,
                          bytes_in=record.size, bytes_out=record.output_size or 0,
                          reason="committed by an earlier attempt of its task")
    if res.note and not res.error:  # left alone on purpose (e.g. already such an output)
        return FileResult(entry.path, out, "skipped", events=res.events,
                          bytes_in=target.size, reason=res.note)
    if res.error:
        return _failed(step, manifest, res.error)
    outside = [p for p in res.basin_files if not _within(p, entry.root)]
    if outside:
        logger.warning("%s: file basin %s lies outside the archive tree %s", entry.path,
                       ", ".join(outside), entry.root)
    if manifest is not None:
        size, mtime_ns, head, checksum = identity
        manifest.record_done(entry, output=out, output_size=res.bytes_out, events=res.events,
                             seconds=res.wall_seconds, identifier=res.identifier, size=size,
                             mtime_ns=mtime_ns, head=head, checksum=checksum)
    return FileResult.made(res, source=entry.path, bytes_in=target.size)


def run_job(job: Job, sources: Iterable, output, options: ArchiveOptions, *,
            include: str = "*.rtdc", resume: bool = True, force: bool = False,
            dry_run: bool = False, client=None, progress: Progress | None = None,
            max_open_outputs: int | None = None, inline_bytes: int = INLINE_BYTES,
            timeout: float | None = None, follow_links: bool = False) -> ArchiveReport:
    """Plan and execute a run of ``job`` (the Python API of every mode); see :func:`planned`
    and :func:`execute`. With ``dry_run`` only the plan's report is returned."""
    check_timeout(timeout)
    if client is not None and not dry_run:
        job.check_cluster(client)  # before anything is written
    with planned(job, sources, output, options, include=include, resume=resume,
                 force=force, dry_run=dry_run, follow_links=follow_links) as plan:
        if dry_run:
            return plan.report()
        return execute(plan, client=client, progress=progress,
                       max_open_outputs=max_open_outputs, inline_bytes=inline_bytes,
                       timeout=timeout)
