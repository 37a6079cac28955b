"""Metadata of one output compared with its source's: each function returns one line per
problem.

Hand-written because no library compares an .rtdc output with its source under the
community's rules (allowed root-attribute changes, dcbulk's provenance log, copied logs and
tables with their ``software`` attribute, composed basin maps, contours). The functions take
paths or open h5py files and return plain strings, so they run anywhere: in the client, in a
worker task, or inline in a converting worker. The rows are :mod:`.rows`' job.
"""
from __future__ import annotations

import os
import pathlib

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading outputs)
import numpy as np

from ..codec import ChunkCodec
from ..provenance import is_provenance_log
from ..read.basins import carried_identifier, extract_basin_dicts, resolve_file_basin
from ..read.digests import file_sha256
from ..read.identifier import (basin_identifier, filtered_run_identifier,
                               get_measurement_identifier)
from ..read.policy import external_objects, not_carried
from .storage import stored_otherwise

__all__ = ["compare_metadata", "compare_contours", "file_problems", "log_lines", "same_records",
           "same_value", "shown", "ALLOWED_ATTR_CHANGES"]

#: root attributes an output may change: the event count (mapped outputs) and the run
#: identifier (mapped outputs get ``<source id>_dcb-<hash>``)
ALLOWED_ATTR_CHANGES = ("experiment:event count", "experiment:run identifier")


def _text(value) -> object:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [bytes(v).decode("utf-8", errors="replace") for v in value.ravel()]
    return value


class _Shown(str):
    """A long value's text, shown as it is (a problem stays one line)."""

    def __repr__(self) -> str:
        return str(self)


def shown(value) -> object:
    """An attribute's value as a message shows it: numpy scalars as Python numbers, arrays
    on one line, at most 120 characters."""
    value = _text(value)
    value = value.item() if isinstance(value, np.generic) else value
    text = repr(value)
    if "\n" in text or len(text) > 120:
        text = " ".join(text.split())
        return _Shown(text if len(text) <= 120 else text[:117] + "...")
    return value


def same_records(got: np.ndarray, want: np.ndarray) -> bool:
    """Whether a table (a contour, an internal basin's data) holds the same records: dtype,
    shape and bytes (records may hold NaN; a copy keeps the dtype)."""
    return (got.dtype == want.dtype and got.shape == want.shape
            and got.tobytes() == want.tobytes())


def _stored_bytes(value):
    """A text value as the bytes it holds (``str`` as UTF-8, code points that were no
    valid UTF-8 kept as they were read), text arrays item by item; else None. Text is
    compared as these bytes: decoded with replacement, any two invalid bytes compared
    equal."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
        items = [_stored_bytes(v) for v in value.ravel()]
        return None if any(item is None for item in items) else items
    return None


def _log_items(dset: h5py.Dataset) -> list:
    """A log's lines as the bytes they hold (items that are no text as they are)."""
    value = dset[()]
    items = value.ravel() if isinstance(value, np.ndarray) else [value]
    stored = [_stored_bytes(item) for item in items]
    return [item if raw is None else raw for item, raw in zip(items, stored)]


def same_value(a, b) -> bool:
    raw_a, raw_b = _stored_bytes(a), _stored_bytes(b)
    if raw_a is not None and raw_b is not None:
        return raw_a == raw_b
    a, b = _text(a), _text(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _same_copied_attrs(got: h5py.AttributeManager, want: h5py.AttributeManager) -> bool:
    """A copied log's or table's attributes: the source's, except ``software``, which is the
    source's with ``| dcbulk <version>`` appended (``dcbulk <version>`` where it had none)."""
    got, want = dict(got.items()), dict(want.items())
    software = str(_text(got.pop("software", "")))
    before = want.pop("software", None)
    if not software.split(" | ")[-1].startswith("dcbulk "):
        return False
    if before is not None and not software.startswith(str(_text(before)) + " | "):
        return False
    return got.keys() == want.keys() and all(same_value(got[k], v) for k, v in want.items())


def log_lines(dset: h5py.Dataset) -> list[str]:
    """A log's lines as text."""
    return [str(_text(x)) for x in dset[()].ravel()] if dset.shape else [str(_text(dset[()]))]


def _numeric_dtype(value) -> str | None:
    """The dtype of a numeric attribute value (None: text, whichever way HDF5 stores it)."""
    kind = np.asarray(value).dtype
    return None if kind.kind in "SUO" else kind.name


def _compare_attrs(src: h5py.File, out: h5py.File, mapping: np.ndarray | None,
                   n_source: int, sample_suffix: str) -> list[str]:
    problems = []
    sattrs, oattrs = dict(src.attrs), dict(out.attrs)  # one read of each attribute
    if sample_suffix:  # a split piece's sample: the source's, then " k/n"
        sample = _text(sattrs.get("experiment:sample", ""))
        sattrs["experiment:sample"] = f"{sample}{sample_suffix}"
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
        elif _numeric_dtype(oattrs[key]) != _numeric_dtype(value):  # a copy keeps it
            problems.append(f"root attribute '{key}' is stored as "
                            f"{_numeric_dtype(oattrs[key]) or 'text'}, the source's as "
                            f"{_numeric_dtype(value) or 'text'}")
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
        want = _text(sattrs.get("experiment:run identifier"))
    else:
        want = filtered_run_identifier(get_measurement_identifier(src, compat="dclab"),
                                       mapping, n_source)
    got = _text(oattrs.get("experiment:run identifier"))
    if got != want:
        problems.append(f"root attribute 'experiment:run identifier' is {got!r}, "
                        f"expected {want!r}")
    return problems


def _compare_group(src: h5py.File, out: h5py.File, group: str) -> list[str]:
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
    for name in ogrp:
        if name not in sgrp and not (group == "logs" and is_provenance_log(name)):
            problems.append(f"{group[:-1]} '{name}' is not in the source")
    return problems


def _to_sources(basins: list[dict]) -> int:
    """How many file basins are named ``source`` (the writer's name for a basin to the
    source; a source may carry its own beside the one its output gets)."""
    return sum(b.get("name") == "source" and b.get("type") == "file" for b in basins)


def _compare_basins(src: h5py.File, out: h5py.File, output: str,
                    mapping: np.ndarray | None, n_source: int,
                    to_source: list[str] | None, basin_to_source: bool) -> list[str]:
    problems = []
    out_dir = pathlib.Path(output).resolve().parent
    src_dir = pathlib.Path(src.filename).resolve().parent
    src_basins = extract_basin_dicts(src)
    origins: dict[str, list[dict]] = {}  # the source's basins of each name
    for bdict in src_basins:
        origins.setdefault(bdict.get("name"), []).append(bdict)
    out_basins = extract_basin_dicts(out)
    kept = {b.get("name") for b in out_basins}
    problems += [f"basin '{b.get('name')}' of the source is missing" for b in src_basins
                 if b["type"] == "file" and b.get("name") not in kept]
    if basin_to_source and _to_sources(out_basins) <= _to_sources(src_basins):
        problems.append("basin 'source' (to the source, for the features the output does "
                        "not hold) is missing")
    broken = {b.get("name") for b in src_basins  # inherited: said so
              if b["type"] == "file" and resolve_file_basin(src_dir, b) is None}
    n_out = n_source if mapping is None else mapping.size
    for bdict in out_basins:
        name = bdict.get("name")
        label = f"basin '{name}'"
        # what the output's basin of this name may be: a carried one, or the basin to source
        wanted = [(b.get("features"), _source_rows(src, b, mapping), carried_identifier(
            b, src_dir)) for b in origins.get(name, [])]
        if name == "source" and to_source is not None:
            wanted.append((to_source, mapping, basin_identifier(src)))
        if not wanted:
            problems.append(f"{label} is not the source's (a basin the source does not have)")
            continue
        rows = _basin_rows(out, bdict)
        if not any(_same_rows(rows, want, n_out) for _, want, _ in wanted):
            problems.append(f"{label}: its mapping differs from the source's" if rows is not None
                            else f"{label} has no mapping, but the output's events are not "
                            f"the basin's (its features would be read for other events)")
        if bdict.get("type") == "file":
            problems += _file_basin_problems(bdict, wanted, out_dir, name in broken)
        if bdict.get("type") == "internal":
            for feat in bdict.get("features", []):
                try:
                    same = same_records(out["basin_events"][feat][()],
                                        src["basin_events"][feat][()])
                except KeyError:
                    same = False
                if not same:
                    problems.append(f"{label}: basin_events/{feat} differs from the source's")
    return problems


def _basin_rows(h5: h5py.File, bdict: dict) -> np.ndarray | None:
    """The rows of a basin a file's events are (its mapping feature, every chunk read);
    None: unmapped (the file's own events)."""
    mapname = bdict.get("mapping")
    return h5["events"][mapname][:] if mapname else None


def _source_rows(src: h5py.File, bdict: dict, mapping: np.ndarray | None
                 ) -> np.ndarray | None:
    """The rows of the source's basin the output's events must be (None: unmapped)."""
    rows = _basin_rows(src, bdict)
    if mapping is None:
        return rows
    return mapping if rows is None else rows[mapping]


def _same_rows(got: np.ndarray | None, want: np.ndarray | None, n: int) -> bool:
    """Whether two basin mappings of ``n`` events are the same (None: unmapped, as 0..n-1)."""
    if got is None and want is None:
        return True
    got = np.arange(n) if got is None else got
    want = np.arange(n) if want is None else want
    return got.shape == want.shape and bool(np.array_equal(got, want))


def _file_basin_problems(bdict: dict, wanted: list[tuple], out_dir: pathlib.Path,
                         broken: bool) -> list[str]:
    """A file basin of an output: the features it lists, its identifier (where the
    source's basin, or the source for a basin to it, has one) and whether it resolves."""
    problems, label = [], f"basin '{bdict.get('name')}'"
    if bdict.get("features") not in [features for features, _, _ in wanted]:
        problems.append(f"{label} lists other features than the source's")
    identifiers = {ident for _, _, ident in wanted if ident}
    if identifiers and bdict.get("identifier") not in identifiers:
        problems.append(f"{label} has " + (f"identifier {bdict['identifier']!r}"
                                           if bdict.get("identifier") else "no identifier")
                        + f", expected {sorted(identifiers)[0]!r} (the basin file's)")
    # resolved next to the output (what dcnum does; dclab then tries the same path)
    found = resolve_file_basin(out_dir, bdict)
    if found is None:
        problems.append(f"{label} does not resolve ({bdict.get('paths')})" + (
            "; the source's does not resolve either" if broken else ""))
    elif bdict.get("identifier"):
        with h5py.File(found, "r", locking=False) as bh5:
            known = {get_measurement_identifier(bh5, compat=c) for c in ("dcnum", "dclab")}
        if bdict["identifier"] not in known:
            problems.append(f"{label} at {found} has another identifier")
    return problems


def compare_metadata(output: str, source: str, *, mapping: np.ndarray | None,
                     n_source: int, sample_suffix: str = "", to_source: list[str] | None = None,
                     basin_to_source: bool = False, logged: bool = False) -> list[str]:
    """Root attributes, logs, tables and basins of an output against its source (a file
    basin ``source`` to the source is the source's, listing the features ``to_source``
    names: one it must hold with ``basin_to_source``; with ``logged``, dcbulk's provenance
    log among the logs).

    An output must hold its own data: every external link, soft link out of its group,
    virtual or externally stored dataset in it is a problem (:mod:`dcbulk.read.policy`).
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
        problems += _compare_attrs(src, out, mapping, n_source, sample_suffix)
        problems += _compare_group(src, out, "logs")
        if logged and not any(is_provenance_log(name) for name in out.get("logs", {})):
            problems.append("dcbulk's provenance log (logs/dcbulk-<mode>) is missing")
        problems += _compare_group(src, out, "tables")
        try:
            problems += _compare_basins(src, out, output, mapping, n_source, to_source,
                                        basin_to_source)
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
