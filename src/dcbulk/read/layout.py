"""Human-readable storage layout of datasets and files (for ``dcbulk info``).

Names every HDF5 filter pipeline in order (e.g. ``fletcher32,gzip:4``, ``shuffle,zstd:5``,
``szip``, ``none``), so no layout shows up as an anonymous "other".
"""
from __future__ import annotations

import os

import h5py

from ..errors import DcbulkError
from .files import open_rtdc
from .inspect import inspect_source

__all__ = ["describe_filters", "describe_contour", "file_summary", "contour_line", "dataset_filters"]

#: HDF5 filter ids h5py and hdf5plugin define, as ``dcbulk info`` names them
_FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                 6: "scaleoffset", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle",
                 32015: "zstd", 32017: "sz", 32026: "blosc2"}


def describe_filters(dset: h5py.Dataset) -> str:
    """The filter pipeline of a dataset in order: ``contiguous``, ``none`` or ``a,b:level``."""
    if dset.chunks is None:
        return "contiguous"
    plist = dset.id.get_create_plist()
    parts = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        name = _FILTER_NAMES.get(code, f"filter-{code}")
        if code in (1, 32015) and values:
            name += f":{values[0]}"
        parts.append(name)
    return ",".join(parts) or "none"


def describe_contour(group: h5py.Group) -> str:
    """Count and filter pipelines of an ``events/contour`` group."""
    layouts = {describe_filters(group[k]) for k in group if isinstance(group[k], h5py.Dataset)}
    return f"{len(group)} events, filters={'|'.join(sorted(layouts)) or 'none'}"


def file_summary(path: str | os.PathLike) -> str:
    """One line for an .rtdc file: name, events, size, identifier (or its error)."""
    try:
        info = inspect_source(path)
    except DcbulkError as exc:
        return f"{path}: {exc}"
    return (f"{path}: {info.n_events} events, {info.size / 1e6:,.2f} MB, "
            f"{len(info.features)} features, identifier {info.identifier}")


def contour_line(path: str | os.PathLike) -> str | None:
    """The ``contour`` line of ``dcbulk info`` (None when the file has no contours)."""
    with open_rtdc(path) as h5:
        group = h5["events"].get("contour")
        return describe_contour(group) if isinstance(group, h5py.Group) else None


def dataset_filters(path: str | os.PathLike, name: str) -> str:
    """:func:`describe_filters` of one dataset of a file."""
    with open_rtdc(path) as h5:
        return describe_filters(h5[name])
