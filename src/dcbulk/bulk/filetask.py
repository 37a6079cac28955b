"""The file task: what one output of an archive is made from, and the task on a worker that
makes it.

:class:`ArchiveOptions` are the options every output of an archive shares (the manifest
records their fingerprint). :func:`convert_file` inspects and plans one source on the worker
and is then the single writer of its output; :func:`run_file_job` wraps any file job with the
source's identity for the manifest. :func:`filter_mapping` evaluates a filter expression on a
source (also used by :mod:`dcbulk.verify` and :mod:`dcbulk.modes` to rebuild the mapping).
"""
from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..codec import parse_compression
from ..engine.report import Report
from ..engine.writer import write_output
from ..errors import DcbulkError, PlanError, SourceError, describe_failure, is_no_space
from ..filter_expr import FilterExpr, parse_filter
from ..partials import commit_deadline
from ..plan import DEFAULT_TASK_BYTES, plan_conversion
from ..read.chunks import OpenFiles, read_event_rows
from ..read.inspect import SourceInfo, inspect_source
from .manifest import file_sha256, head_sha256

__all__ = ["ArchiveOptions", "INLINE_BYTES", "convert_file", "failed_file", "filter_mapping",
           "run_file_job", "timeout_message"]

#: files whose task data is at most this many bytes are encoded by their writer task itself
INLINE_BYTES = 48 * 1024**2


@dataclass(frozen=True)
class ArchiveOptions:
    """The options that define an archive's outputs (recorded in the manifest)."""

    features: tuple[str, ...] | None = None
    filter: str | None = None
    compression: str = "zstd:5"
    basin_to_source: bool = False
    #: follow external links, virtual and externally stored datasets (source policy)
    follow_external: bool = False
    #: identity of a custom file job (see ``convert_archive(file_job=)``), e.g. a function hash
    job: dict | None = None

    def fingerprint_dict(self) -> dict:
        doc = {"features": list(self.features) if self.features else None,
               "filter": self.filter,
               "compression": parse_compression(self.compression).describe(),
               "basin_to_source": self.basin_to_source}
        if self.follow_external:  # only when set: fingerprints of earlier runs stay valid
            doc["follow_external"] = True
        if self.job is not None:
            doc["job"] = self.job
        return doc


def filter_mapping(info: SourceInfo, expr: FilterExpr) -> np.ndarray:
    """The boolean event filter of ``expr`` over the source ``info`` (one entry per event).

    Raises
    ------
    PlanError
        When the source lacks a feature the expression needs.
    """
    missing = [n for n in expr.names if n not in info.features]
    if missing:
        raise PlanError(f"{info.path}: filter needs feature(s) {', '.join(missing)} "
                        f"that the file does not have")
    with OpenFiles() as files:
        arrays = {n: read_event_rows(files, info.features[n], slice(0, info.n_events))
                  for n in expr.names}
    return expr.evaluate(arrays)


def convert_file(source: str, output: str, options: ArchiveOptions, *, overwrite: bool,
                 inline_bytes: int = INLINE_BYTES, verify: bool = False) -> Report:
    """Inspect, plan and write one output (runs as a task on a worker).

    Returns the writer's :class:`~dcbulk.engine.report.Report` with the source's identity
    for the manifest. A failure that concerns this file (unreadable source, bad options
    for it, a damaged chunk) comes back as a report with ``error`` set ("Type: message"),
    so it is reported once, by the client, without a worker traceback; anything else
    propagates. With ``verify`` the output is compared with its source
    (:mod:`dcbulk.verify`) before it is reported done; a mismatch removes the output and
    fails the file.
    """
    try:
        report = _convert_file(source, output, options, overwrite=overwrite,
                               inline_bytes=inline_bytes)
    except (DcbulkError, OSError, RuntimeError) as exc:
        return failed_file(exc, source, output)
    if verify:
        from ..verify.run import VerifyPair, verify_pair_inline
        verdict = verify_pair_inline(VerifyPair(output=output, source=source,
                                                features=options.features,
                                                filter=options.filter))
        if verdict.problems:
            os.unlink(output)
            more = len(verdict.problems) - 1
            return Report(source=source, output=output,
                          error=f"VerifyError: {verdict.problems[0]}"
                                + (f" (and {more} more)" if more else ""))
    return report


def failed_file(exc: BaseException, source: str, output: str) -> Report:
    """The report of a file whose task failed with ``exc`` when the failure is this file's.

    A dcbulk error, an OSError and h5py's RuntimeError for a failed write on a full disk
    concern only this file: they come back as a report with a one-line ``error``, so the
    client reports them once, without a worker traceback. Anything else is re-raised.
    """
    if isinstance(exc, RuntimeError) and not is_no_space(exc):
        raise exc
    return Report(source=source, output=output, error=describe_failure(exc, output))


def _convert_file(source: str, output: str, options: ArchiveOptions, *, overwrite: bool,
                  inline_bytes: int) -> Report:
    t0 = time.perf_counter()
    info = inspect_source(source, follow_external=options.follow_external)
    expr = parse_filter(options.filter)
    mapping = filter_mapping(info, expr) if expr is not None else None
    plan = plan_conversion(info, output, features=options.features, mapping=mapping,
                           codec=parse_compression(options.compression),
                           max_task_bytes=DEFAULT_TASK_BYTES,
                           basin_to_source=options.basin_to_source,
                           options=options.fingerprint_dict())
    inline = sum(g.nbytes for g in plan.groups) <= inline_bytes
    report = write_output(plan, inline=inline, overwrite=overwrite)
    st = os.stat(source)
    return replace(report, wall_seconds=time.perf_counter() - t0, bytes_in=st.st_size,
                   source_mtime_ns=st.st_mtime_ns, basin_files=info.basin_files)


def timeout_message(timeout: float) -> str:
    """The one-line reason of a file that exceeded its time limit."""
    return (f"FileTimeoutError: exceeded the time limit of {timeout:g} s per file "
            f"(--timeout-per-file); its output was not kept")


def _announce_start(topic: str | None) -> None:
    """Tell the client (event ``topic``) that this file task runs now: its clock starts."""
    if topic is None:
        return
    try:
        from distributed import get_worker
        worker = get_worker()
    except ValueError:  # not on a worker (called directly)
        return
    worker.log_event(topic, {"key": worker.get_current_task()})


def run_file_job(job: Callable, source: str, output: str, *args,
                 timeout: float | None = None, start_topic: str | None = None,
                 **kwargs) -> tuple[tuple, object]:
    """Run ``job`` on a worker, with the source's identity read before it starts.

    Returns ``((size, mtime_ns, head_sha256, output_sha256), job's result)``: the identity
    is read first, so a source modified during its conversion is converted again by the
    next run; the output's SHA-256 is computed only with ``verify`` (for ``dcbulk verify``
    later), else None.

    With ``timeout`` (seconds) the job may commit its output only within that time from
    now (:func:`~dcbulk.partials.commit_deadline`); a job that ends later fails with
    :func:`timeout_message`. ``start_topic`` names the event that tells the client when
    the task started (the client abandons a task that never returns).

    Raises
    ------
    SourceError
        The source is not a regular file (a FIFO, device or socket is never opened).
    """
    _announce_start(start_topic)
    deadline = None if timeout is None else time.time() + timeout
    st = os.stat(source)
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{source}: not a regular file (a FIFO, device or socket); "
                          f"not opened")
    head = head_sha256(source)
    with commit_deadline(deadline):
        res = job(source, output, *args, **kwargs)
    failed = res.error if isinstance(res, Report) else res.get("error")
    if failed and timeout is not None and str(failed).startswith("FileTimeoutError"):
        message = timeout_message(timeout)
        res = replace(res, error=message) if isinstance(res, Report) else {**res,
                                                                          "error": message}
    checksum = file_sha256(output) if kwargs.get("verify") and not failed else None
    return (st.st_size, st.st_mtime_ns, head, checksum), res
