"""Human-readable storage layout of datasets and files (for ``dcbulk info``).

Names every HDF5 filter pipeline in order (e.g. ``fletcher32,gzip:4``, ``shuffle,zstd:5``,
``szip``, ``none``), so no layout shows up as an anonymous "other".
"""
from __future__ import annotations

import os

import h5py

from ..codec.table import FILTER_NAMES as _FILTER_NAMES
from .files import open_rtdc

__all__ = ["describe_filters", "describe_contour", "file_summary", "file_lines", "contour_line",
           "dataset_filters"]



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


def file_summary(path: str | os.PathLike) -> tuple[str, bool]:
    """One line for an .rtdc file (name, events, size, identifier) and True, or its error
    and False."""
    from ..errors import DcbulkError, one_line
    from .inspect import inspect_source
    try:
        info = inspect_source(path)
    except (DcbulkError, OSError) as exc:
        text = str(exc)
        for shown in (f"{os.path.realpath(path)}: ", f"{path}: "):
            text = text.removeprefix(shown)
        return f"{path}: {one_line(text, 1000)}", False
    return (f"{path}: {info.n_events} events, {info.size / 1e6:,.2f} MB, "
            f"{len(info.features)} features, identifier {info.identifier}"), True


def file_lines(path: str | os.PathLike) -> list[str]:
    """What ``dcbulk info FILE`` prints: events, identifier, size, features, contour, basins.

    Raises
    ------
    SourceError
        For anything that cannot be read (one line naming the file), never another error.
    """
    import numpy as np

    from ..errors import DcbulkError, SourceError
    from .inspect import inspect_source
    try:
        info = inspect_source(path)
        lines = [info.path, f"  events: {info.n_events}", f"  identifier: {info.identifier}",
                 f"  size: {info.size / 1e6:,.2f} MB", "  features:"]
        for name, fsrc in info.features.items():
            d = fsrc.data
            shape = (info.n_events,) + d.item_shape  # basin features: the output's events
            where = "" if fsrc.origin == "events" else f"  [{fsrc.origin}]"
            lines.append(f"    {name:24s} {str(shape):18s} {str(np.dtype(d.dtype)):8s} "
                         f"chunks={d.chunks} filters={dataset_filters(d.path, d.name)}{where}")
        if (contour := contour_line(info.path)) is not None:
            lines.append(f"    {'contour':24s} {contour}")
        for b in info.basins:
            lines.append(f"  basin: {b.get('name')} ({b.get('type')}, {b.get('format')}) "
                         f"mapping={b.get('mapping')} paths={b.get('paths')}")
    except DcbulkError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise SourceError(f"{path}: unreadable: {type(exc).__name__}: {exc}") from exc
    return lines


def contour_line(path: str | os.PathLike) -> str | None:
    """The ``contour`` line of ``dcbulk info`` (None when the file has no contours)."""
    with open_rtdc(path) as h5:
        group = h5["events"].get("contour")
        return describe_contour(group) if isinstance(group, h5py.Group) else None


def dataset_filters(path: str | os.PathLike, name: str) -> str:
    """:func:`describe_filters` of one dataset of a file."""
    with open_rtdc(path) as h5:
        return describe_filters(h5[name])
