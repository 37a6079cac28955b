"""Join: several measurements into one file, encoded in parallel by one writer.

As ``dclab-join``: the inputs are ordered by ``experiment:date``, ``experiment:time`` and
``experiment:run index``; the output has the metadata of the earliest, the features the
earliest has itself (dclab's innate features, no contour) that every other input provides
too, ``time`` offset by each input's start (and ``frame`` by start times frame rate,
``index_online`` continued, ``index`` renumbered), and ``experiment:run index`` 1. Unlike
dclab it gets a new run identifier (its events are not the earliest input's; derived from
every input's events by :func:`~dcbulk.read.identifier.filtered_run_identifier`), and the
logs and tables of every input are kept as ``src-#k_<name>`` plus ``src-#k_cfg`` (its
attributes) and a ``dcbulk-join`` log listing the inputs with their identifiers.

The joined features are columns (:class:`~dcbulk.engine.columns.Column`: each input's rows,
mapped, offset and cast, one after the other), planned on the client as the recipe of the one
target of :class:`JoinJob` and stored by :func:`~dcbulk.store_features` in that target's task:
one writer; in dcbulk's own process its blocks are computed by the run's block pool without
dask, on a cluster the columns become dask arrays read and encoded on the workers. The
earliest input's whole chunks that line up with the output's and keep its filters (zstd >=
the level asked) are copied as stored, after being proved sound, as ``convert`` copies a
file's.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..bulk import (INLINE_BYTES, ArchiveReport, Job, Target, discover_sources, make_options,
                    run_job)
from ..bulk.usage import inode_key
from ..command import Command
from ..codec import ChunkCodec
from ..engine import Report, store_features
from ..engine.columns import Column, Piece
from ..engine.client import current_worker
from ..errors import PlanError, UsageError
from ..filter_expr import FilterExpr
from ..plan import ExtraMetadata, plan_feature, select_features
from ..provenance import job_provenance
from ..read.chunks import OpenFiles, read_event_rows
from ..read.files import open_rtdc
from ..read.filtering import event_filter
from ..read.identifier import filtered_run_identifier
from ..read.inspect import SourceInfo, inspect_source
from ..read.joining import (attrs_of, cfg_lines, frame_shift, joined_dtype, logs_of,
                            order_key, start_seconds, tables_of)
from ..verify.values import writable_text

__all__ = ["COMMAND", "JoinJob", "join"]

logger = logging.getLogger(__name__)


def _mapping(info: SourceInfo, filter: FilterExpr | None) -> np.ndarray | None:
    mask = event_filter(info, filter)
    return None if mask is None else np.flatnonzero(mask).astype(np.int64)


def _last(info: SourceInfo, feature: str, idx) -> float | None:
    n = info.n_events if idx is None else idx.size
    if not n:
        return None
    row = info.n_events - 1 if idx is None else int(idx[-1])
    with OpenFiles() as files:
        return read_event_rows(files, info.features[feature], slice(row, row + 1))[0]


def _pieces(info: SourceInfo, names: list[str], idx: np.ndarray | None, n: int, k: int,
            t_off: float, attrs: dict, online_next: int | None) -> dict[str, Piece]:
    """Input ``k``'s piece (``n`` events: ``idx``, or all) of each joined feature it has:
    ``time`` offset by its start, ``frame`` by start times frame rate, ``index_online``
    continued (from the second input on)."""
    pieces = {}
    for name in names:
        if name not in info.features:  # "index" (renumbered)
            continue
        fp = plan_feature(info.features[name], n, ChunkCodec(), mapped=idx is not None)
        cast, shift = None, None
        if k > 1 and name == "time":
            cast, shift = np.dtype(np.float64).str, t_off
        elif k > 1 and name == "frame":
            cast, shift = np.dtype(np.uint64).str, frame_shift(attrs, t_off, info.path)
        elif k > 1 and name == "index_online":
            shift = 0 if online_next is None else online_next
        pieces[name] = Piece(fp, n, info.path, mapping=idx, cast=cast, shift=shift)
    return pieces


def _plan(infos: list[SourceInfo], attrs_in: list[dict], features, filter):
    """The joined columns, the features whose first rows are the earliest input's own
    (its stored chunks may be copied), the per-input details, the features dropped and the
    run id (``attrs_in``: each input's root attributes)."""
    if features is not None and "contour" in features:  # not "not available": it may be
        raise UsageError("join does not write 'contour' (the joined file has no contours); "
                         "leave it out of --features")
    names = [n for n in select_features(infos[0], features) if n != "contour"]
    if features is not None:  # asked for: every input must have it, as convert and split
        asked = [n for n in features if n != "index"]  # renumbered: every input has it
        for info in infos[1:] if asked else ():
            select_features(info, asked)  # one line naming the input that lacks one
    # "index" is renumbered, so every input has it (dclab computes it when missing)
    dropped = sorted({n for info in infos[1:] for n in names
                      if n not in info.features and n != "index"})
    for name in dropped:
        lacking = [info.path for info in infos[1:] if name not in info.features]
        logger.warning("join: feature '%s' left out (not in %s; --features %s makes a "
                       "missing feature an error)", name, ", ".join(lacking), name)
    names = [n for n in names if n not in dropped]
    for name in names:
        shapes = {info.features[name].data.item_shape for info in infos
                  if name in info.features}
        if len(shapes) > 1:
            raise PlanError(f"cannot join: '{name}' has different shapes per event in the "
                            f"inputs ({', '.join(map(str, sorted(shapes)))})")
    if not names:
        raise PlanError("the inputs have no feature in common to join")
    mappings = [_mapping(info, filter) for info in infos]
    parts: dict[str, list[Piece]] = {n: [] for n in names}
    details, offset0, online_next, total = [], None, None, 0
    for k, (info, idx, attrs) in enumerate(zip(infos, mappings, attrs_in), start=1):
        start = start_seconds(attrs, info.path)
        offset0 = start if offset0 is None else offset0
        t_off = start - offset0
        n = info.n_events if idx is None else int(idx.size)
        pieces = _pieces(info, names, idx, n, k, t_off, attrs, online_next)
        for name in names:
            parts[name].append(pieces.get(name) or Piece(None, n, info.path))  # "index"
        if "index_online" in names and n:
            last = _last(info, "index_online", idx)
            online_next = int(last + (0 if k == 1 or online_next is None else online_next)) + 1
        details.append({"index": k, "path": info.path, "name": os.path.basename(info.path),
                        "identifier": info.identifier, "size": info.size, "events": n,
                        "first event": total,
                        "time offset": t_off, "start": order_key(attrs)})
        total += n
    # the earliest input's dtype (it has every name), as dclab appends to it, but time and
    # frame as the later inputs' offset values (read/joining.py::joined_dtype)
    offsets = [d["time offset"] for d in details]
    joined = {name: Column(tuple(pieces), joined_dtype(name, pieces[0].feature.dtype, offsets),
                           pieces[0].feature.item_shape, enumerate=name == "index")
              for name, pieces in parts.items()}
    stored = {} if mappings[0] is not None else {  # the earliest input's rows come unchanged
        name: infos[0].features[name] for name, column in joined.items()
        if name != "index" and name in infos[0].features
        and np.dtype(column.dtype) == np.dtype(parts[name][0].feature.dtype)}
    run_id = filtered_run_identifier(
        infos[0].identifier, mappings[0], infos[0].n_events,
        more=[(info.identifier, idx, info.n_events)
              for info, idx in zip(infos[1:], mappings[1:])])
    return joined, stored, details, dropped, run_id


def _extra(infos: list[SourceInfo], attrs_in: list[dict], details: list[dict],
           dropped: list[str], options: dict, run_id: str) -> ExtraMetadata:
    attrs, logs, tables = dict(attrs_in[0]), {}, {}
    for k, (info, src_attrs) in enumerate(zip(infos, attrs_in), start=1):
        with open_rtdc(info.path) as h5:
            for name, lines in logs_of(h5).items():
                logs[f"src-#{k}_{name}"] = lines
            for name, table in tables_of(h5).items():
                tables[f"src-#{k}_{name}"] = table
            logs[f"src-#{k}_cfg"] = cfg_lines(src_attrs)
    attrs.pop("experiment:event count", None)
    attrs["experiment:run index"] = np.int64(1)
    attrs["experiment:run identifier"] = run_id
    prov = job_provenance("join", options=options,
                          details={"inputs": details, "features dropped": dropped})
    return ExtraMetadata(attrs=attrs, logs=logs, tables=tables, provenance=prov)


def _encodable(path: str, attrs: dict) -> dict:
    """``attrs`` of the input ``path``, whose text the join writes into its logs
    (``src-#k_cfg``): a ``str`` holding no valid UTF-8 is a PlanError naming it (it was a
    UnicodeEncodeError traceback; :func:`~dcbulk.verify.values.writable_text`)."""
    for key, value in attrs.items():
        writable_text(value, path, key, "the join cannot write into its logs")
    return attrs


class JoinJob(Job):
    """The job of :func:`join`: one target, the joined file, from every source.

    The inputs are ordered and the joined arrays planned on the client (usage errors such
    as inputs without a common feature come before any work); the target's task stores
    them. Not resumable; an existing output is refused unless ``force``.
    """

    name = "join"
    verb = "joined"
    resumable = False
    one_file = True
    in_process = True
    fingerprint = {"mode": "join"}

    def entries(self, sources, **kwargs) -> list:
        """Each source's files, source by source: a file given twice is joined twice, as
        dclab-join does (and files of the same name in two directories are no clash: there
        is one output)."""
        return [entry for source in sources for entry in discover_sources([source], **kwargs)]

    def targets(self, entries, output, options) -> list[Target]:
        """The one joined output (``.rtdc`` appended when missing, as dclab-join does)."""
        if len(entries) < 2:
            raise UsageError(f"join needs at least two input files, got {len(entries)}")
        given = Counter(inode_key(e.path) or e.path for e in entries)  # hard links too
        for entry in entries:
            times = given.pop(inode_key(entry.path) or entry.path, 1)
            if times > 1:
                logger.warning("join: %s is given %d times; its events are joined %d times, "
                               "as dclab-join does", entry.path, times, times)
        output = output if output.endswith(".rtdc") else output + ".rtdc"
        infos = [inspect_source(e.path) for e in entries]
        attrs = []
        for info in infos:
            with open_rtdc(info.path) as h5:
                attrs.append(_encodable(info.path, attrs_of(h5)))
        order = sorted(range(len(infos)), key=lambda k: (order_key(attrs[k]), k))
        infos, attrs = [infos[k] for k in order], [attrs[k] for k in order]
        joined, stored, details, dropped, run_id = _plan(infos, attrs, options.features,
                                                         options.filter)
        extra = _extra(infos, attrs, details, dropped, options.fingerprint_dict(), run_id)
        return [Target(output, entries[order[0]], sum(info.size for info in infos),
                       (joined, stored, extra))]

    def make(self, target: Target, options, *, overwrite: bool,
             inline_bytes: int = INLINE_BYTES, **_) -> Report:
        """Store the joined arrays: as a task on a worker, the encoding on the others; or
        here, when the inputs are at most ``inline_bytes`` (unbounded where a block pool
        computes the blocks: the run's in dcbulk's process, or the worker's for a lone
        output, :func:`~dcbulk.bulk.job.run_target`) or outside a worker."""
        joined, stored, extra = target.recipe
        if current_worker() is None or target.size <= inline_bytes:
            return store_features(joined, target.output, compression=options.codec,
                                  overwrite=overwrite, extra=extra, inline=True, stored=stored)
        from distributed import worker_client
        with worker_client() as client:
            return store_features(joined, target.output, compression=options.codec,
                                  client=client, overwrite=overwrite, extra=extra,
                                  stored=stored)


def join(sources: Iterable, output, *, features=None, filter: str | None = None,
         compression: str = "zstd:5", client=None, force: bool = False,
         include: str = "*.rtdc", dry_run: bool = False, progress=None,
         timeout: float | None = None, follow_links: bool = False) -> ArchiveReport:
    """Join the measurements in ``sources`` into the one file ``output``.

    Parameters
    ----------
    sources
        At least two files (directories and globs are expanded).
    output
        The joined ``.rtdc`` file (``.rtdc`` is appended when missing, as dclab-join does).
    features
        Features to join (default: the earliest input's own features).
    filter
        Keep only matching events of every input.
    compression, client, include, dry_run, progress
        As for :func:`~dcbulk.convert_archive`.
    force
        Replace an existing output.
    timeout
        Seconds the joined output's task may take from when it starts (the output then
        fails, without a file).
    follow_links
        As for :func:`~dcbulk.convert_archive`.

    Returns
    -------
    ArchiveReport
        One entry: the output (``source`` is the earliest input).
    """
    options = make_options(features=features, filter=filter, compression=compression)
    return run_job(JoinJob(), sources, output, options, include=include, force=force,
                   dry_run=dry_run, client=client, progress=progress, timeout=timeout,
                   follow_links=follow_links)


COMMAND = Command(
    name="join", help="join measurements into one file",
    description="As dclab-join: ordered by recording date and time, metadata of the "
    "earliest, time offset by each start, logs of all.",
    job=lambda ns: JoinJob(), options=("features", "filter"), output_help="output file")
