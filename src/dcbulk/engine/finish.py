"""Everything the writer adds around the feature data: metadata, contours, basins, provenance.

All of it is small and runs inside the writer process, through the same
:class:`~dcbulk.write.HDF5Writer` that stores the chunks.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform

import h5py
import numpy as np

from .._version import __version__
from ..plan import ConversionPlan
from ..read.files import open_rtdc
from ..write import HDF5Writer, copy_metadata

__all__ = ["write_metadata", "write_trailer", "compose_map", "file_basin_paths"]


def write_metadata(hw: HDF5Writer, plan: ConversionPlan) -> None:
    """Set the event count and copy attributes, logs and tables from the source."""
    hw.h5.attrs["experiment:event count"] = plan.n_events
    if plan.source_info is not None:
        with open_rtdc(plan.source) as src:
            copy_metadata(src, hw.h5)
    if plan.extra is not None:
        for key, value in plan.extra.attrs.items():
            hw.h5.attrs[key] = value


def compose_map(old: np.ndarray | None, mapping: np.ndarray | None) -> np.ndarray | None:
    """Basin rows of the output's events: ``old[mapping]`` with either side optional."""
    if mapping is None:
        return old
    if old is None:
        return mapping.astype(np.uint64)
    return old[mapping]


def file_basin_paths(paths: list[str], source: str, output: str) -> list[str]:
    """Candidate paths of a file basin as seen from the output.

    Keeps the original entries and adds the resolved absolute path and the path relative to
    the output's directory, so the basin stays reachable when the output lives elsewhere.
    """
    src_dir = pathlib.Path(source).parent
    out = list(paths)
    for cand in paths:
        pp = pathlib.Path(cand)
        pp = pp if pp.is_absolute() else src_dir / pp
        if pp.exists():
            resolved = str(pp.resolve())
            rel = os.path.relpath(resolved, pathlib.Path(output).resolve().parent)
            for extra in (rel, resolved):
                if extra not in out:
                    out.append(extra)
            break
    return out


def _copy_contours(src: h5py.File, dst: h5py.File, mapping: np.ndarray | None, n: int) -> None:
    group = src["events"].get("contour")
    if not isinstance(group, h5py.Group):
        return
    out = dst.require_group("events").require_group("contour")
    for j in range(n):
        i = j if mapping is None else int(mapping[j])
        if str(i) in group:
            h5py.h5o.copy(group.id, str(i).encode(), out.id, str(j).encode())


def _store_basins(hw: HDF5Writer, src: h5py.File, plan: ConversionPlan) -> None:
    info = plan.source_info
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
                           paths=file_basin_paths(bdict["paths"], info.path, plan.output),
                           features=bdict.get("features"), mapping=new,
                           identifier=bdict.get("identifier"))
    if plan.basin_to_source:
        src_path = pathlib.Path(info.path)
        rel = os.path.relpath(src_path, pathlib.Path(plan.output).resolve().parent)
        hw.store_basin(name="source", description=f"Source of this file (dcbulk {__version__})",
                       paths=[str(src_path), rel],  # dcnum's order: absolute first
                       # dclab and dcnum name groups by their key ("trace", not "trace/x")
                       features=sorted({f.split("/")[0] for f in info.own_features
                                        if not f.startswith("basinmap")}),
                       mapping=plan.mapping, identifier=info.identifier)


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


def _provenance(plan: ConversionPlan) -> list[str]:
    info = plan.source_info
    doc = {
        "software": f"dcbulk {__version__}",
        "python": platform.python_version(),
        "h5py": h5py.__version__,
        "source": plan.source,
        "source identifier": info.identifier if info else None,
        "source events": info.n_events if info else None,
        "source size": info.size if info else None,
        "source mtime": info.mtime if info else None,
        "output events": plan.n_events,
        "mapped": plan.mapping is not None,
        "features": {fp.name: ("raw-copy " if fp.raw_copy else "") + fp.codec.describe()
                     for fp in plan.features},
        "options": plan.options,
    }
    return json.dumps(doc, indent=2, sort_keys=True, default=str).split("\n")


def write_trailer(hw: HDF5Writer, plan: ConversionPlan) -> None:
    """Add contours, basins (maps composed with the mapping) and the provenance log."""
    if plan.source_info is not None:
        with open_rtdc(plan.source) as src:
            if plan.source_info.has_contour:
                _copy_contours(src, hw.h5, plan.mapping, plan.n_events)
            _store_basins(hw, src, plan)
    if plan.extra is not None:
        _store_extra(hw, plan.extra)
    logs = hw.h5.get("logs", {})
    name, k = "dcbulk-convert", 1
    while name in logs:
        k += 1
        name = f"dcbulk-convert-{k}"
    hw.store_log(name, _provenance(plan))
