"""The job model: what a run makes (its targets) and how one target is made on a worker.

A :class:`Job` (convert, condense, reprocess, split, join, process, and the modes to come)
answers two questions. :meth:`Job.targets` (on the client, cheap): which outputs it makes from
which sources, one :class:`Target` each. :meth:`Job.make` (a task on a worker): make one target
and return its :class:`~dcbulk.engine.report.Report`. Everything else (discovery, the manifest,
resume, the lock, submitting, bounding what is in flight, progress) is the executor's
(:mod:`.executor`), the same for every job.

A :class:`CheckJob` (``verify``) reads instead of writing: its targets are checks of files
that exist, its plan has no output directory (:func:`~dcbulk.bulk.runplan.check_plan`: no
lock, no manifest, no partial files), and its reports list what each check found.

A failure that concerns one file (a dcbulk error, an OSError, a full disk) raised by
:meth:`Job.make` comes back from :func:`run_target` as a report with ``error`` (one line)
and ``error_type`` (the exception's class) set (:func:`failed_file`), so the client reports
it once, without a worker traceback; a job may also return such a report itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..engine.blockpool import current_block_pool, lone_block_pool
from ..engine.client import current_worker
from ..engine.report import Report
from ..errors import (DcbulkError, FileTimeoutError, SourceError, describe_failure,
                      is_no_space)
from ..partials import commit_deadline
from .options import ArchiveOptions
from .records import file_sha256, head_sha256
from .sources import SourceEntry, discover_sources, output_path

__all__ = ["INLINE_BYTES", "CheckJob", "Job", "Target", "failed_file", "run_target",
           "timeout_message"]

#: files whose task data is at most this many bytes are encoded by their writer task itself
INLINE_BYTES = 48 * 1024**2


@dataclass(frozen=True, eq=False)
class Target:
    """One output of a job and what it is made from (travels to a worker: picklable).

    ``source`` is the entry the manifest records the output under (for ``join``: the
    earliest input), ``size`` the bytes read to make it (progress, scheduling) and
    ``recipe`` whatever else the job needs to make it (e.g. a split piece's events).
    """

    output: str
    source: SourceEntry
    size: int
    recipe: Any = None


class Job:
    """Base class of every job; a subclass implements :meth:`make` (and may add targets).

    Attributes
    ----------
    name : str
        The job's name (CLI sub-command, manifest fingerprint, provenance log, the run
        log's ``<name>-<time>-<pid>.log``).
    verb : str
        What the job did to a file, as the summary line says it (``3 converted, ...``).
    resumable : bool
        Outputs are recorded in the output directory's manifest, and a re-run skips the
        finished ones; otherwise an existing output is refused unless ``force``.
    one_file : bool
        The run's output is one file (``join``), not a directory: no lock, no manifest.
    checksum_output : bool
        The output's SHA-256 is recorded (set where it is verified anyway).
    fingerprint : dict or None
        What identifies this job beyond the options (JSON-ready; None: a plain
        conversion); it joins the options fingerprint in the manifest and the provenance
        logs, so a run with another job (or another function) is refused or redone.
    resources : dict or None
        Worker resources each of its tasks holds (e.g. ``{"dcnum": 1}``: one task per
        worker offering one); None: none.
    in_process : bool
        A run may be made by threads of dcbulk's process instead of a cluster
        (:mod:`~dcbulk.bulk.inprocess`): :meth:`make` needs no dask worker.
    """

    name = "convert"
    verb = "converted"
    resumable = True
    one_file = False
    checksum_output = False
    fingerprint: dict | None = None
    resources: dict | None = None
    in_process = False

    def entries(self, sources: Sequence, **kwargs) -> list[SourceEntry]:
        """The run's input files: :func:`~dcbulk.bulk.sources.discover_sources` of
        ``sources`` (``kwargs``: its), each file once (override where a job differs)."""
        return discover_sources(sources, **kwargs)

    def targets(self, entries: list[SourceEntry], output: str,
                options: ArchiveOptions) -> list[Target]:
        """One target per source, mirrored below ``output`` (override for other shapes)."""
        return [Target(output_path(e, output), e, os.path.getsize(e.path)) for e in entries]

    def check_cluster(self, client) -> None:
        """Raise before anything is submitted when ``client``'s workers cannot run the job."""

    def cluster_settings(self) -> contextlib.AbstractContextManager:
        """The dask configuration around starting a cluster for this job (and around the
        batch job script of a dry run); none by default."""
        return contextlib.nullcontext()

    def finished(self, source: str, output: str) -> bool:
        """Whether ``output``, found without a manifest record and without a provenance log
        of dcbulk, is this job's finished output of ``source`` (resume adopts it)."""
        return False

    def sweep(self, targets: Sequence[Target]) -> int:
        """Remove what killed tasks of this job left beside ``targets``' outputs (called
        holding the output directory's lock, at a run's start and end); return how many
        files went. The executor removes ``*.partial`` files itself."""
        return 0

    def make(self, target: Target, options: ArchiveOptions, *, overwrite: bool,
             inline_bytes: int = INLINE_BYTES) -> Report:
        """Make one output (runs as a task on a worker)."""
        raise NotImplementedError

    def source_identity(self, target: Target) -> tuple[int, int, str] | None:
        """The source's ``(size, mtime_ns, head_sha256)``, read on the worker before the
        target is made (the manifest records it, so a source modified meanwhile is made
        again by the next run).

        Raises
        ------
        SourceError
            For a source that is not a regular file (a FIFO, device or socket: not opened).
        """
        source = target.source.path
        st = os.stat(source)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"{source}: not a regular file (a FIFO, device or socket); "
                              f"not opened")
        return st.st_size, st.st_mtime_ns, head_sha256(source)


class CheckJob(Job):
    """A job whose targets are checks of files that exist: it reads them and writes nothing.

    Its plan (:func:`~dcbulk.bulk.runplan.check_plan`) has no output directory, so nothing
    is locked, recorded, resumed or cleaned up. A target's ``output`` is the file checked,
    its ``source`` what that file is checked against; :meth:`make` returns a report whose
    ``problems`` are what the check found (one line each; set, the file failed) and whose
    ``checked`` names what was compared.
    """

    resumable = False

    def source_identity(self, target: Target) -> None:
        """Nothing is recorded: a check opens (and refuses) its files itself."""
        return None


def failed_file(exc: BaseException, source: str, output: str) -> Report:
    """The report of a file whose task failed with ``exc`` when the failure is this file's.

    A dcbulk error, an OSError and h5py's RuntimeError for a failed write on a full disk
    concern only this file: they come back as a report with a one-line ``error`` and the
    exception's class as ``error_type``. Anything else is re-raised.
    """
    if isinstance(exc, RuntimeError) and not is_no_space(exc):
        raise exc
    return Report(source=source, output=output, error=describe_failure(exc, output),
                  error_type=type(exc))


def timeout_message(timeout: float) -> str:
    """The one-line reason of a file that exceeded its time limit."""
    return (f"FileTimeoutError: exceeded the time limit of {timeout:g} s per file "
            f"(--timeout-per-file); its output was not kept")


def _announce_start(topic: str | None) -> None:
    """Tell the client (event ``topic``) that this task runs now: its clock starts."""
    if topic is None:
        return
    worker = current_worker()
    if worker is None:  # not on a worker (called directly)
        return
    worker.log_event(topic, {"key": worker.get_current_task()})


class _TaskWarnings(logging.Handler):
    """dcbulk's warnings logged by the calling thread (the task's), as one-line texts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (record.thread == self.thread and getattr(record, "terminal", True)
                and not getattr(record, "per_file", False)):
            self.lines.append(record.getMessage())


@contextlib.contextmanager
def _task_warnings() -> Iterator[list[str]]:
    """On a dask worker: collect the warnings dcbulk logs in this task (a worker's own
    logging reaches only the run's log file); elsewhere (dcbulk's own process, whose
    terminal shows them already) nothing is collected."""
    if current_worker() is None:
        yield []
        return
    handler = _TaskWarnings()
    ours = logging.getLogger("dcbulk")
    ours.addHandler(handler)
    try:
        yield handler.lines
    finally:
        ours.removeHandler(handler)


def run_target(job: Job, target: Target, options: ArchiveOptions, *,
               timeout: float | None = None, start_topic: str | None = None,
               lone: bool = False, **kwargs
               ) -> tuple[tuple, Report]:
    """Run ``job.make`` on a worker, with the source's identity read before it starts.

    Returns ``((size, mtime_ns, head_sha256, output_sha256), report)``: the identity is
    read first (:meth:`Job.source_identity`; all None for a failed file or a
    :class:`CheckJob`); the output's SHA-256 only for jobs with ``checksum_output``, else
    None. A failure of this file (:func:`failed_file`) comes back in the report.

    With ``timeout`` (seconds) the job may commit its output only within that time from
    now (:func:`~dcbulk.partials.commit_deadline`); a job that ends later fails with
    :func:`timeout_message`. ``start_topic`` names the event that tells the client when
    the task started (the client abandons a task that never returns). ``lone``: the
    run's only task (nothing else wants the cluster): a job that can be made by threads
    (``in_process``) is made by its host's threads in this worker
    (:func:`~dcbulk.engine.blockpool.lone_block_pool`), as in dcbulk's own process. Where a
    block pool is at hand (those two cases) the job makes the whole file in this task
    (``inline_bytes`` unbounded): the one place that decides it. The warnings dcbulk
    logs while a worker makes the target come back in the report's ``warnings``.
    """
    _announce_start(start_topic)
    deadline = None if timeout is None else time.time() + timeout
    with _task_warnings() as said:
        try:
            identity = job.source_identity(target)
            with commit_deadline(deadline), lone_block_pool(lone and job.in_process):
                if current_block_pool() is not None:  # its threads make the whole file
                    kwargs = dict(kwargs, inline_bytes=sys.maxsize)
                res = job.make(target, options, **kwargs)
        except (DcbulkError, OSError, RuntimeError) as exc:
            identity, res = None, failed_file(exc, target.source.path, target.output)
    if said:
        res = replace(res, warnings=(*res.warnings, *said))
    if timeout is not None and res.error_type is not None \
            and issubclass(res.error_type, FileTimeoutError):
        res = replace(res, error=timeout_message(timeout))
    if res.error or identity is None:
        return (None, None, None, None), res
    checksum = file_sha256(target.output) if job.checksum_output else None
    return (*identity, checksum), res
