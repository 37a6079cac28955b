"""The state of one run as its results settle: counts, bytes, a throughput series, failures.

:class:`RunState` is a ``progress(result, done, total)`` callback (the one
``convert_archive`` and the modes call after each file), so it joins the terminal's
:class:`~dcbulk.progress.ArchiveProgress` through :func:`observers` instead of a second code
path. The live dashboard page and the HTML report read it; the client thread writes it and
the scheduler's event loop reads it, so every access holds its lock.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import one_line, printable
from ..taskkey import file_key

__all__ = ["FileRow", "RunState", "observers", "throughput_series"]

#: failures the live page lists (the newest); the report and the JSON report have them all
PAGE_FAILURES = 50


@dataclass(frozen=True)
class FileRow:
    """One settled file as the page and the report show it (``at``: seconds since start)."""

    source: str
    output: str
    status: str
    bytes_in: int
    bytes_out: int
    raw_bytes: int
    ratio: float | None
    seconds: float
    error: str
    at: float


def observers(*consumers: Callable | None) -> Callable | None:
    """One ``progress(result, done, total)`` callback calling each consumer given (None: none)."""
    active = [c for c in consumers if c is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def progress(result, done: int, total: int) -> None:
        for consumer in active:
            consumer(result, done, total)
    return progress


class RunState:
    """What a run has done so far; call it as ``progress(result, done, total)``.

    Parameters
    ----------
    command
        The command (``convert``, ``verify``, ``condense``, ...), shown on the page.
    total_files, total_bytes
        The run's files and their bytes on disk as planned (skipped files are taken off
        the bytes left when they settle).
    options
        The run's options (JSON-ready), for the report.
    manifest
        The path of the run's manifest (None: none), for the report.
    outputs
        The outputs the run will make: their file tasks' keys (hashes of the outputs'
        names) are shown by name among the files in flight.
    clock
        Seconds since the epoch (test-only replacement of :func:`time.time`).
    """

    def __init__(self, *, command: str = "convert", total_files: int = 0, total_bytes: int = 0,
                 options: dict | None = None, manifest: str | None = None,
                 outputs: Iterable[str] = (), clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._clock = clock
        self.command = command
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.options = dict(options or {})
        self.manifest = manifest
        self.started = clock()
        self.ended: float | None = None
        self.outcome = "running"  # then "finished", "failed: <reason>" or "interrupted"
        self.page_url: str | None = None
        self.json_report: str | None = None
        self.unwritten: list[str] = []  # reports that could not be written
        self.rows: list[FileRow] = []
        self.names = _task_names(outputs)
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self.failures: list[FileRow] = []
        self.bytes_in = self.bytes_out = self.raw_bytes = 0
        self.skipped_bytes = self.failed_bytes = 0

    def __call__(self, result, done: int, total: int) -> None:
        status = getattr(result, "status", "done")
        row = FileRow(source=printable(getattr(result, "source", "")),
                      output=printable(getattr(result, "output", "")), status=status,
                      bytes_in=int(getattr(result, "bytes_in", 0) or 0),
                      bytes_out=int(getattr(result, "bytes_out", 0) or 0),
                      raw_bytes=int(getattr(result, "raw_bytes", 0) or 0),
                      ratio=getattr(result, "ratio", None),
                      seconds=float(getattr(result, "seconds", 0.0) or 0.0),
                      error=one_line(getattr(result, "error", None) or "", 300),
                      at=self._clock() - self.started)
        with self._lock:
            self.total_files = max(self.total_files, total)
            self.rows.append(row)
            self.counts[status] = self.counts.get(status, 0) + 1
            if status == "done":
                self.bytes_in += row.bytes_in
                self.bytes_out += row.bytes_out
                self.raw_bytes += row.raw_bytes
            elif status == "skipped":
                self.skipped_bytes += row.bytes_in
            elif status == "failed":
                self.failures.append(row)
                self.failed_bytes += row.bytes_in

    def end(self, outcome: str) -> None:
        """Record how the run ended (``finished``, ``interrupted``, ``failed: ...``)."""
        with self._lock:
            self.ended = self._clock()
            self.outcome = outcome

    def elapsed(self) -> float:
        """Seconds since the start (until the end, once ended)."""
        return (self.ended or self._clock()) - self.started

    def snapshot(self, *, failures: int = PAGE_FAILURES, bins: int = 120) -> dict:
        """The state as a JSON-ready dict (what the page and ``dcbulk/run.json`` show).

        ``failures`` newest failures are listed; the throughput series has at most ``bins``
        points (MB/s of finished files' source bytes over equal time bins).
        """
        with self._lock:
            rows = list(self.rows)
            counts = dict(self.counts)
            bytes_in, bytes_out, raw = self.bytes_in, self.bytes_out, self.raw_bytes
            skipped_bytes, total_files = self.skipped_bytes, self.total_files
            failed_bytes = self.failed_bytes
            fails = self.failures[-failures:] if failures else []
        elapsed = self.elapsed()
        settled = sum(counts.values())
        work_bytes = max(0, self.total_bytes - skipped_bytes)
        left = max(0, work_bytes - bytes_in - failed_bytes)
        rate = bytes_in / elapsed if elapsed > 0 else 0.0
        eta = left / rate if rate > 0 and left > 0 and self.outcome == "running" else None
        times, rates = throughput_series(rows, elapsed, bins=bins)
        return {
            "command": self.command, "outcome": self.outcome,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "elapsed_seconds": elapsed, "total_files": total_files,
            "counts": counts, "remaining": max(0, total_files - settled),
            "bytes_in": bytes_in, "bytes_out": bytes_out, "raw_bytes": raw,
            "ratio": (raw / bytes_out) if bytes_out and raw else None,
            "size_ratio": (bytes_in / bytes_out) if bytes_out else None,
            "bytes_left": left, "rate_bytes_per_second": rate, "eta_seconds": eta,
            "throughput": {"seconds": times, "mb_per_second": rates},
            "failures": [{"source": r.source, "error": r.error} for r in fails],
            "failures_total": counts.get("failed", 0),
            "page": self.page_url, "manifest": self.manifest,
        }


def _task_names(outputs: Iterable[str]) -> dict[str, str]:
    """File-task key prefix (``file_key`` without its index) -> the output's printable name."""
    return {file_key(out, 0).rpartition("-")[0]: printable(os.path.basename(out))
            for out in outputs}


def throughput_series(rows: list[FileRow], elapsed: float, *, bins: int = 120
                      ) -> tuple[list[float], list[float]]:
    """MB/s of finished files over time: source bytes of the files done in each of at most
    ``bins`` equal bins (of at least one second) of ``[0, elapsed]``, by the time they
    settled. Returns bin centres
    (seconds) and rates."""
    if elapsed <= 0 or bins < 1:
        return [], []
    width = max(1.0, elapsed / bins)  # bins of at least one second
    bins = max(1, math.ceil(elapsed / width))
    sums = [0.0] * bins
    for r in rows:
        if r.status == "done":
            sums[min(bins - 1, int(r.at / width))] += r.bytes_in
    return ([round((i + 0.5) * width, 3) for i in range(bins)],
            [round(s / width / 1e6, 4) for s in sums])
