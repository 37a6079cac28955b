"""Everything the writer adds around the feature data: metadata, contours, basins, provenance.

All of it is small and runs inside the writer process, through the same
:class:`~dcbulk.write.HDF5Writer` that stores the chunks. The community's conventions are
kept here (``/work/shared/FORMAT.md``, checked against dclab 0.73 and dcnum 0.31):

- an output whose events are not the source's gets a new ``experiment:run identifier``
  (the source's identifier plus ``_dcb-<7 hex>`` derived from the mapping, reproducible);
- file-basin paths are stored ``[absolute, relative]`` (as dcnum writes them), so outputs
  resolve from any working directory in dclab and dcnum; a basin points at a converted
  sibling only when that sibling holds the same events and features, else at the original;
- basin identifiers follow :func:`~dcbulk.read.identifier.basin_identifier` (a value both
  readers accept);
- contours get the output's filters; ``min``/``max``/``mean`` attributes of scalar features
  are kept when the rows are the source's and recomputed otherwise; a feature's other
  attributes are kept (as dclab-compress and dcnum's ``copy_features`` keep them);
- what no output carries (top-level objects besides the format's groups, attributes of
  ``events``: dclab's and dcnum's exports leave them out too) is one warning line.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib

import h5py
import numpy as np
from h5py import h5o

from .._version import __version__
from ..errors import SourceError
from ..plan import (SET_APART_ATTRS, ConversionPlan, carries_statistics, keeps_statistics,
                    source_statistics, statistics)
from ..provenance import log_name, make_provenance, provenance_lines
from ..read.basins import basin_feature_names, carried_identifier
from ..read.files import open_child, open_h5_readonly, open_rtdc
from ..read.identifier import basin_identifier, filtered_run_identifier, get_measurement_identifier
from ..read.policy import check_dataset, check_link, is_reference, not_carried
from ..write import HDF5Writer, copy_metadata

__all__ = ["SOURCE_BASIN_DESCRIPTION", "write_metadata", "write_trailer", "compose_map",
           "file_basin_paths", "siblings_hold_same_events"]

#: the description of an output's basin ``source`` (``--basin-to-source``)
SOURCE_BASIN_DESCRIPTION = "Source of this file (dcbulk {version})"

logger = logging.getLogger(__name__)


def write_metadata(hw: HDF5Writer, plan: ConversionPlan) -> None:
    """Set the event count, copy attributes, logs and tables; new run identifier if mapped."""
    hw.h5.attrs["experiment:event count"] = plan.n_events
    if plan.source_info is not None:
        with open_rtdc(plan.source) as src:
            left = not_carried(src)
            if left:
                logger.warning("%s: not carried into its outputs (dclab's and dcnum's exports "
                               "leave them out too): %s", plan.source, ", ".join(left))
            copy_metadata(src, hw.h5)
            if plan.mapping is not None:
                base = get_measurement_identifier(src, compat="dclab")
                hw.h5.attrs["experiment:run identifier"] = filtered_run_identifier(
                    base, plan.mapping, plan.source_info.n_events)
    if plan.extra is not None:
        for key, value in plan.extra.attrs.items():
            hw.h5.attrs[key] = value


def _store_feature_attrs(hw: HDF5Writer, plan: ConversionPlan, src: h5py.File) -> None:
    """The attributes of the source's own feature datasets (e.g. a ``unit``), as dclab's and
    dcnum's copies keep them: all but the statistics (:func:`_store_statistics`), the image
    class the writer sets, and references (HDF5 dimension scales: they name the source's
    objects)."""
    events = hw.h5["events"]
    for fp in plan.features:
        if fp.source.data.path != plan.source_info.path or fp.source.rowmap is not None:
            continue
        source = open_child(src, fp.source.data.name)
        if not isinstance(source, h5py.Dataset) or not h5o.get_info(source.id).num_attrs:
            continue
        keep = {key: value for key, value in source.attrs.items()
                if key not in SET_APART_ATTRS and not is_reference(value)}
        if keep:
            open_child(events, fp.name, readonly=False).attrs.update(keep)


def compose_map(old: np.ndarray | None, mapping: np.ndarray | None) -> np.ndarray | None:
    """Basin rows of the output's events: ``old[mapping]`` with either side optional."""
    if mapping is None:
        return old
    if old is None:
        return mapping.astype(np.uint64)
    return old[mapping]


def siblings_hold_same_events(plan: ConversionPlan) -> bool:
    """Whether converted siblings (same options, mirrored tree) hold their sources' events.

    True for a :func:`~dcbulk.engine.api.convert`/archive conversion of all events and all
    own features; then a relative basin path such as ``raw.rtdc`` may resolve to the
    converted ``raw.rtdc`` next to the output. Filtered or feature-subset conversions (and
    :func:`~dcbulk.engine.api.store_features`) must point at the original basin files only.
    """
    return (plan.mapping is None and "features" in plan.options
            and plan.options["features"] is None)


def _absolute(cand: str, src_dir: pathlib.Path) -> pathlib.Path:
    pp = pathlib.Path(cand)
    return pathlib.Path(os.path.normpath(pp if pp.is_absolute() else src_dir / pp))


def file_basin_paths(paths: list[str], source: str, output: str, *,
                     same_events: bool = False) -> list[str]:
    """Candidate paths of a file basin as seen from the output: ``[absolute, relative, ...]``.

    Each candidate (relative ones taken next to the source) becomes an absolute path and a
    path relative to the output's directory, in dcnum's order. With ``same_events`` the
    original relative entries follow, so that a converted sibling in a mirrored tree is
    found once the originals are gone.
    """
    src_dir = pathlib.Path(source).resolve().parent
    out_dir = pathlib.Path(output).resolve().parent
    absolute = [_absolute(c, src_dir) for c in paths]
    out: list[str] = []
    for pp in absolute:
        real = pp.resolve() if pp.exists() else pp
        for cand in (str(real), os.path.relpath(real, out_dir)):
            if cand not in out:
                out.append(cand)
    if same_events:
        out.extend(c for c in paths if not pathlib.Path(c).is_absolute() and c not in out)
    return out


def _store_basins(hw: HDF5Writer, src: h5py.File, plan: ConversionPlan) -> None:
    info = plan.source_info
    same = siblings_hold_same_events(plan)
    src_dir = pathlib.Path(info.path).parent
    for bdict in info.basins:
        mapname = bdict.get("mapping")
        old = src["events"][mapname][:] if mapname else None
        new = compose_map(old, plan.mapping)
        desc = bdict.get("description")
        if bdict["type"] == "internal":
            data = {f: src["basin_events"][f][:] for f in bdict.get("features", [])
                    if f in src.get("basin_events", {})}
            if data and new is not None:
                hw.store_basin(name=bdict["name"], description=desc, mapping=new,
                               internal_data=data)
        elif bdict["type"] == "file":
            hw.store_basin(name=bdict["name"], description=desc,
                           paths=file_basin_paths(bdict["paths"], info.path, plan.output,
                                                  same_events=same),
                           features=bdict.get("features"), mapping=new,
                           identifier=carried_identifier(bdict, src_dir))
    if plan.basin_to_source:
        src_path = pathlib.Path(info.path).resolve()
        hw.store_basin(name="source",
                       description=SOURCE_BASIN_DESCRIPTION.format(version=__version__),
                       paths=file_basin_paths([str(src_path)], info.path, plan.output),
                       features=basin_feature_names(info),
                       mapping=plan.mapping, identifier=basin_identifier(src))


def _store_contours(hw: HDF5Writer, src: h5py.File, plan: ConversionPlan) -> int:
    """Store the contours of the output's events with the output's filters.

    Each contour is checked against the source policy before it is read (one contour is one
    item: at most :data:`~dcbulk.read.policy.MAX_ITEM_BYTES`).
    """
    group = src["events"].get("contour")
    if not isinstance(group, h5py.Group):
        return 0
    out = hw.h5.require_group("events").require_group("contour")
    kwds = plan.codec.ds_kwds()
    follow = plan.source_info.follow_external
    stored = 0
    for j in range(plan.n_events):
        i = j if plan.mapping is None else int(plan.mapping[j])
        check_link(group, str(i), plan.source, follow_external=follow)
        dset = group.get(str(i))
        if not isinstance(dset, h5py.Dataset):  # its name checked by inspection: a group
            raise SourceError(f"{plan.source}: 'events/contour/{i}' is not a dataset; "
                              f"refusing to drop a contour")
        check_dataset(dset, f"events/contour/{i}", plan.source, follow_external=follow,
                      item="contour")
        data = dset[()]
        if data.size:
            out.create_dataset(str(j), data=data, chunks=data.shape, **kwds)
        else:  # HDF5 cannot chunk (hence filter) an empty dataset
            out.create_dataset(str(j), data=data)
        stored += 1
    return stored


def _store_statistics(hw: HDF5Writer, plan: ConversionPlan, src: h5py.File | None) -> None:
    """``min``/``max``/``mean`` of scalar features: copied when valid, else computed. Where
    the source has none, a conversion stores none (as dcnum's ``copy_features``; computing
    them reads every scalar feature back: a fifth of the time of converting 200 files of
    10-40 events, 11.8 vs 9.7 s) and a ``store_features`` output (condense) computes them,
    as dclab-condense does.

    Copied attributes are read with each source file opened once (``src``, the plan's
    source, already open), not once per feature; members are reached by
    :func:`~dcbulk.read.files.open_child` (h5py's ``group[name]`` cost a tenth of a small
    file's conversion here).
    """
    events = hw.h5["events"]
    computes = bool(plan.options.get("store_features"))
    copied: dict[str, list] = {}
    for fp in plan.features:
        if not carries_statistics(fp.name, fp.dtype, fp.item_shape):
            continue
        dset = open_child(events, fp.name, readonly=False)
        if not isinstance(dset, h5py.Dataset):
            continue
        if keeps_statistics(fp.source, mapped=plan.mapping is not None, n_rows=plan.n_events):
            copied.setdefault(str(fp.source.data.path), []).append((dset, fp.source.data.name))
        elif dset.shape[0]:
            for name, value in statistics(dset[:]).items():
                dset.attrs[name] = value
    for path, targets in copied.items():
        same = src is not None and os.path.abspath(path) == os.path.abspath(plan.source)
        with contextlib.nullcontext(src) if same else open_h5_readonly(path) as h5:
            for dset, name in targets:
                source = open_child(h5, name)
                if not isinstance(source, h5py.Dataset):
                    raise SourceError(f"{path}: dataset '{name}' has vanished")
                kept = source_statistics(source.attrs)
                if not kept and computes and dset.shape[0]:  # none to keep (condense)
                    kept = statistics(dset[:])
                dset.attrs.update(kept)


def _store_extra(hw: HDF5Writer, extra) -> None:
    for name, lines in extra.logs.items():
        hw.store_log(name, lines, override=True)
    for name, table in extra.tables.items():
        group = hw.h5.require_group("tables")
        if name in group:
            del group[name]
        data, attrs = table if isinstance(table, tuple) else (table, {})
        ds = group.create_dataset(name, data=data, **hw.ds_kwds)
        ds.attrs.update(attrs)


def _feature_text(fp, copied: int) -> str:
    """A feature's filters as the provenance gives them (and chunks copied as stored, for an
    encoded feature some of whose chunks were: a join's)."""
    if fp.raw_copy:
        return "raw-copy " + fp.codec.describe()
    return fp.codec.describe() + (f" ({copied} of {fp.n_chunks} chunks copied as stored)"
                                  if copied else "")


def _provenance(plan: ConversionPlan, contours: int | None, copied: dict[str, int]) -> dict:
    """The output's provenance document (:mod:`dcbulk.provenance`'s schema)."""
    features = {fp.name: _feature_text(fp, copied.get(fp.name, 0)) for fp in plan.features}
    if contours is not None:
        features["contour"] = f"{plan.codec.describe()} ({contours} events)"
    job = dict(plan.extra.provenance) if plan.extra is not None else {}
    mode = job.get("mode") or ("store-features" if plan.options.get("store_features")
                               else "convert")
    return make_provenance(mode=mode, source=plan.source, source_info=plan.source_info,
                           output_events=plan.n_events, mapped=plan.mapping is not None,
                           basin_to_source=plan.basin_to_source, features=features,
                           options=job.get("options", plan.options),
                           details=job.get("details"))


def write_trailer(hw: HDF5Writer, plan: ConversionPlan, copied: dict[str, int]) -> None:
    """Add statistics, contours, basins (maps composed with the mapping), the source's empty
    event groups and the provenance log (``dcbulk-<mode>``, :mod:`dcbulk.provenance`;
    ``copied``: chunks per feature copied as stored)."""
    contours = None
    if plan.source_info is not None:
        with open_rtdc(plan.source) as src:
            _store_feature_attrs(hw, plan, src)
            _store_statistics(hw, plan, src)
            if plan.contour and plan.source_info.has_contour:
                contours = _store_contours(hw, src, plan)
            _store_basins(hw, src, plan)
    else:
        _store_statistics(hw, plan, None)
    if plan.extra is not None:
        _store_extra(hw, plan.extra)
    for name in plan.empty_groups:  # kept as the source has them (dcnum lists them)
        hw.h5.require_group("events").require_group(name)
    doc = _provenance(plan, contours, copied)
    hw.store_log(log_name(hw.h5.get("logs", {}), doc["mode"]), provenance_lines(doc))
