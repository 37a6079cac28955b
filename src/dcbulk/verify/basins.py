"""The basins of one output compared with its source's: each carried basin (its definition
as the writer stores it, mapping, features, identifier and whether it resolves), the basin
to the source, and the data of internal basins; one line per problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib

import h5py
import numpy as np

from ..engine.finish import SOURCE_BASIN_DESCRIPTION
from ..read.basins import carried_identifier, extract_basin_dicts, resolve_file_basin
from ..read.identifier import basin_identifier, get_measurement_identifier
from .definitions import paths_problem
from .values import same_records

#: the keys of a basin definition the writer stores (``write.basin_store.store_basin``):
#: always, for a file basin too, and where the basin has them
_KEYS = ("description", "name", "format", "paths", "type")
_FILE_KEYS = ("identifier",)
_OPTIONAL_KEYS = ("features", "mapping")
#: the format the writer stores for each type of basin
_FORMATS = {"file": "hdf5", "internal": "h5dataset"}
#: the description of the basin to the source (:data:`SOURCE_BASIN_DESCRIPTION`, of any
#: version), among those a basin's name allows
_TO_SOURCE = object()

__all__ = ["compare_basins"]


def _to_sources(basins: list[dict]) -> int:
    """How many file basins are named ``source`` (the writer's name for a basin to the
    source; a source may carry its own beside the one its output gets)."""
    return sum(b.get("name") == "source" and b.get("type") == "file" for b in basins)


def compare_basins(src: h5py.File, out: h5py.File, output: str,
                   mapping: np.ndarray | None, n_source: int,
                   to_source: list[str] | None, basin_to_source: bool,
                   recorded: bool = False, same_events: bool = False) -> list[str]:
    """The basins of ``out`` (at ``output``) against ``src``'s: each one the source's (its
    rows ``mapping`` of the source's ``n_source`` events) or, named ``source``, the basin
    to the source listing ``to_source``, which it must hold with ``basin_to_source``.
    ``recorded``: ``src`` is the file the output was made of (its manifest or provenance
    log names it, not ``--against``), so each file basin must lead to the file the
    source's leads to, or to the source itself (not to a copy of it elsewhere).
    ``same_events``: the output holds the source's events and features, so its file basins
    also keep their relative paths (the writer's rule, for converted siblings)."""
    problems = []
    out_dir = pathlib.Path(output).resolve().parent
    src_dir = pathlib.Path(src.filename).resolve().parent
    src_basins = extract_basin_dicts(src)
    origins: dict[str, list[dict]] = {}  # the source's basins of each name
    for bdict in src_basins:
        origins.setdefault(bdict.get("name"), []).append(bdict)
    out_basins = extract_basin_dicts(out, check=False)  # every one: the writer's or not
    problems += _key_problems(out)
    kept = {b.get("name") for b in out_basins}
    problems += [f"basin '{b.get('name')}' of the source is missing" for b in src_basins
                 if b["type"] == "file" and b.get("name") not in kept]
    if basin_to_source and _to_sources(out_basins) <= _to_sources(src_basins):
        problems.append("basin 'source' (to the source, for the features the output does "
                        "not hold) is missing")
    problems += _basinmap_problems(out, {b.get("mapping") for b in out_basins})
    listed = {feat for b in out_basins if b.get("type") == "internal"
              for feat in b.get("features", [])}
    internal = out.get("basin_events")
    problems += [f"'basin_events/{name}' is data of no internal basin of the output"
                 for name in (internal if isinstance(internal, h5py.Group) else ())
                 if name not in listed]
    broken = {b.get("name") for b in src_basins  # inherited: said so
              if b["type"] == "file" and resolve_file_basin(src_dir, b) is None}
    n_out = n_source if mapping is None else mapping.size
    for bdict in out_basins:
        name = bdict.get("name")
        label = f"basin '{name}'"
        # what the output's basin of this name may be: a carried one, or the basin to source
        kind = bdict.get("type")
        if kind not in _FORMATS:  # not carried (IgnoringBasinTypeWarning), never written
            problems.append(f"{label} (type {kind!r}) is not the source's (a basin the source "
                            f"does not have)")
            continue
        wanted = [(b.get("features"), _source_rows(src, b, mapping), carried_identifier(
            b, src_dir), (b.get("paths", []), same_events), b.get("description"))
            for b in origins.get(name, [])]
        if name == "source" and to_source is not None:
            wanted.append((to_source, mapping, basin_identifier(src),
                           ([str(pathlib.Path(src.filename).resolve())], False), _TO_SOURCE))
        if not wanted:
            problems.append(f"{label} is not the source's (a basin the source does not have)")
            continue
        problems += _definition_problems(bdict, [desc for *_, desc in wanted])
        if bdict.get("mapping") and bdict["mapping"] not in out["events"]:
            problems.append(f"{label}: its mapping {bdict['mapping']!r} is not in the "
                            f"output's events")
            continue
        rows = _basin_rows(out, bdict)
        if not any(_same_rows(rows, want, n_out) for _, want, *_ in wanted):
            problems.append(f"{label}: its mapping differs from the source's" if rows is not None
                            else f"{label} has no mapping, but the output's events are not "
                            f"the basin's (its features would be read for other events)")
        if bdict.get("type") == "file":
            targets = [] if not recorded else [
                resolve_file_basin(src_dir, b) for b in origins.get(name, [])
                if b.get("type") == "file"] + (
                [src.filename] if name == "source" and to_source is not None else [])
            problems += _file_basin_problems(bdict, wanted, out_dir, name in broken,
                                             [t for t in targets if t is not None])
            why = paths_problem(label, bdict.get("paths"), [paths for *_, paths, _ in wanted],
                                src.filename, output, recorded) if resolve_file_basin(
                out_dir, bdict) is not None else None  # else: 'does not resolve (paths)'
            problems += [why] if why else []
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


def _basinmap_problems(h5: h5py.File, used: set) -> list[str]:
    """``events/basinmap*`` datasets that are the mapping of no basin (``used``: those
    that are), or that hold no integers (event indices)."""
    events = h5.get("events")
    problems = []
    for name in sorted(events) if isinstance(events, h5py.Group) else ():
        dset = events.get(name) if name.startswith("basinmap") else None
        if dset is None:
            continue
        if name not in used:
            problems.append(f"'events/{name}' is the mapping of no basin of the output")
        elif isinstance(dset, h5py.Dataset) and dset.dtype.kind not in "iu":
            problems.append(f"'events/{name}' holds {dset.dtype} values, not event indices "
                            f"(integers)")
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
                         broken: bool, targets: list) -> list[str]:
    """A file basin of an output: the features it lists, its identifier (where the
    source's basin, or the source for a basin to it, has one), whether it resolves, and
    whether to one of the files ``targets`` (when given: a copy of the source elsewhere,
    with its identifier, may hold other data)."""
    problems, label = [], f"basin '{bdict.get('name')}'"
    if bdict.get("features") not in [features for features, *_ in wanted]:
        problems.append(f"{label} lists other features than the source's")
    identifiers = {ident for _, _, ident, *_ in wanted if ident}
    if not identifiers and not broken and bdict.get("identifier") is not None:
        problems.append(f"{label} has identifier {bdict['identifier']!r}, dcbulk writes none "
                        f"(null: the basin file has no identifier dclab and dcnum both "
                        f"compute)")
    elif identifiers and bdict.get("identifier") not in identifiers:
        problems.append(f"{label} has " + (f"identifier {bdict['identifier']!r}"
                                           if bdict.get("identifier") else "no identifier")
                        + f", expected {sorted(identifiers)[0]!r} (the basin file's)")
    # resolved next to the output (what dcnum does; dclab then tries the same path)
    found = resolve_file_basin(out_dir, bdict)
    if found is None:
        problems.append(f"{label} does not resolve ({bdict.get('paths')})" + (
            "; the source's does not resolve either" if broken else ""))
    elif targets and not any(os.path.samefile(found, t) for t in targets):
        problems.append(f"{label} leads to {found}, not to {targets[-1]} (the file it was "
                        f"made for; a file elsewhere may hold other data)")
    elif bdict.get("identifier"):
        with h5py.File(found, "r", locking=False) as bh5:
            known = {get_measurement_identifier(bh5, compat=c) for c in ("dcnum", "dclab")}
        if bdict["identifier"] not in known:
            problems.append(f"{label} at {found} has another identifier")
    return problems


def _described(got, descriptions: list) -> str | None:
    """Why a basin's ``description`` is none of those its name allows (None: it is one):
    the source's basin's, or for the basin to the source (:data:`_TO_SOURCE`) the
    writer's, of any dcbulk version."""
    head, tail = SOURCE_BASIN_DESCRIPTION.split("{version}")
    for want in descriptions:
        if want is _TO_SOURCE and isinstance(got, str) and got.startswith(head) \
                and got.endswith(tail) and len(got) > len(head) + len(tail):
            return None
        if want is not _TO_SOURCE and got == want:
            return None
    want = descriptions[0]
    return f"its description is {got!r}, " + (
        f"the source's is {want!r}" if want is not _TO_SOURCE
        else f"dcbulk writes {SOURCE_BASIN_DESCRIPTION.format(version='<version>')!r}")


def _definition_problems(bdict: dict, descriptions: list) -> list[str]:
    """A basin's definition against what the writer stores for it: its keys, its format
    (and an internal basin's path), its description (``descriptions``: the allowed ones,
    :func:`_described`)."""
    label, kind = f"basin '{bdict.get('name')}'", bdict.get("type")
    keys = _KEYS + (_FILE_KEYS if kind == "file" else ())
    problems = [f"{label} lacks the key {key!r}, which dcbulk writes" for key in keys
                if key not in bdict]
    problems += [f"{label} has the key {key!r}, which dcbulk does not write" for key in bdict
                 if key not in keys + _OPTIONAL_KEYS]
    if bdict.get("format") != _FORMATS[kind]:
        problems.append(f"{label}: its format is {bdict.get('format')!r}, dcbulk writes "
                        f"{_FORMATS[kind]!r} for a {kind} basin")
    if kind == "internal" and bdict.get("paths") != ["basin_events"]:
        problems.append(f"{label}: its paths are {bdict.get('paths')!r}, dcbulk writes "
                        f"['basin_events'] for an internal basin")
    why = _described(bdict.get("description"), descriptions)
    return problems + ([f"{label}: {why}"] if why else [])


def _key_problems(h5: h5py.File) -> list[str]:
    """Basin definitions not stored under the MD5 of their text, as the writer (and dcnum)
    stores every one (so identical definitions are stored once)."""
    problems = []
    for key, dset in h5["basins"].items() if isinstance(h5.get("basins"), h5py.Group) else ():
        if not isinstance(dset, h5py.Dataset):
            continue
        lines = [ln.encode() if isinstance(ln, str) else bytes(ln) for ln in dset[()].ravel()]
        text = b"\n".join(lines)
        digest = hashlib.md5(text).hexdigest()
        if digest != key:
            try:
                name = json.loads(text).get("name")
            except (ValueError, AttributeError):
                name = None
            problems.append(f"basin '{name}' is stored under the key {key!r}, not the MD5 of "
                            f"its text ({digest!r}, dcnum's and dcbulk's key)")
    return problems
