"""``dcbulk verify`` and :func:`dcbulk.verify`: what to check, and the job that checks it.

Pairs come from the caller (``output`` and ``against``), from a file's provenance log
(:mod:`dcbulk.verify.provenance`: its source and options) or, for an output directory, from
its manifest: each finished record names its source, and the manifest's options
(``features``, ``filter``) give the expected feature set and event mapping. Outputs of
dcnum's pipeline (``dcbulk process``) have new events: they are checked alone
(:mod:`dcbulk.verify.processed`).

:class:`VerifyJob` is a :class:`~dcbulk.bulk.job.CheckJob`: one target per pair, run by the
executor like every mode (one task per output, a bounded number in flight, progress, one
:class:`~dcbulk.bulk.report.FileResult` per output, ``done`` when equal and ``failed`` with
its problems otherwise), writing nothing. On a cluster, an output larger than
``FILE_TASK_BYTES`` on disk whose check reads more than the executor's inline limit (half a
worker thread's share of what remains to be read, as for a conversion) is checked by its
task through sub-tasks (:func:`dcbulk.verify.checks.check_pair`), so every worker reads
it; in a run of many files each is checked whole by its task: sub-tasks of one worker's
file would only contend with the other files' checks (30 outputs of 5-20 MB on 2 workers:
0.4-1.2 s more wall time and 10-15 % more CPU when every output above 8 MB was split).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..arguments import (client_arg, feature_names, flag_args, path_arg, paths_arg,
                         progress_arg, text_arg)
from ..bulk.executor import Progress, execute, execute_here
from ..bulk.runplan import check_plan
from ..bulk.job import INLINE_BYTES, CheckJob, Target
from ..bulk.options import ArchiveOptions
from ..bulk.report import ArchiveReport, FileResult
from ..bulk.sources import SourceEntry
from ..engine.client import current_worker
from ..engine.report import Report
from ..errors import DcbulkError, NotHDF5Error, NotRtdcError, UsageError
from ..verify import checks
from ..verify.checks import VerifyPair, check_pair
from ..verify.pair import misshapen_file
from ..verify.processed import is_processed_output
from ..verify.provenance import pair_from_provenance
from .split import missing_pieces
from .verify_manifest import pairs_from_manifest

__all__ = ["Check", "VerifyJob", "VerifyReport", "pairs_from_manifest", "pairs_of", "verify",
           "verify_pairs"]


@dataclass(frozen=True)
class Check:
    """A verify target's recipe: the pair, and whether its task may split the check into
    sub-tasks of about ``task_bytes`` output bytes (an output above ``FILE_TASK_BYTES``,
    decided on the client; it does when the check reads more than its inline limit)."""

    pair: VerifyPair
    split: bool
    task_bytes: int


class VerifyJob(CheckJob):
    """Check outputs against what they must equal (``dcbulk verify``); writes nothing."""

    name = "verify"
    in_process = True

    @staticmethod
    def targets_of(pairs: list[VerifyPair], *, split: bool = True) -> list[Target]:
        """One target per pair: the output checked, the bytes its check reads (output and
        source on disk: the run is made in dcbulk's process or on a cluster by what it
        reads, as a conversion's), and its :class:`Check` (which may split into sub-tasks
        for an output above ``FILE_TASK_BYTES``, unless not ``split``)."""
        targets = []
        for pair in pairs:
            size = _size(pair.output)
            entry = SourceEntry(pair.source, os.path.basename(pair.output),
                                os.path.dirname(pair.source or pair.output))
            big = split and not pair.processed and size > checks.FILE_TASK_BYTES
            targets.append(Target(pair.output, entry, size + _size(pair.source),
                                  Check(pair, big, checks.TASK_BYTES)))
        return targets

    def make(self, target: Target, options: ArchiveOptions, *, overwrite: bool = False,
             inline_bytes: int = INLINE_BYTES) -> Report:
        """Check one output; its problems (none: equal) and what was compared."""
        t0 = time.perf_counter()
        check: Check = target.recipe
        if check.split and target.size > inline_bytes and current_worker() is not None:
            from distributed import worker_client
            with worker_client() as client:  # leaves the thread pool while sub-tasks run
                problems, checked = check_pair(check.pair, client=client,
                                               task_bytes=check.task_bytes)
        else:
            problems, checked = check_pair(check.pair, task_bytes=check.task_bytes)
        return Report(source=target.source.path, output=target.output, bytes_in=target.size,
                      wall_seconds=time.perf_counter() - t0, error="; ".join(problems) or None,
                      problems=tuple(problems), checked=tuple(checked))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # missing: its check reports it


class VerifyReport(ArchiveReport):
    """Outcome of :func:`verify`: one :class:`~dcbulk.bulk.report.FileResult` per output
    (``done``: equal, or sound for an output of dcnum's pipeline, :attr:`alone`; ``failed``:
    its ``problems``); ``ok`` when no output differs."""

    @classmethod
    def of(cls, report: ArchiveReport, pairs: list[VerifyPair]) -> VerifyReport:
        """``report``'s files in the order of ``pairs``."""
        order = {p.output: i for i, p in enumerate(pairs)}
        return cls(output_dir=report.output_dir, wall_seconds=report.wall_seconds,
                   dashboard=report.dashboard,
                   files=sorted(report.files, key=lambda f: order.get(f.output, len(order))))

    @property
    def alone(self) -> int:
        """Outputs found sound but compared with nothing: dcnum's pipeline outputs (without
        a dcbulk provenance log), whose events are new."""
        return sum(f.status == "done" and list(f.checked) == [checks.ALONE] for f in self.files)

    @property
    def problems(self) -> list[str]:
        """Every problem, one line each (a check that failed to run: its error)."""
        return [p for f in self.files for p in _problems(f)]

    def to_dict(self) -> dict:
        """The verdicts as a JSON-ready dict (counts, and per output its problems and
        what was compared)."""
        return {"ok": self.ok, "wall_seconds": self.wall_seconds,
                "counts": {"files": len(self.files), "equal": self.count("done") - self.alone,
                           "alone": self.alone,
                           "mismatched": self.count("failed"),
                           "problems": len(self.problems)},
                "files": [{"output": f.output, "source": f.source, "problems": _problems(f),
                           "checked": f.checked} for f in self.files]}


def _problems(result: FileResult) -> list[str]:
    if result.problems or result.status != "failed":
        return list(result.problems)
    return [f"{result.output}: {result.error}"]  # the check itself failed (e.g. timed out)


def verify_pairs(output, against=None, *, features=None, mapping=None,
                 filter: str | None = None, follow_external: bool = False
                 ) -> list[VerifyPair]:
    """What :func:`verify` checks: each output and what it must equal (cheap, no cluster).

    A file without ``against`` pairs with the source and options of its provenance log; a
    file with ``against`` and the given options with that source, as a conversion of it;
    with ``against`` alone, a condensed output or a piece of split pairs with that source
    as a copy of the one its log names, with the log's options (verify said that a
    condensed output given ``--against`` lacked the images condense leaves out); a
    directory with the finished records of its manifest.

    Raises
    ------
    UsageError
        For a directory with ``against`` or made by a mode other than ``convert`` and
        ``process``, options without ``against``, or a file whose provenance log does not
        say what it must equal.
    SourceNotFoundError
        When the output, or the source its log names, does not exist.
    ManifestError
        For a directory without a readable manifest.
    NotHDF5Error
        For an output that is not a regular file (a FIFO, device or socket: not opened).
    """
    output = os.fspath(output)
    special = checks.special_file(output)
    if special:
        raise NotHDF5Error(special)
    given = [name for name, value in (("features", features), ("mapping", mapping),
                                      ("filter", filter)) if value is not None]
    if against is None and given:
        raise UsageError(f"{output}: {', '.join(given)} go with the source to verify "
                         f"against (--against SRC); without it the options come from "
                         f"the output's manifest or provenance log")
    if os.path.isdir(output):
        if against is not None:
            raise UsageError(f"{output} is a directory: it is verified through its manifest, "
                             f"without --against (against=)")
        return pairs_from_manifest(output)
    if os.path.isfile(output) and (against is None or not (given or follow_external)):
        if against is None:
            shape = misshapen_file(output)
            if shape:  # its provenance log cannot be read as one either
                raise NotRtdcError(shape)
            if is_processed_output(output):
                return [VerifyPair(output=os.path.abspath(output), source="", processed=True)]
        logged = pair_from_provenance(  # with against: maybe a copy of its log's source
            output, None if against is None else os.path.abspath(os.fspath(against)))
        if logged is not None:
            return [logged]
    elif against is None:
        return [pair_from_provenance(output)]  # says the file is not there
    return [VerifyPair(output=os.path.abspath(output), source=os.path.abspath(os.fspath(against)),
                       features=feature_names(features),
                       filter=text_arg("filter", filter, "a filter expression"),
                       mapping=None if mapping is None else tuple(np.asarray(mapping).tolist()),
                       follow_external=bool(follow_external))]


def pairs_of(outputs, against=None, **options) -> tuple[list[VerifyPair], str]:
    """The pairs of one output (file or directory) or several (:func:`verify_pairs` of
    each, an output named twice checked once), and the path they have in common.

    Raises
    ------
    UsageError
        For ``against`` with several outputs, and as :func:`verify_pairs` for one output
        (of several, an output that cannot be paired is a verdict of its own).
    """
    outputs = [os.fspath(o) for o in paths_arg("output", outputs)]
    if against is not None:
        path_arg("against", against)
        if len(outputs) != 1:
            raise UsageError(f"--against (against=) names the source of one output file, "
                             f"not of {len(outputs)}")
    pairs = {pair.output: pair for out in outputs
             for pair in _pairs_or_verdict(out, against, len(outputs) > 1, options)}
    pairs.update((p.output, p) for p in missing_pieces(list(pairs.values())))
    return list(pairs.values()), os.path.commonpath([os.path.abspath(o) for o in outputs])


def _pairs_or_verdict(output: str, against, among_others: bool, options: dict
                      ) -> list[VerifyPair]:
    """:func:`verify_pairs` of one output; named among others, one that cannot be paired
    (no provenance log, a source gone, ...) is its own one-line verdict, so the others are
    still checked (alone, it is the run's usage error or error)."""
    try:
        return verify_pairs(output, against, **options)
    except DcbulkError as exc:
        if not among_others:
            raise
        return [VerifyPair(output=os.path.abspath(output), source="", verdict=str(exc))]


def verify(output, against=None, *, features=None, mapping=None, filter: str | None = None,
           client=None, inline: bool = False, follow_external: bool = False,
           progress: Progress | None = None, open_client=None) -> VerifyReport:
    """Verify outputs against their sources: every chunk read, every value compared.

    Parameters
    ----------
    output
        An output file (with ``against``, else against the source and options its
        provenance log names), an output directory (pairs from its manifest), a list of
        such files and directories, or the pairs of :func:`verify_pairs`.
    against
        The source of a single output file (alone, for a condensed file or a piece of
        split: a copy of the source its provenance log names, checked with its options).
    features, mapping, filter, follow_external
        With ``against``: the feature selection, event mapping (indices or boolean filter),
        filter expression and source policy the file was converted with (default: all own
        features, all events, nothing external followed).
    client
        A ``distributed.Client``; by default ``open_client()`` or a LocalCluster (unless
        ``inline``), started only when there is something to check.
    inline
        Run every check in this process, one after another.
    progress
        Called as ``progress(result, done_count, total_count)`` as each output's verdict
        settles (``result``: a :class:`~dcbulk.bulk.report.FileResult`, ``failed`` when it
        differs).
    open_client
        A context manager factory yielding the client (the CLI's logged cluster).

    Returns
    -------
    VerifyReport
        One :class:`~dcbulk.bulk.report.FileResult` per output, each problem one line.

    Raises
    ------
    UsageError, SourceNotFoundError, ManifestError
        As :func:`verify_pairs`.
    """
    progress_arg(progress)
    flag_args(inline=inline, follow_external=follow_external)
    client_arg(client)
    if isinstance(output, (list, tuple)) and output and all(
            isinstance(p, VerifyPair) for p in output):
        pairs, checked = list(output), os.path.commonpath([p.output for p in output])
    else:
        pairs, checked = pairs_of(output, against, features=features, mapping=mapping,
                                  filter=filter, follow_external=follow_external)
    job = VerifyJob()
    plan = check_plan(job, checked, job.targets_of(pairs, split=not inline))
    if inline:
        return VerifyReport.of(execute_here(plan, progress=progress), pairs)
    return VerifyReport.of(execute(plan, client=client, open_client=open_client,
                                   progress=progress), pairs)
