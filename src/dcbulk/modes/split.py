"""Split: cut each file into files of at most N events, all written at once.

As ``dclab-split``: output ``k`` of ``<stem>.rtdc`` is ``<stem>_<kkkk>.rtdc`` (from 0001) and
holds source events ``(k-1)*N .. k*N-1``; an all-zero first or last image (old Shape-In
files) is left out unless ``include_empty_boundary_images``; the sample name gets
`` k/n`` appended and the run identifier a suffix derived from its events (the rule of
:func:`~dcbulk.read.identifier.filtered_run_identifier`, as ``convert --filter``).
Each output is a complete file on its own: every own feature, metadata, logs, tables, the
source's basins (maps composed) and a mapped basin back to the source.

Every output is one target of :class:`SplitJob`, the convert job with a part of the
source as its recipe (one writer task per output, encoding on the workers), run by the
archive executor like every job.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..arguments import count_arg, flag_args
from ..bulk import ArchiveReport, ConvertJob, Part, Target, make_options, run_job
from ..command import Command, positive_count
from ..errors import DcbulkError
from ..filter_expr import FilterExpr, parse_filter
from ..plan import ExtraMetadata
from ..provenance import job_provenance
from ..read.files import open_rtdc
from ..read.filtering import kept_events
from ..read.inspect import inspect_source
from ..verify.pair import VerifyPair
from ..verify.values import suffixed_text, writable_text

__all__ = ["COMMAND", "SplitJob", "missing_pieces", "piece_path", "plan_split", "split"]

logger = logging.getLogger(__name__)


def _sample(path: str) -> object:
    """The source's ``experiment:sample``, as :func:`suffixed_text` gives each piece its own
    (bytes that are no UTF-8 kept); a PlanError (this source fails alone) if it cannot."""
    with open_rtdc(path) as h5:
        value = h5.attrs.get("experiment:sample", "")
    return writable_text(value, path, "experiment:sample",
                         "a piece cannot keep with its ' k/n'")


def piece_path(out_dir: str, source: str, k: int) -> str:
    """Output ``k`` (from 1) of ``source``, as dclab-split names it: ``<stem>_<kkkk>.rtdc``."""
    stem = os.path.splitext(os.path.basename(source))[0]
    return os.path.join(out_dir, f"{stem}_{k:04d}.rtdc")


def missing_pieces(pairs: Iterable[VerifyPair]) -> list[VerifyPair]:
    """A verdict for each piece of a split that is not where split put it, next to pieces
    being verified (``dcbulk verify pieces/*.rtdc`` said "equal" with a piece deleted:
    split writes no manifest). The pieces expected are planned again from the source and
    the options the pieces' logs name; pieces without events were never written."""
    missing, seen = [], set()
    for pair in pairs:
        if pair.piece is None or not pair.sample_suffix or pair.copy:  # copy: one piece,
            continue  # --against a copy of its source (named otherwise, maybe)
        number, count = (int(x) for x in pair.sample_suffix.split()[-1].split("/"))
        out_dir = os.path.dirname(pair.output)
        if count == 1 or (out_dir, pair.source) in seen:
            continue
        seen.add((out_dir, pair.source))
        first, stop, skip_empty = pair.piece
        per_file = first // (number - 1) if number > 1 else stop - first
        try:
            planned = plan_split(pair.source, out_dir, per_file, skip_empty=skip_empty,
                                 filter=parse_filter(pair.filter) if pair.filter else None)
        except DcbulkError:  # the piece's own check says what is wrong
            continue
        missing += [VerifyPair(output=output, source=pair.source, verdict=(
            f"{output}: missing (one of the {count} pieces of {pair.source}; split "
            f"writes no manifest: split it again)"))
            for output, _part, _ in planned if not os.path.lexists(output)]
    return missing


def plan_split(source: str, out_dir: str, events_per_file: int, *,
               filter: FilterExpr | None = None, skip_empty: bool = True
               ) -> list[tuple[str, Part, int]]:
    """The outputs of splitting one source: ``(output, part, bytes)`` each (outputs without
    events are left out)."""
    info = inspect_source(source)
    keep = kept_events(info, filter, skip_empty)
    n_files = -(-info.n_events // events_per_file)
    sample = _sample(info.path)
    pieces = []
    for k in range(n_files):
        lo, hi = k * events_per_file, min((k + 1) * events_per_file, info.n_events)
        events = lo + np.flatnonzero(keep[lo:hi])
        if not events.size:
            continue
        details = {"piece": k + 1, "pieces": n_files, "events per file": events_per_file,
                   "source events": [lo, hi], "events": int(events.size),
                   "filter": None if filter is None else filter.text,
                   "skip empty boundary images": skip_empty}
        # (the run identifier is the engine's, from the events: read.identifier's one rule)
        attrs = {"experiment:sample": suffixed_text(sample, f" {k + 1}/{n_files}")}
        pieces.append((piece_path(out_dir, info.path, k + 1),
                       Part(events, ExtraMetadata(attrs=attrs, provenance=job_provenance(
                           "split", details=details))),
                       info.size * events.size // max(1, info.n_events)))
    return pieces


class SplitJob(ConvertJob):
    """The job of :func:`split`: every piece of every source is one target (a conversion of
    those events, with a basin back to the source). Not resumable: existing outputs are
    refused unless ``force``."""

    name = "split"
    verb = "split"
    resumable = False

    def __init__(self, *, events_per_file: int = 10000, skip_empty: bool = True):
        super().__init__()
        self.events_per_file = count_arg("events_per_file", events_per_file)
        self.skip_empty = bool(skip_empty)
        self.fingerprint = {"mode": "split", "events per file": self.events_per_file,
                            "skip empty boundary images": self.skip_empty}

    def targets(self, entries, output, options) -> list[Target]:
        """The pieces of each source, below its place in the tree (as ``convert`` mirrors).

        A source whose pieces cannot be planned (damaged, lacking a feature the filter
        needs, ...) becomes one target that fails with that line, so it fails alone; a source
        that gives no piece (no events, or none kept) is one warning line."""
        targets = []
        for entry in entries:
            out_dir = os.path.join(output, os.path.dirname(entry.relpath))
            try:
                pieces = plan_split(entry.path, out_dir, self.events_per_file,
                                    filter=options.filter, skip_empty=self.skip_empty)
            except (DcbulkError, OSError) as exc:  # named as its first piece would be
                targets.append(Target(piece_path(out_dir, entry.path, 1), entry, 0,
                                      _Unplanned(exc)))
                continue
            if not pieces:
                logger.warning("%s: nothing to split (no events, or none that the filter "
                               "and the all-zero boundary-image rule keep); no output",
                               entry.path)
            targets += [Target(out, entry, size, part) for out, part, size in pieces]
        return targets

    def make(self, target: Target, options, **kwargs):
        """Make one piece (runs as a task on a worker); an unplanned source fails here."""
        if isinstance(target.recipe, _Unplanned):
            raise target.recipe.error
        return super().make(target, options, **kwargs)


@dataclass(frozen=True)
class _Unplanned:
    """The recipe of a source whose pieces could not be planned: ``error`` (picklable)."""

    error: Exception


def split(sources: Iterable, output_dir, *, events_per_file: int = 10000,
          include_empty_boundary_images: bool = False, features=None,
          filter: str | None = None, compression: str = "zstd:5", client=None,
          force: bool = False, include: str = "*.rtdc", max_open_outputs: int | None = None,
          dry_run: bool = False, progress=None, timeout: float | None = None,
          follow_links: bool = False) -> ArchiveReport:
    """Split every source into files of at most ``events_per_file`` events.

    Outputs go to ``output_dir`` below the source's place in its tree (as ``convert``
    mirrors it), named as dclab-split names them. ``filter`` leaves events out of each
    piece (pieces keep dclab's event ranges); pieces left without events are not written.
    Existing outputs are refused (per output, as failures) unless ``force``.
    ``timeout`` (seconds per piece, from when its task starts) and ``follow_links`` are as
    for :func:`~dcbulk.convert_archive`.
    """
    flag_args(include_empty_boundary_images=include_empty_boundary_images)
    job = SplitJob(events_per_file=events_per_file,
                   skip_empty=not include_empty_boundary_images)
    options = make_options(features=features, filter=filter, compression=compression)
    return run_job(job, sources, output_dir, options, include=include, force=force,
                   dry_run=dry_run, client=client, progress=progress,
                   max_open_outputs=max_open_outputs, timeout=timeout,
                   follow_links=follow_links)


def _add_arguments(p) -> None:
    p.add_argument("--events-per-file", type=positive_count, default=10000, metavar="N",
                   help="maximum events per output [10000]")
    p.add_argument("--include-empty-boundary-images", action="store_true",
                   help="keep an all-zero first or last image (dropped, as by dclab-split)")


COMMAND = Command(
    name="split", help="split files into files of at most N events",
    description="As dclab-split: <stem>_0001.rtdc, ... each complete alone, written in "
    "parallel.",
    job=lambda ns: SplitJob(events_per_file=ns.events_per_file,
                            skip_empty=not ns.include_empty_boundary_images),
    options=("features", "filter", "max_open_outputs"), add_arguments=_add_arguments)
