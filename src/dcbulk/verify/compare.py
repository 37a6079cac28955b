"""Metadata of one output compared with its source's: each function returns one line per
problem.

Hand-written because no library compares an .rtdc output with its source under the
community's rules (allowed root-attribute changes, dcbulk's provenance log, copied logs and
tables with their ``software`` attribute, composed basin maps, contours). The functions take
paths or open h5py files and return plain strings, so they run anywhere: in the client, in a
worker task, or inline in a converting worker. The rows are :mod:`.rows`' job, the basins
:mod:`.basins`', how values compare :mod:`.values`'.
"""
from __future__ import annotations

import os

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading outputs)
import numpy as np

from ..codec import ChunkCodec
from ..read.digests import file_sha256
from ..read.identifier import filtered_run_identifier, get_measurement_identifier
from ..read.policy import external_objects, not_carried
from .basins import compare_basins
from .definitions import definition_problems
from .objects import unwritten_objects
from .storage import stored_otherwise
from .values import (STR, as_text, same_records, same_value, shown, stored_as, stored_bytes,
                     suffixed_text)
from .written import (own_log_attr_problems, own_log_names, shown_names,
                      unwritten_attr_problems)

__all__ = ["compare_metadata", "compare_contours", "file_problems", "log_lines", "same_records",
           "same_value", "shown", "ALLOWED_ATTR_CHANGES"]

#: root attributes an output may change: the event count (mapped outputs) and the run
#: identifier (mapped outputs get ``<source id>_dcb-<hash>``)
ALLOWED_ATTR_CHANGES = ("experiment:event count", "experiment:run identifier")


def _log_items(dset: h5py.Dataset) -> list:
    """A log's lines as the bytes they hold (items that are no text as they are)."""
    value = dset[()]
    items = value.ravel() if isinstance(value, np.ndarray) else [value]
    stored = [stored_bytes(item) for item in items]
    return [item if raw is None else raw for item, raw in zip(items, stored)]


def _same_copied_attrs(got: h5py.AttributeManager, want: h5py.AttributeManager) -> bool:
    """A copied log's or table's attributes: the source's, except ``software``, which is the
    source's with ``| dcbulk <version>`` appended (``dcbulk <version>`` where it had none)."""
    got, want = dict(got.items()), dict(want.items())
    software = str(as_text(got.pop("software", "")))
    before = want.pop("software", None)
    if not software.split(" | ")[-1].startswith("dcbulk "):
        return False
    if before is not None and not software.startswith(str(as_text(before)) + " | "):
        return False
    return got.keys() == want.keys() and all(
        same_value(got[k], v) and stored_as(got[k]) == stored_as(v) for k, v in want.items())


def log_lines(dset: h5py.Dataset) -> list[str]:
    """A log's lines as text."""
    return [str(as_text(x)) for x in dset[()].ravel()] if dset.shape else [str(as_text(dset[()]))]


def _numeric_dtype(value) -> str | None:
    """The dtype of a numeric attribute value (None: text, whichever way HDF5 stores it)."""
    kind = np.asarray(value).dtype
    return None if kind.kind in "SUO" else kind.name


def _compare_attrs(src: h5py.File, out: h5py.File, mapping: np.ndarray | None,
                   n_source: int, sample_suffix: str) -> list[str]:
    problems = []
    sattrs, oattrs = dict(src.attrs), dict(out.attrs)  # one read of each attribute
    if sample_suffix:  # a split piece's sample: the source's, then " k/n"
        sattrs["experiment:sample"] = suffixed_text(sattrs.get("experiment:sample", ""),
                                                    sample_suffix)
    for key, value in sattrs.items():
        if key in ALLOWED_ATTR_CHANGES:
            continue
        if key not in oattrs:
            problems.append(f"root attribute '{key}' is missing")
        elif not same_value(oattrs[key], value):
            want = (f"expected {shown(value)!r} (the source's, then {sample_suffix!r})"
                    if sample_suffix and key == "experiment:sample"
                    else f"source has {shown(value)!r}")
            problems.append(f"root attribute '{key}' is {shown(oattrs[key])!r}, {want}")
        elif stored_as(oattrs[key]) != stored_as(value):  # a copy keeps it
            problems.append(f"root attribute '{key}' is stored as {stored_as(oattrs[key])}, "
                            f"the source's as {stored_as(value)}")
    for key in oattrs:
        if key not in sattrs and key not in ALLOWED_ATTR_CHANGES:
            problems.append(f"root attribute '{key}' is not in the source")
    count = oattrs.get("experiment:event count")
    n_want = n_source if mapping is None else int(mapping.size)
    if count is None:
        problems.append("root attribute 'experiment:event count' is missing")
    elif _numeric_dtype(count) != "int64" or np.ndim(count):  # as the writer stores it
        problems.append(f"root attribute 'experiment:event count' is stored as "
                        f"{shown(count)!r} ({_numeric_dtype(count) or 'text'}), not an int64")
    elif int(count) != n_want:
        problems.append(f"root attribute 'experiment:event count' is {int(count)}, "
                        f"expected {n_want}")
    if mapping is None:
        want = as_text(sattrs.get("experiment:run identifier"))
    else:
        want = filtered_run_identifier(get_measurement_identifier(src, compat="dclab"),
                                       mapping, n_source)
    stored = oattrs.get("experiment:run identifier")
    got = as_text(stored)
    kind = (STR if mapping is not None  # the writer's, else the source's
            else stored_as(sattrs.get("experiment:run identifier")))
    if got != want:
        problems.append(f"root attribute 'experiment:run identifier' is {got!r}, "
                        f"expected {want!r}")
    elif stored is not None and stored_as(stored) != kind:
        problems.append(f"root attribute 'experiment:run identifier' is stored as "
                        f"{stored_as(stored)}, expected {kind}")
    return problems


def _compare_group(src: h5py.File, out: h5py.File, group: str, own: list[str] = ()
                   ) -> list[str]:
    """The logs or tables of an output against the source's (``own``: the names the run's
    own log may have, :func:`~.written.own_log_names`)."""
    problems = []
    sgrp, ogrp = src.get(group, {}), out.get(group, {})
    for name in sgrp:
        if name not in ogrp:
            if group == "logs" and sgrp[name].size == 0:
                continue  # empty logs are not copied (as dcnum's copy_metadata)
            problems.append(f"{group[:-1]} '{name}' is missing")
            continue
        try:
            if group == "logs":
                same = _log_items(ogrp[name]) == _log_items(sgrp[name])
            else:
                same = same_records(ogrp[name][()], sgrp[name][()])
            same = same and _same_copied_attrs(ogrp[name].attrs, sgrp[name].attrs)
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{group[:-1]} '{name}' unreadable ({type(exc).__name__}: {exc})")
            continue
        if not same:
            problems.append(f"{group[:-1]} '{name}' differs from the source")
    extra = [name for name in ogrp if name not in sgrp]
    hint = f" (the run writes one log of its own: {shown_names(own)})" if own else ""
    problems += [f"{group[:-1]} '{name}' is not in the source{hint}" for name in extra
                 if name not in own]
    problems += [f"{group[:-1]} '{name}' is a second log of dcbulk's own (a run writes one)"
                 for name in [name for name in extra if name in own][1:]]
    return problems


def compare_metadata(output: str, source: str, *, mapping: np.ndarray | None,
                     n_source: int, sample_suffix: str = "", to_source: list[str] | None = None,
                     basin_to_source: bool = False, logged: bool = False,
                     mode: str | None = None, recorded: bool = False,
                     codec: ChunkCodec | None = None, same_events: bool = False) -> list[str]:
    """Root attributes, logs, tables and basins of an output against its source (a file
    basin ``source`` to the source is the source's, listing the features ``to_source``
    names: one it must hold with ``basin_to_source``; besides the source's logs, one log of
    the run's own, ``dcbulk-<mode>`` of the run's ``mode`` (None: of any mode), which it
    must hold with ``logged``; ``recorded``, ``same_events``: as for
    :func:`~dcbulk.verify.basins.compare_basins`; ``codec``: the run's filters, which its
    basin definitions must be stored with, :mod:`.definitions`; None: not known).

    An output must hold its own data: every external link, soft link out of its group,
    virtual or externally stored dataset in it is a problem (:mod:`dcbulk.read.policy`), and
    so is every object no conversion writes (:mod:`.objects`).
    """
    try:
        out = h5py.File(output, "r", locking=False)
    except OSError as exc:
        return [f"{output}: cannot open ({exc})"]
    with out, h5py.File(source, "r", locking=False) as src:
        problems = [f"{found}: an output must hold its own data"
                    for found in external_objects(out)]
        problems += [f"{name} is not from the source (no output carries it)"
                     for name in not_carried(out)]
        problems += unwritten_objects(out)
        problems += unwritten_attr_problems(out)
        problems += _compare_attrs(src, out, mapping, n_source, sample_suffix)
        slogs, ologs = src.get("logs", {}), out.get("logs", {})
        own = own_log_names([n for n in slogs if getattr(slogs[n], "size", 1)], mode)
        problems += _compare_group(src, out, "logs", own)
        problems += own_log_attr_problems(ologs, [n for n in ologs if n in own and n not in slogs])
        if logged and not any(name in ologs and name not in slogs for name in own):
            problems.append(f"dcbulk's provenance log (logs/{shown_names(own)[1:-1]}) is "
                            f"missing")
        problems += _compare_group(src, out, "tables")
        try:
            problems += definition_problems(out, codec)
            problems += compare_basins(src, out, output, mapping, n_source, to_source,
                                        basin_to_source, recorded, same_events)
        except (OSError, KeyError, ValueError) as exc:
            problems.append(f"basins unreadable ({type(exc).__name__}: {exc})")
    return [f"{output}: {p}" for p in problems]


def compare_contours(output: str, source: str, *, mapping: np.ndarray | None,
                     expected: bool, codec: ChunkCodec | None = None) -> list[str]:
    """Every contour of the output (read fully) equals the source's contour of that event
    and, given the run's ``codec``, is stored with its filters (one line for all that are
    not: the first of them and how many)."""
    with h5py.File(output, "r", locking=False) as out, \
            h5py.File(source, "r", locking=False) as src:
        sgrp, ogrp = src["events"].get("contour"), out["events"].get("contour")
        if ogrp is None:
            return [f"{output}: contour is missing"] if expected and sgrp is not None else []
        if not expected or sgrp is None:
            return [f"{output}: contour is not expected in the output"]
        want = len(sgrp) if mapping is None else int(mapping.size)
        if len(ogrp) != want:
            return [f"{output}: contour has {len(ogrp)} events, expected {want}"]
        stored: list[str] = []
        for j in range(want):
            i = j if mapping is None else int(mapping[j])
            try:
                dset = ogrp[str(j)]
                same = same_records(dset[()], sgrp[str(i)][()])  # dtype and bytes
            except (OSError, KeyError) as exc:
                return [f"{output}: contour {j} unreadable ({type(exc).__name__}: {exc})"]
            if not same:
                return [f"{output}: contour {j} differs from the source's contour {i}"]
            if codec is not None and dset.size:  # an empty one cannot be chunked
                stored += stored_otherwise(output, f"contour {j}", dset, codec,
                                           ChunkCodec.from_dataset(dset))
    if not stored:
        return []
    return [stored[0] + (f" (and {len(stored) - 1} more)" if len(stored) > 1 else "")]


def file_problems(output: str, record_size: int | None, record_sha: str | None) -> list[str]:
    """Size and SHA-256 of an output against the manifest's record."""
    if not os.path.isfile(output):
        return [f"{output}: missing"]
    problems = []
    size = os.path.getsize(output)
    if record_size is not None and size != record_size:
        problems.append(f"{output}: size {size} differs from the manifest's {record_size}")
    if record_sha and file_sha256(output) != record_sha:
        problems.append(f"{output}: sha256 differs from the manifest's")
    return problems
