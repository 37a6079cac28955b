"""The checks of one output against what it must equal: planned, then run inline or as tasks.

:func:`plan_checks` turns a :class:`VerifyPair` into the problems found while planning
(features missing, extra, or stored otherwise than the run's ``--compression``), the
row checks (every chunk of each feature read, HDF5 checking Fletcher-32, the decoded rows
compared with ``source[mapping]``, and the ``min``/``max``/``mean`` attributes of scalar
features; packed into tasks of about ``task_bytes`` output bytes, a scalar feature carrying
statistics whole up to :data:`STATISTICS_TASK_BYTES`, as the writer computes them)
and the arguments of the metadata check (root attributes, logs, tables, basins, contours).
:func:`check_pair` runs them: in this process (by the threads of the run's block pool when
``dcbulk verify`` runs in dcbulk's own process), or, given a client (``worker_client``
inside a task of ``dcbulk verify``), the metadata check and each row task as tasks of their
own, so a large output is read by every worker. Outputs of dcnum's pipeline
(``dcbulk process``) have new events: they are checked alone (:mod:`.processed`); a joined
output is planned against its inputs (:mod:`.joined`) and its row checks run the same way. No
h5py object travels; each check opens its files by path.
"""
from __future__ import annotations

import functools

import numpy as np

from ..codec import parse_compression
from ..engine.blockpool import run_blocks
from ..errors import DcbulkError, NotRtdcError, PlanError
from ..filter_expr import parse_filter
from ..plan import ENUMERATE, make_mapping, select_features
from ..read.basins import basin_feature_names
from ..read.digests import head_sha256
from ..read.filtering import filter_mapping, kept_events
from ..read.inspect import SourceInfo, inspect_source
from .compare import compare_contours, compare_metadata, file_problems
from .condensed import ancillary_problems, condensed_features
from .joined import join_metadata_problems, plan_join_checks
from .pair import (STATISTICS_TASK_BYTES, VerifyPair, feature_checks, out_features, pack,
                   special_file, unopenable)
from .processed import check_processed
from .rows import RowCheck, compare_rows

__all__ = ["ALONE", "FILE_TASK_BYTES", "STATISTICS_TASK_BYTES", "TASK_BYTES", "VerifyPair",
           "check_pair", "plan_checks", "special_file"]

#: what a check of an output of dcnum's pipeline compared: nothing (no source to equal)
ALONE = "dcnum output"
#: uncompressed output bytes one row-check task reads
TASK_BYTES = 32 * 1024**2
#: outputs up to this size on disk are checked by one task each (larger ones: split)
FILE_TASK_BYTES = 8 * 1024**2


def _mapping(pair: VerifyPair, info: SourceInfo) -> np.ndarray | None:
    if pair.mapping is not None:
        return make_mapping(np.asarray(pair.mapping), info.n_events)
    expr = parse_filter(pair.filter) if pair.filter else None
    if pair.piece is not None:
        first, stop, skip_empty = pair.piece
        keep = kept_events(info, expr, skip_empty)[first:stop]
        return make_mapping(first + np.flatnonzero(keep), info.n_events)
    if expr is not None:
        return make_mapping(filter_mapping(info, expr), info.n_events)
    return None


def _source_changed(pair: VerifyPair, info: SourceInfo) -> str | None:
    """How the source differs from the one the output was made of, where that is certain
    (a size, identifier or head digest of its own; a new mtime alone may be a copy)."""
    if pair.source_size is not None and info.size != pair.source_size:
        return f"{pair.source_size} bytes then, {info.size} now"
    if pair.source_identifier and info.identifier != pair.source_identifier:
        return f"identifier {pair.source_identifier} then, {info.identifier} now"
    if pair.source_head and head_sha256(pair.source) != pair.source_head:
        return "its first or last bytes differ"
    return None


def plan_checks(pair: VerifyPair, *, task_bytes: int = TASK_BYTES
                ) -> tuple[list[str], list[list[RowCheck]], dict]:
    """Problems found while planning, the row-check tasks, and the metadata-task arguments."""
    try:
        info = inspect_source(pair.source, follow_external=pair.follow_external)
    except DcbulkError as exc:
        return [f"{pair.output}: cannot read its source: {exc}"], [], {}
    changed = _source_changed(pair, info)
    if changed:
        return [f"{pair.output}: {pair.source} is not a copy of the source it was made of "
                f"({changed})" if pair.copy else
                f"{pair.output}: its source {pair.source} has changed since the output was "
                f"made ({changed}), so it no longer says what the output must equal"], [], {}
    try:
        mapping = _mapping(pair, info)
        wanted = condensed_features(info, mapping) if pair.condensed else select_features(
            info, [f for f in pair.features if f != "contour"] if pair.features else None)
        codec = (parse_compression(pair.compression, fletcher32=False)  # describe()'s text
                 if pair.compression else None)
    except (PlanError, DcbulkError) as exc:
        return [f"{pair.output}: {exc}"], [], {}
    special = unopenable(pair.output)
    if special:
        return [special], [], {}
    try:
        present, empty, problems = out_features(pair.output, codec)
    except NotRtdcError as exc:  # its layout: one line for the file
        return [str(exc)], [], {}
    except (OSError, KeyError) as exc:
        return [f"{pair.output}: cannot open ({exc})"], [], {}
    n_out = info.n_events if mapping is None else int(mapping.size)
    problems += [f"{pair.output}: feature '{f}' is missing" for f in wanted if f not in present]
    others = [f for f in present if f not in wanted]  # with --ancillary: dclab's, if right
    if not pair.ancillary:
        problems += [f"{pair.output}: feature '{f}' is not in the source's selection"
                     for f in others]
    want_empty = info.empty_groups if pair.features is None and not pair.condensed else ()
    problems += [f"{pair.output}: empty group 'events/{g}' of the source is missing"
                 for g in want_empty if g not in empty]
    problems += [f"{pair.output}: empty group 'events/{g}' is not in the source"
                 for g in empty if g not in want_empty]
    checks = []
    for name in wanted:
        if name not in present:
            continue
        layout = present[name]
        if layout.shape[0] != n_out:
            problems.append(f"{pair.output}: feature '{name}' has {layout.shape[0]} events, "
                            f"expected {n_out}")
            continue
        fsrc = info.features.get(name)  # None: condense's index 1..n
        enumerated = (name == "index" and (mapping is not None or fsrc is None)
                      or fsrc is not None and fsrc.origin == ENUMERATE)
        own = (fsrc is not None and fsrc.rowmap is None and fsrc.data.path == info.path
               and fsrc.origin != ENUMERATE)  # the writer's rule
        checks += feature_checks(pair.output, name, layout, fsrc, 0, n_out, events=mapping,
                                 enumerate=enumerated, own=own, task_bytes=task_bytes)
    contour = (info.has_contour and not pair.condensed
               and (pair.features is None or "contour" in pair.features))
    meta = {"mapping": mapping, "n_source": info.n_events, "contour": contour, "codec": codec,
            "ancillary": (wanted, others) if pair.ancillary else None,
            "to_source": basin_feature_names(info), "basin_to_source": pair.basin_to_source}
    if pair.ancillary:  # the statistics of dclab's (its values: by the metadata task)
        checks += [c for name in others if present[name].shape[0] == n_out
                   for c in feature_checks(pair.output, name, present[name], None, 0, n_out,
                                           task_bytes=task_bytes)]
    return problems, pack(checks, task_bytes), meta


def metadata_problems(pair: VerifyPair, meta: dict) -> list[str]:
    """The problems of an output's metadata: file record, root attributes, logs, tables,
    basins and contours (``meta``: from :func:`plan_checks`)."""
    problems = file_problems(pair.output, pair.size, pair.sha256)
    problems += compare_metadata(pair.output, pair.source, mapping=meta["mapping"],
                                 n_source=meta["n_source"], sample_suffix=pair.sample_suffix,
                                 to_source=meta["to_source"],
                                 basin_to_source=meta["basin_to_source"], logged=pair.logged,
                                 mode=pair.mode,
                                 recorded=pair.source_size is not None and not pair.copy,
                                 codec=meta["codec"], same_events=meta["mapping"] is None
                                 and pair.features is None and not pair.condensed)
    try:
        problems += compare_contours(pair.output, pair.source, mapping=meta["mapping"],
                                     expected=meta["contour"], codec=meta["codec"])
    except (OSError, KeyError) as exc:
        problems.append(f"{pair.output}: contours unreadable ({exc})")
    if meta["ancillary"] is not None:
        problems += ancillary_problems(pair.output, pair.source, meta["mapping"],
                                       *meta["ancillary"])
    return problems


def check_pair(pair: VerifyPair, *, client=None, task_bytes: int = TASK_BYTES
               ) -> tuple[list[str], list[str]]:
    """Check one pair: ``(problems, checked)``, one line per problem (none: equal) and the
    features compared.

    With ``client`` (a ``distributed`` client, e.g. ``worker_client()`` in a task) the
    metadata check and each row task run as tasks of their own; else all in this process.
    """
    if pair.verdict is not None:
        return [pair.verdict], []
    if pair.processed:
        return (file_problems(pair.output, pair.size, pair.sha256)
                or check_processed(pair.output)), [ALONE]
    plan, metadata = ((plan_join_checks, join_metadata_problems) if pair.inputs
                      else (plan_checks, metadata_problems))
    problems, tasks, meta = plan(pair, task_bytes=task_bytes)
    if not meta:
        return problems, []
    checked = sorted({c.feature for task in tasks for c in task})
    if client is None:  # by the threads of dcbulk's block pool, or here one after another
        jobs = [(0, functools.partial(metadata, pair, meta))]
        jobs += [(i, functools.partial(compare_rows, task)) for i, task in enumerate(tasks, 1)]
        found = [lines for _, lines in sorted(run_blocks(jobs), key=lambda done: done[0])]
    else:
        futures = [client.submit(metadata, pair, meta, pure=False)]
        futures += client.map(compare_rows, tasks, pure=False)
        found = client.gather(futures)
    return problems + [p for lines in found for p in lines], checked
