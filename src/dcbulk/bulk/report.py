"""What a run reports: one :class:`FileResult` per output, gathered in an :class:`ArchiveReport`.

A :class:`FileResult` is the archive's view of one output: its status in the run
(``done``, ``skipped``, ``failed``, ``planned``) and, for a made output, the figures of the
worker's :class:`~dcbulk.engine.report.Report`, derived from it in one place
(:meth:`FileResult.made`). A checked file (``verify``) is ``done`` when its check found
nothing and ``failed`` with its ``problems`` otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..engine.report import Report

__all__ = ["ArchiveReport", "FileResult", "STATUSES"]

#: the statuses of a file in a run
STATUSES = ("done", "skipped", "failed", "planned")


@dataclass
class FileResult:
    """The outcome for one output (``source``: the file it is recorded under)."""

    source: str
    output: str
    status: str  # one of STATUSES
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    raw_bytes: int = 0
    ratio: float | None = None
    seconds: float = 0.0
    reason: str = ""
    error: str | None = None
    #: what a check (``verify``) found, one line each, and what it compared
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @classmethod
    def made(cls, report: Report, *, source: str, bytes_in: int) -> FileResult:
        """The result of an output a job made (``report``: the job's, without error)."""
        ratio = report.compression_ratio
        return cls(source=source, output=report.output, status="done", events=report.events,
                   bytes_in=bytes_in, bytes_out=report.bytes_out,
                   raw_bytes=report.raw_bytes, ratio=None if ratio != ratio else ratio,
                   seconds=report.wall_seconds, checked=list(report.checked))


@dataclass
class ArchiveReport:
    """Outcome of a run (``ok`` is False when any file failed)."""

    output_dir: str
    files: list[FileResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    dashboard: str | None = None

    def count(self, status: str) -> int:
        """How many files have ``status``."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        """The failed files."""
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        """No file failed."""
        return not self.failed

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (counts per status, bytes of the done files)."""
        done = [f for f in self.files if f.status == "done"]
        return {
            "output_dir": self.output_dir, "wall_seconds": self.wall_seconds,
            "dashboard": self.dashboard,
            "counts": {s: self.count(s) for s in STATUSES},
            "bytes_in": sum(f.bytes_in for f in done), "bytes_out": sum(f.bytes_out for f in done),
            "files": [asdict(f) for f in self.files],
        }
