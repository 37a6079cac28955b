"""Split: cut each file into files of at most N events, all written at once.

As ``dclab-split``: output ``k`` of ``<stem>.rtdc`` is ``<stem>_<kkkk>.rtdc`` (from 0001) and
holds source events ``(k-1)*N .. k*N-1``; an all-zero first or last image (old Shape-In
files) is left out unless ``include_empty_boundary_images``; the sample name gets
`` k/n`` appended and the run identifier a suffix derived from its events (the rule of
:func:`~dcbulk.read.identifier.filtered_run_identifier`, as ``convert --filter``).
Each output is a complete file on its own: every own feature, metadata, logs, tables, the
source's basins (maps composed) and a mapped basin back to the source.

Every output is one :func:`~dcbulk.convert` call (one writer task, encoding on the
workers); up to ``max_open_outputs`` of them run at once, from threads of this process.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from ..bulk import ArchiveReport, FileResult, discover_sources
from ..bulk.usage import check_timeout
from ..nofollow import check_parents
from ..engine import convert
from ..engine.client import client_context
from ..errors import DcbulkError, PlanError
from ..plan import ExtraMetadata
from ..provenance import job_provenance
from ..read.chunks import OpenFiles, read_event_rows
from ..read.files import open_rtdc
from ..read.inspect import SourceInfo, inspect_source
from .common import event_filter

__all__ = ["SplitPiece", "plan_split", "split", "run_pieces"]


@dataclass(frozen=True, eq=False)
class SplitPiece:
    """One output of a split: which source events go where, and its extra metadata."""

    source: str
    output: str
    events: np.ndarray
    extra: ExtraMetadata
    size: int


def _empty_boundaries(info: SourceInfo) -> tuple[bool, bool]:
    """Whether the first and the last event have an all-zero image (as dclab checks)."""
    if info.n_events == 0:
        return False, False
    first = last = False
    with OpenFiles() as files:
        if "image" in info.features:
            fsrc = info.features["image"]
            first = not read_event_rows(files, fsrc, slice(0, 1)).any()
            last = not read_event_rows(files, fsrc, slice(info.n_events - 1,
                                                          info.n_events)).any()
    if not first and info.has_contour:
        with open_rtdc(info.path) as h5:
            cont = h5["events/contour"].get("0")
            first = cont is not None and not np.asarray(cont).any()
    return first, last


def _kept(info: SourceInfo, filter: str | None, skip_empty: bool) -> np.ndarray:
    keep = np.ones(info.n_events, dtype=bool)
    if skip_empty:
        first, last = _empty_boundaries(info)
        keep[:1] &= not first
        keep[-1:] &= not last
    mask = event_filter(info, filter)
    return keep if mask is None else keep & mask


def _sample(path: str) -> str:
    with open_rtdc(path) as h5:
        value = h5.attrs.get("experiment:sample", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def plan_split(source: str, out_dir: str, events_per_file: int, *,
               filter: str | None = None, skip_empty: bool = True) -> list[SplitPiece]:
    """The outputs of splitting one source (outputs without events are left out)."""
    if events_per_file < 1:
        raise PlanError(f"events per file must be at least 1, got {events_per_file}")
    info = inspect_source(source)
    keep = _kept(info, filter, skip_empty)
    n_files = -(-info.n_events // events_per_file)
    stem = os.path.splitext(os.path.basename(info.path))[0]
    sample = _sample(info.path)
    pieces = []
    for k in range(n_files):
        lo, hi = k * events_per_file, min((k + 1) * events_per_file, info.n_events)
        events = lo + np.flatnonzero(keep[lo:hi])
        if not events.size:
            continue
        details = {"piece": k + 1, "pieces": n_files, "events per file": events_per_file,
                   "source events": [lo, hi], "events": int(events.size), "filter": filter,
                   "skip empty boundary images": skip_empty}
        # (the run identifier is the engine's, from the events: read.identifier's one rule)
        attrs = {"experiment:sample": f"{sample} {k + 1}/{n_files}"}
        pieces.append(SplitPiece(source=info.path,
                                 output=os.path.join(out_dir, f"{stem}_{k + 1:04d}.rtdc"),
                                 events=events, size=info.size * events.size // max(
                                     1, info.n_events),
                                 extra=ExtraMetadata(attrs=attrs, provenance=job_provenance(
                                     "split", details=details))))
    return pieces


def run_pieces(pieces: list[SplitPiece], *, features=None, compression: str = "zstd:5",
               client=None, force: bool = False, max_open_outputs: int | None = None,
               progress=None, report: ArchiveReport, timeout: float | None = None) -> None:
    """Write every piece with :func:`~dcbulk.convert`, several at once; fill ``report``
    (``timeout``: seconds per piece, from the submission of its writer)."""
    def one(piece: SplitPiece) -> FileResult:
        try:
            check_parents(report.output_dir, piece.output)  # never through a linked directory
            rep = convert(piece.source, piece.output, features=features,
                          mapping=piece.events, compression=compression, client=cl,
                          basin_to_source=True, overwrite=force, extra=piece.extra,
                          timeout=timeout)
        except (DcbulkError, OSError) as exc:
            return FileResult(piece.source, piece.output, "failed", reason="error",
                              error=f"{type(exc).__name__}: {exc}")
        return FileResult(piece.source, piece.output, "done", events=rep.events,
                          bytes_in=piece.size, bytes_out=rep.bytes_out,
                          raw_bytes=rep.raw_bytes, ratio=rep.compression_ratio,
                          seconds=rep.wall_seconds)

    with client_context(client) as cl:
        report.dashboard = getattr(cl, "dashboard_link", None)
        workers = max_open_outputs or sum(cl.nthreads().values()) + 2
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(one, piece) for piece in pieces]
            for fut in as_completed(futures):
                result = fut.result()
                report.files.append(result)
                if progress is not None:
                    progress(result, len(report.files), len(pieces))


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
    ``timeout`` (seconds per piece, counted from the submission of its writer) and
    ``follow_links`` are as for :func:`~dcbulk.convert_archive`.
    """
    import time
    t0 = time.perf_counter()
    output_dir = os.path.abspath(output_dir)
    report = ArchiveReport(output_dir=output_dir)
    pieces = []
    check_timeout(timeout)
    for entry in discover_sources(sources, include=include, output_dir=output_dir,
                                  follow_links=follow_links):
        out_dir = os.path.join(output_dir, os.path.dirname(entry.relpath))
        pieces.extend(plan_split(entry.path, out_dir, events_per_file, filter=filter,
                                 skip_empty=not include_empty_boundary_images))
    todo = []
    for p in pieces:  # existing outputs are refused without starting anything
        if os.path.exists(p.output) and not force:
            report.files.append(FileResult(
                p.source, p.output, "failed", events=int(p.events.size), bytes_in=p.size,
                reason="output exists",
                error=f"OutputExistsError: {p.output}: exists already (use --force)"))
        elif dry_run:
            report.files.append(FileResult(p.source, p.output, "planned",
                                           events=int(p.events.size), bytes_in=p.size,
                                           reason="replace" if os.path.exists(p.output)
                                           else "new"))
        else:
            todo.append(p)
    if todo:
        run_pieces(todo, features=features, compression=compression, client=client,
                   force=force, max_open_outputs=max_open_outputs, progress=progress,
                   report=report, timeout=timeout)
    report.wall_seconds = time.perf_counter() - t0
    return report
