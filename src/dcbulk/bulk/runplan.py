"""A job's run decided once: the :class:`RunPlan` the executor (:mod:`.executor`) runs.

:func:`planned` (a job that writes outputs) discovers the sources, asks the job for its
targets, takes the output directory's lock (not for dry runs, nor for a job whose output
is one file), and decides every target once (:mod:`.resume`: skip, adopt, refuse, make).
:func:`check_plan` (a :class:`~dcbulk.bulk.job.CheckJob`, ``verify``) makes a
:class:`CheckPlan`: every target a check, no output directory, so no lock, no manifest,
nothing to refuse or tidy. A plan knows what its outputs may not be (:meth:`RunPlan.refusal`)
and how to tidy the output directory after a run (:meth:`RunPlan.tidy`).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from ..arguments import file_output_arg, path_arg, paths_arg
from ..errors import LinkRefusedError
from ..nofollow import check_parents
from ..partials import clean_partials
from .inprocess import check_marker
from .job import CheckJob, Job, Target
from .lock import output_lock
from .manifest import Manifest
from .options import ArchiveOptions
from .report import ArchiveReport, FileResult
from .resume import Step, adopt_options, refuse_overwrite, settle
from .usage import check_output_dir, check_output_placement, check_outputs_are_not_sources

__all__ = ["CheckPlan", "RunPlan", "check_plan", "planned"]

logger = logging.getLogger(__name__)


def _output_dir(job: Job, output: str) -> str:
    """The directory the outputs of ``job`` go to: ``output``, or that of its one file."""
    return os.path.dirname(output) if job.one_file else output


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

    @functools.cached_property
    def source_paths(self) -> frozenset[str]:
        """The real paths of every source of the run (made now, or finished before)."""
        return frozenset(os.path.realpath(t.source.path) for t in self.targets)

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
        return _output_dir(self.job, self.output)

    @property
    def marker_dir(self) -> str | None:
        """Where a run in dcbulk's own process leaves its marker while it lasts
        (:mod:`~dcbulk.bulk.inprocess`): the output directory."""
        return self.output_dir

    def report(self) -> ArchiveReport:
        """The report of a dry run: what would be done."""
        return ArchiveReport(output_dir=self.output_dir, files=self.files,
                             wall_seconds=time.perf_counter() - self.t0)

    def refusal(self, target: Target) -> str | None:
        """Why ``target``'s output may not be written (one line), or None: no output
        through a linked directory."""
        if self.job.one_file:
            return None
        try:
            check_parents(self.output, target.output)
        except LinkRefusedError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def tidy(self) -> None:
        """Remove what killed or retried tasks, or a dead run, left in the output directory
        (``*.partial`` files, and the job's own leftovers)."""
        if not self.job.one_file:
            clean_partials(self.output)
            _sweep(self.job, self.targets)


class CheckPlan(RunPlan):
    """The plan of a job that writes nothing (:class:`~dcbulk.bulk.job.CheckJob`): every
    target is checked; no output may be refused, nothing is left to tidy."""

    @property
    def output_dir(self) -> str:
        """What is checked (a file or a directory)."""
        return self.output

    @property
    def marker_dir(self) -> None:
        """No marker: a check that dies leaves nothing to redo differently."""
        return None

    def refusal(self, target: Target) -> None:
        """Nothing is written: nothing to refuse."""
        return None

    def tidy(self) -> None:
        """Nothing was written: nothing to remove."""


def check_plan(job: CheckJob, checked, targets: list[Target],
               options: ArchiveOptions | None = None) -> CheckPlan:
    """The plan of ``job``'s checks of ``targets`` (``checked``: the file or directory the
    user named); decided at once, since a check job keeps no record."""
    options = options or ArchiveOptions()
    return CheckPlan(job, options, os.path.abspath(os.fspath(checked)),
                     [Step(t, overwrite=False, reason="check") for t in targets],
                     manifest=None, dry_run=False, targets=list(targets))


@contextlib.contextmanager
def planned(job: Job, sources: Iterable, output, options: ArchiveOptions, *,
            include: str = "*.rtdc", resume: bool = True, force: bool = False,
            dry_run: bool = False, follow_links: bool = False) -> Iterator[RunPlan]:
    """Plan a run of ``job`` (once) and hold the output directory's lock while it is used.

    Usage errors (sources or an output that are no paths, an output directory inside a
    source, one that cannot be created, an output that is one of the sources) are
    raised before anything is written; a second run on the same directory raises
    :class:`~dcbulk.errors.OutputLockedError`. ``follow_links`` also walks symbolic links
    that lead out of the source directories.
    """
    t0 = time.perf_counter()
    output = (file_output_arg(output) if job.one_file
              else os.path.abspath(os.fspath(path_arg("output", output))))
    sources = paths_arg("sources", sources)
    if not job.one_file:
        check_output_placement(sources, output)
        check_output_dir(output)
    entries = job.entries(sources, include=include,
                          output_dir=None if job.one_file else output,
                          follow_links=follow_links)
    options = replace(options, job=job.fingerprint)
    targets = job.targets(entries, output, options)
    check_outputs_are_not_sources([e.path for e in entries], [t.output for t in targets])
    lock = (contextlib.nullcontext() if dry_run or job.one_file else output_lock(output))
    with lock:
        if job.in_process and not dry_run:  # before the manifest: a refused run leaves
            check_marker(_output_dir(job, output))  # none (verify named a "killed" run)
        manifest = None
        fingerprint = options.fingerprint_dict()
        if job.resumable:
            if not resume and not force:
                refuse_overwrite(targets)
            manifest = Manifest.load(output, read_only=dry_run)
            adopt_options(manifest, fingerprint, force=force)
            if not dry_run:
                manifest.record_planned([t.source for t in targets])
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


