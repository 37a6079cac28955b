"""The archive executor: execute exactly the plan of a job's run (:mod:`.runplan`).

:func:`~dcbulk.bulk.runplan.planned` decides a run once (discovery, the lock, resume); the
:class:`~dcbulk.bulk.runplan.RunPlan` it yields is what ``--dry-run`` prints and the CLI's
banner counts. :func:`execute` then runs that plan: one task per target on the cluster
(:func:`~dcbulk.bulk.job.run_target`), at most ``max_open_outputs`` in flight (largest
first, so no big file is left for the tail), each outcome recorded in the manifest as it
settles and passed to the ``progress`` observer, and the run's orphaned ``*.partial``
files removed once at its end. The job's hooks (:class:`~dcbulk.bulk.job.Job`) add what a
mode needs: the dask settings of a cluster started for it, worker resources per task, a
check of the workers, recognition of finished outputs without dcbulk's provenance log, and
a sweep of its own leftovers (under the lock, at the run's start and end). A task whose
report carries a ``note`` (it left its source alone on purpose) settles as skipped,
unrecorded.

A :class:`~dcbulk.bulk.job.CheckJob` (``verify``) writes nothing: its plan
(:func:`~dcbulk.bulk.runplan.check_plan`) has no output directory, and :func:`execute` runs
it like any other, with the same submission, bounding, progress, results and Ctrl-C
behaviour. :func:`execute_here`
runs a plan in this process, one target after another (no cluster).

On Ctrl-C (or a lost scheduler) the run's queued and running tasks are cancelled. On a
cluster the run started, its workers are gone when it ends, so the run's leftovers are
removed; on a cluster it does not own (``--scheduler``) a cancelled task may still be
writing, so its files are left for the next run, and that cluster keeps running. A run in
dcbulk's own process waits for its threads to end (each at its next block), records the
outputs they had committed (the manifest then holds every output on disk), and removes
its leftovers.

A target is encoded inline by its task (no per-block scheduling, no transfers) when it is
small or when enough other targets remain to keep every thread busy (at most half of a
thread's share of the remaining bytes). A failing target never stops the others.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..arguments import check_timeout, client_arg, count_arg, flag_args, progress_arg
from ..engine.client import client_context
from ..engine.report import Report
from ..errors import OutputExistsError, describe_failure
from ..taskkey import file_key
from .inprocess import InProcessClient, clear_marker, in_process_run, runs_in_process
from .job import INLINE_BYTES, Job, run_target, timeout_message
from .manifest import Manifest
from .options import ArchiveOptions
from .report import ArchiveReport, FileResult
from .resume import Step, adopt_output
from .runplan import RunPlan, planned

__all__ = ["Progress", "execute", "execute_here", "file_key", "planned", "run_job",
           "settle_outcome", "settle_task"]

logger = logging.getLogger(__name__)

#: the observer of a run: called as ``progress(result, done, total)`` as each file settles
Progress = Callable[[FileResult, int, int], None]


def execute(plan: RunPlan, *, client=None, open_client=None, progress: Progress | None = None,
            max_open_outputs: int | None = None, inline_bytes: int = INLINE_BYTES,
            timeout: float | None = None, in_process: bool | None = None) -> ArchiveReport:
    """Execute ``plan`` (from :func:`planned`, inside its ``with`` block).

    Parameters
    ----------
    client
        A ``distributed.Client``; by default ``open_client(in_process)``, an in-process
        run's :class:`~dcbulk.bulk.inprocess.InProcessClient` or a LocalCluster sized to the
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
        None: a run :func:`~dcbulk.bulk.inprocess.runs_in_process` accepts (small, or of
        large files; no ``timeout``) is made by threads of this process, without a
        cluster; False: never (a cluster was asked for). Ignored with ``client``.
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
    own_cluster, finished, cl = client is None, False, None
    local = (client is None and in_process is not False
             and runs_in_process(plan.job, plan.marker_dir,
                                 [step.target.size for step in plan.steps], timeout=timeout))
    try:
        if plan.steps:
            settings = (contextlib.nullcontext() if client is not None or local
                        else plan.job.cluster_settings())
            opened = (contextlib.nullcontext(client) if client is not None
                      else open_client(local) if open_client is not None
                      else in_process_run(plan.marker_dir) if local else client_context())
            with settings, opened as cl:
                # a scheduler we only connected to (--scheduler) is not ours to tidy after,
                # nor are the threads of an in-process run (they end by themselves)
                own_cluster = client is None and getattr(cl, "cluster", None) is not None
                if client is None and not local:  # a given client was checked before
                    plan.job.check_cluster(cl)
                report.dashboard = getattr(cl, "dashboard_link", None)
                _Runner(cl, plan, report, progress=progress, total=total,
                        timeout=timeout).run(max_open=max_open_outputs,
                                             inline_bytes=inline_bytes)
        finished = True
    finally:
        # every task of this run has ended (normal end, or the threads of an in-process
        # run) or its workers are gone (own cluster closed): remove what killed or retried
        # writers, or a dead run, left behind. Tasks of an interrupted run on a cluster it
        # does not own may still be writing: the next run removes their files.
        if finished or own_cluster or getattr(cl, "ended", False):
            plan.tidy()
        if finished and not local and plan.job.in_process and plan.marker_dir:
            clear_marker(plan.marker_dir)  # the files of a dead in-process run are made
    report.wall_seconds = time.perf_counter() - plan.t0
    return report


def execute_here(plan: RunPlan, *, progress: Progress | None = None) -> ArchiveReport:
    """Execute ``plan`` in this process, one target after another (no cluster; e.g. a
    check inside a task, or without a cluster at hand). Settled as :func:`execute` does."""
    report = ArchiveReport(output_dir=plan.output_dir)
    total = len(plan.decisions)
    for decision in plan.decisions:
        if isinstance(decision, Step):
            refused = plan.refusal(decision.target)
            decision = (_failed(decision, plan.manifest, refused) if refused else
                        settle_outcome(run_target(plan.job, decision.target, plan.options,
                                                  overwrite=decision.overwrite),
                                       decision, plan))
        report.files.append(decision)
        if progress is not None:
            progress(decision, len(report.files), total)
    plan.tidy()
    report.wall_seconds = time.perf_counter() - plan.t0
    return report


#: the shortest wait for a task to end (seconds), whatever the per-file time limit
_POLL_FLOOR = 0.05


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
        #: keys of this run only: a key another run's future still holds gives its result
        self.token = uuid.uuid4().hex[:8]

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
                    step = queue.pop()  # lone: nothing else running, nothing queued
                    self.submit(step, len(queue), max(inline_bytes, int(share // 2)),
                                lone=not queue and not self.active)
                self.settle_some()
        except BaseException:  # Ctrl-C or a lost scheduler: stop what is queued or running
            client.cancel(list(self.active))
            if isinstance(client, InProcessClient):
                client.close()  # its threads end: nothing of the run goes on after it
                self.settle_made()
            raise
        finally:
            if self.topic is not None:
                client.unsubscribe_topic(self.topic)

    def submit(self, step: Step, index: int, inline_bytes: int, *, lone: bool) -> None:
        """Submit one step's task (an output the plan refuses fails at once)."""
        target = step.target
        refused = self.plan.refusal(target)
        if refused:
            self.finish(_failed(step, self.plan.manifest, refused))
            return
        fut = self.client.submit(run_target, self.plan.job, target, self.plan.options,
                                 overwrite=step.overwrite, inline_bytes=inline_bytes,
                                 lone=lone, timeout=self.timeout, start_topic=self.topic,
                                 pure=False,
                                 key=file_key(target.output, f"{self.token}{index}"),
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
        # a floor: a wait as short as a tiny limit (1e-7 s) returned before the client's
        # event loop could settle anything, and the run spun forever
        limit = None if self.timeout is None else min(1.0, max(_POLL_FLOOR, self.timeout))
        if isinstance(self.client, InProcessClient):
            self.client.wait_first(list(self.active), limit)
        else:
            from distributed import wait
            try:
                wait(list(self.active), return_when="FIRST_COMPLETED", timeout=limit)
            except TimeoutError:
                pass
        # every task that has ended, whatever the wait said: distributed's wait can time
        # out before it looks at a future that ended already (a tiny limit: it always did)
        for fut in [f for f in self.active if f.done()]:
            result = settle_task(fut, self.active.pop(fut), self.plan)
            fut.release()
            self.finish(result)

    def settle_made(self) -> None:
        """Record the outputs of the tasks that ended with one (a stopped run: the others
        stay unrecorded, to be made again, not failed)."""
        for fut in [f for f in self.active if f.done() and not f.cancelled()
                    and f.exception() is None and not f.result()[1].error]:
            self.finish(settle_task(fut, self.active.pop(fut), self.plan))

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
    """The outcome of one target's task (its future), settled by :func:`settle_outcome`."""
    try:
        outcome = fut.result()
    except Exception as exc:  # per-file isolation: record and go on
        out = step.target.output
        outcome = None, Report(source=step.target.source.path, output=out,
                               error=describe_failure(exc, out), error_type=type(exc))
    return settle_outcome(outcome, step, plan)


def settle_outcome(outcome: tuple, step: Step, plan: RunPlan) -> FileResult:
    """Record the outcome of one target (``(identity, report)`` of
    :func:`~dcbulk.bulk.job.run_target`) in the manifest (fsynced) and return it."""
    target, manifest = step.target, plan.manifest
    entry, out = target.source, target.output
    identity, res = outcome
    for line in res.warnings:  # logged on a worker: its log file only, until now
        logger.warning("%s", line)
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
        return replace(_failed(step, manifest, res.error), problems=list(res.problems),
                       checked=list(res.checked))
    others = [p for p in res.basin_files if os.path.realpath(p) not in plan.source_paths]
    if others:  # its output's features there stay there: deleting it loses them
        where = ("lies outside the archive tree " + entry.root
                 if any(not _within(p, entry.root) for p in others)
                 else "is not one of this run's sources")
        logger.warning("%s: file basin %s %s; the output reaches its features there (keep "
                       "it, or convert it too)", entry.path, ", ".join(others), where)
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
    and :func:`execute`. With ``dry_run`` only the plan's report is returned.

    Raises
    ------
    UsageError
        Before any work: a bad ``timeout``, a ``progress`` that is not callable, sources or
        an output that are no paths (one line naming the argument).
    """
    check_timeout(timeout)
    progress_arg(progress)
    flag_args(resume=resume, force=force, dry_run=dry_run, follow_links=follow_links)
    client_arg(client)
    if max_open_outputs is not None:
        count_arg("max_open_outputs", max_open_outputs)
    if client is not None and not dry_run:
        job.check_cluster(client)  # before anything is written
    with planned(job, sources, output, options, include=include, resume=resume,
                 force=force, dry_run=dry_run, follow_links=follow_links) as plan:
        if dry_run:
            return plan.report()
        return execute(plan, client=client, progress=progress,
                       max_open_outputs=max_open_outputs, inline_bytes=inline_bytes,
                       timeout=timeout)
