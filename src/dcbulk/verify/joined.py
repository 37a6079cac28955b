"""A joined output checked against its inputs, as dclab-join makes one.

The output's provenance log names its inputs in the join's order and the options of its run
(features, filter, compression). Everything else is computed here again from the inputs,
not read from the log: each input's events (the filter applied again), where they start in
the output, the shifts of ``frame`` and ``index_online``, the run identifier, and the
attributes, logs and tables a joined file keeps of each input (dclab-join's rules,
:mod:`dcbulk.read.joining`); only the time offsets of the recording starts are the log's
(they depend on the joining machine's time zone, :func:`_joins`). The rows of each input are
then compared where the join put them, bit for bit, by the row checks of every output
(:mod:`.rows`); a feature whose rows come from several inputs has its ``min``/``max``/``mean``
checked against all of them.

Hand-written for the reason :mod:`.compare` is: no library checks a joined ``.rtdc`` file
against its inputs.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from ..codec import parse_compression
from ..errors import DcbulkError, NotRtdcError, PlanError
from ..filter_expr import parse_filter
from ..plan import carries_statistics, make_mapping, select_features
from ..provenance import is_provenance_log
from ..read.chunks import OpenFiles, read_event_rows
from ..read.filtering import filter_mapping
from ..read.identifier import filtered_run_identifier
from ..read.inspect import SourceInfo, inspect_source
from ..read.joining import (attrs_of, cfg_lines, frame_shift, joined_dtype, logs_of,
                            start_seconds, tables_of)
from ..read.policy import external_objects, not_carried
from .compare import file_problems, log_lines
from .objects import unwritten_objects
from .pair import (STATISTICS_TASK_BYTES, VerifyPair, feature_checks, out_features, pack,
                   unopenable)
from .rows import Joined, RowCheck
from .values import same_records, same_value, shown, stored_as
from .written import (own_log_attr_problems, own_log_names, shown_names,
                      unwritten_attr_problems)

__all__ = ["join_metadata_problems", "plan_join_checks"]


def _inputs(pair: VerifyPair) -> tuple[list[SourceInfo], list[dict]]:
    infos, attrs = [], []
    for path in pair.inputs:
        info = inspect_source(path)
        with h5py.File(info.path, "r", locking=False) as h5:
            attrs.append(attrs_of(h5))
        infos.append(info)
    return infos, attrs


def _changed_line(pair: VerifyPair, k: int, path: str, how: str) -> str:
    return (f"{pair.output}: its input #{k} {path} has changed since the output was made "
            f"({how}), so it no longer says what the output must equal")


def _resized(pair: VerifyPair) -> str | None:
    """The line of the first input whose size differs from the join log's (checked before
    the inputs are opened: one replaced by another file is then this one line)."""
    for k, (path, then) in enumerate(zip(pair.inputs, pair.input_sizes or ()), start=1):
        try:
            now = os.path.getsize(path)
        except OSError:
            continue  # gone: opening it says so
        if then is not None and now != then:
            return _changed_line(pair, k, path, f"{then} bytes then, {now} now")
    return None


def _changed(pair: VerifyPair, infos: list[SourceInfo]) -> str | None:
    for k, (info, then) in enumerate(zip(infos, pair.input_identifiers or ()), start=1):
        if then and info.identifier != then:
            return _changed_line(pair, k, info.path,
                                 f"identifier {then} then, {info.identifier} now")
    return None


def _joins(infos: list[SourceInfo], attrs: list[dict], mappings: list, wanted: list[str],
           offsets: tuple[float | None, ...] | None) -> dict[str, list[tuple[int, Joined]]]:
    """Each joined feature's inputs (their position) with how their rows become the
    output's: from the second input on, ``time`` plus the offset of its start, ``frame``
    plus that offset times its frame rate, ``index_online`` continued after the previous
    input's last event. The offsets are the join log's (``offsets``) where it has them:
    dclab-join reads the recording starts in local time, so they depend on the time zone
    of the machine that joined (a DST change between two starts); else computed here."""
    t0 = start_seconds(attrs[0], infos[0].path)
    logged = list(offsets or ()) + [None] * len(infos)
    starts = [start_seconds(att, info.path) - t0 if logged[k] is None else logged[k]
              for k, (info, att) in enumerate(zip(infos, attrs))]
    dtypes = {name: joined_dtype(name, infos[0].features[name].data.dtype, starts)
              for name in wanted if name in infos[0].features}
    joins: dict[str, list[tuple[int, Joined]]] = {name: [] for name in wanted}
    first, online_next = 0, None
    for k, (info, idx, att, offset) in enumerate(zip(infos, mappings, attrs, starts)):
        n = info.n_events if idx is None else int(idx.size)
        for name in wanted:
            dtype = dtypes.get(name)
            if k == 0 or name == "index":  # as stored, but time and frame as joined_dtype
                joins[name].append((k, Joined(first, dtype=dtype)))
                continue
            if name == "time":
                joined = Joined(first, "<f8", offset, dtype)
            elif name == "frame":
                joined = Joined(first, "<u8", frame_shift(att, offset, info.path), dtype)
            elif name == "index_online":
                joined = Joined(first, None, online_next or 0, dtype)
            else:
                joined = Joined(first, None, None, dtype)
            joins[name].append((k, joined))
        if "index_online" in wanted and n:  # the output's last value of this input, plus 1
            shift = (online_next or 0) if k else 0
            online_next = int(_last_row(info, "index_online", idx) + shift) + 1
        first += n
    return joins


def _last_row(info: SourceInfo, name: str, idx: np.ndarray | None):
    row = info.n_events - 1 if idx is None else int(idx[-1])
    with OpenFiles() as files:
        return read_event_rows(files, info.features[name], slice(row, row + 1))[0]


def plan_join_checks(pair: VerifyPair, *, task_bytes: int
                     ) -> tuple[list[str], list[list[RowCheck]], dict]:
    """Problems found while planning, the row-check tasks, and the metadata-task arguments
    of a joined output (as :func:`~dcbulk.verify.checks.plan_checks`)."""
    resized = _resized(pair)
    if resized:
        return [resized], [], {}
    try:
        infos, attrs = _inputs(pair)
    except (DcbulkError, OSError) as exc:
        return [f"{pair.output}: input {exc}"], [], {}
    changed = _changed(pair, infos)
    if changed:
        return [changed], [], {}
    try:
        expr = parse_filter(pair.filter) if pair.filter else None
        mappings = [None if expr is None else make_mapping(filter_mapping(info, expr),
                                                           info.n_events) for info in infos]
        wanted = [name for name in select_features(infos[0], [
            f for f in pair.features if f != "contour"] if pair.features else None)
            if name != "contour" and (name == "index" or all(
                name in info.features for info in infos[1:]))]
        joins = _joins(infos, attrs, mappings, wanted, pair.input_offsets)
        codec = (parse_compression(pair.compression, fletcher32=False)
                 if pair.compression else None)
    except (PlanError, DcbulkError, OSError) as exc:  # OSError: an input's last index_online
        return [f"{pair.output}: {exc}"], [], {}
    special = unopenable(pair.output)
    if special:
        return [special], [], {}
    try:
        present, _, problems = out_features(pair.output, codec)
    except NotRtdcError as exc:  # its layout: one line for the file
        return [str(exc)], [], {}
    except (OSError, KeyError) as exc:
        return [f"{pair.output}: cannot open ({exc})"], [], {}
    counts = [info.n_events if idx is None else int(idx.size)
              for info, idx in zip(infos, mappings)]
    total = sum(counts)
    problems += [f"{pair.output}: feature '{f}' is missing" for f in wanted if f not in present]
    problems += [f"{pair.output}: feature '{f}' is not joined from the inputs"
                 for f in present if f not in wanted]
    checks: list[tuple[int, RowCheck]] = []
    for name in (n for n in wanted if n in present):
        layout = present[name]
        if layout.shape[0] != total:
            problems.append(f"{pair.output}: feature '{name}' has {layout.shape[0]} events, "
                            f"expected {total} (the inputs' {', '.join(map(str, counts))})")
            continue
        if name == "index":  # renumbered 1..total
            checks += feature_checks(pair.output, name, layout, None, 0, total,
                                     enumerate=True, task_bytes=task_bytes)
            continue
        parts = [(k, joined) for k, joined in joins[name] if counts[k]]
        for k, joined in parts:
            checks += feature_checks(pair.output, name, layout, infos[k].features[name],
                                     joined.first, counts[k], events=mappings[k],
                                     joined=joined, task_bytes=task_bytes)
        nbytes = total * np.dtype(layout.dtype).itemsize
        if len(parts) > 1 and carries_statistics(name, layout.dtype, layout.shape[1:]) \
                and nbytes <= STATISTICS_TASK_BYTES:  # min/max/mean of every input's rows
            checks.append((nbytes, RowCheck(output=pair.output, feature=name, start=0,
                                            stop=total, source=None, layout=layout)))
    run_id = filtered_run_identifier(
        infos[0].identifier, mappings[0], infos[0].n_events,
        more=[(info.identifier, idx, info.n_events)
              for info, idx in zip(infos[1:], mappings[1:])])
    meta = {"attrs": attrs, "n_events": total, "run_id": run_id}
    return problems, pack(checks, task_bytes), meta


def _expected(pair: VerifyPair, meta: dict) -> tuple[dict, dict, dict]:
    """The root attributes, logs and tables of the joined file: the earliest input's
    attributes (event count, run index 1 and run identifier its own), every input's logs and
    tables as ``src-#k_<name>``, and its attributes as the ``src-#k_cfg`` log."""
    attrs = dict(meta["attrs"][0])
    attrs.update({"experiment:event count": meta["n_events"], "experiment:run index": 1,
                  "experiment:run identifier": meta["run_id"]})
    logs, tables = {}, {}
    for k, (path, att) in enumerate(zip(pair.inputs, meta["attrs"]), start=1):
        with h5py.File(path, "r", locking=False) as h5:
            logs.update({f"src-#{k}_{name}": lines for name, lines in logs_of(h5).items()})
            tables.update({f"src-#{k}_{name}": table for name, table in tables_of(h5).items()})
        logs[f"src-#{k}_cfg"] = cfg_lines(att)
    return attrs, logs, tables


def _named(kind: str, got: dict, want: dict, same) -> list[str]:
    problems = [f"{kind} '{name}' is missing" for name in want if name not in got]
    problems += [f"{kind} '{name}' is not kept of the inputs" for name in got if name not in want]
    return problems + [f"{kind} '{name}' differs from the input's" for name in want
                       if name in got and not same(got[name], want[name])]


def _same_table(got: h5py.Dataset, want: tuple[np.ndarray, dict]) -> bool:
    data, attrs = want
    return (same_records(got[()], data) and set(got.attrs) == set(attrs)
            and all(same_value(got.attrs[key], v) and stored_as(got.attrs[key]) == stored_as(v)
                    for key, v in attrs.items()))


#: the root attributes a join writes itself (:func:`_expected`), not the earliest input's
_WRITTEN_ATTRS = ("experiment:event count", "experiment:run index", "experiment:run identifier")


def _root_attr_problem(key: str, got, want) -> str | None:
    """How a joined file's root attribute differs from what the join stores: its value, or
    how it is stored (text as str or bytes, a number's dtype: a copy keeps the earliest
    input's; None: the same)."""
    if not same_value(got, want):
        return f"root attribute '{key}' is {shown(got)!r}, expected {shown(want)!r}"
    if stored_as(got) != stored_as(want):
        whose = "dcbulk writes" if key in _WRITTEN_ATTRS else "the earliest input's as"
        return f"root attribute '{key}' is stored as {stored_as(got)}, {whose} {stored_as(want)}"
    return None


def join_metadata_problems(pair: VerifyPair, meta: dict) -> list[str]:
    """The problems of a joined output's metadata: its own data only, root attributes, logs,
    tables, no basins and no contour (``meta``: from :func:`plan_join_checks`)."""
    problems = file_problems(pair.output, pair.size, pair.sha256)
    try:
        want_attrs, want_logs, want_tables = _expected(pair, meta)
        out = h5py.File(pair.output, "r", locking=False)
    except OSError as exc:
        return problems + [f"{pair.output}: cannot open ({exc})"]
    with out:
        found = [f"{obj}: an output must hold its own data" for obj in external_objects(out)]
        found += unwritten_objects(out)
        found += [f"{name} is not from an input (no output carries it)"
                  for name in not_carried(out)]
        found += unwritten_attr_problems(out)
        got = dict(out.attrs)
        found += [f"root attribute '{key}' is missing" for key in want_attrs if key not in got]
        found += [f"root attribute '{key}' is not the earliest input's" for key in got
                  if key not in want_attrs]
        found += [line for key, value in want_attrs.items() if key in got
                  for line in [_root_attr_problem(key, got[key], value)] if line]
        logs = {name: ds for name, ds in out.get("logs", {}).items()
                if not is_provenance_log(name)}
        found += _named("log", logs, want_logs, lambda ds, lines: log_lines(ds) == lines)
        found += [f"log '{name}' has the attribute '{key}', which dcbulk does not write (a "
                  f"join keeps the inputs' log lines only)" for name, ds in logs.items()
                  for key in ds.attrs.keys()]
        own = own_log_names(list(want_logs), "join")
        ours = [name for name in out.get("logs", {}) if is_provenance_log(name)]
        found += [f"log '{name}' is not kept of the inputs (the run writes one log of its "
                  f"own: {shown_names(own)})" for name in ours if name not in own]
        found += own_log_attr_problems(out["logs"], [name for name in ours if name in own])
        found += _named("table", dict(out.get("tables", {}).items()), want_tables, _same_table)
        if len(out.get("basins", {})):
            found.append("basins are not kept by a join")
        if "contour" in out["events"]:
            found.append("contour is not joined")
    return problems + [f"{pair.output}: {p}" for p in found]
