"""Which events of a source an event filter keeps (a filter expression evaluated on a file).

The one place that turns a checked :class:`~dcbulk.filter_expr.FilterExpr` into a boolean
event filter over a source: ``convert --filter``, the modes and ``verify`` all call it, so an
output and its verification see the same events. :func:`kept_events` adds ``split``'s rule
for all-zero boundary images, for the same reason.
"""
from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..filter_expr import FilterExpr
from .chunks import OpenFiles, read_event_rows
from .files import open_rtdc
from .inspect import SourceInfo

__all__ = ["event_filter", "filter_mapping", "kept_events"]


def filter_mapping(info: SourceInfo, expr: FilterExpr) -> np.ndarray:
    """The boolean event filter of ``expr`` over the source ``info`` (one entry per event).

    Raises
    ------
    PlanError
        When the source lacks a feature the expression needs.
    """
    missing = [n for n in expr.names if n not in info.features]
    if missing:
        raise PlanError(f"{info.path}: filter needs feature(s) {', '.join(missing)} "
                        f"that the file does not have")
    with OpenFiles() as files:
        arrays = {n: read_event_rows(files, info.features[n], slice(0, info.n_events))
                  for n in expr.names}
    return np.asarray(expr.evaluate(arrays), dtype=bool)


def event_filter(info: SourceInfo, expr: FilterExpr | None) -> np.ndarray | None:
    """:func:`filter_mapping`, or None without a filter (every event kept)."""
    return None if expr is None else filter_mapping(info, expr)


def _empty_boundaries(info: SourceInfo) -> tuple[bool, bool]:
    """Whether the first and the last event have an all-zero image (as dclab checks)."""
    if info.n_events == 0:
        return False, False
    first = last = False
    with OpenFiles() as files:
        if "image" in info.features:
            fsrc = info.features["image"]
            first = not read_event_rows(files, fsrc, slice(0, 1)).any()
            last = not read_event_rows(files, fsrc, slice(info.n_events - 1,
                                                          info.n_events)).any()
    if not first and info.has_contour:
        with open_rtdc(info.path) as h5:
            cont = h5["events/contour"].get("0")
            first = cont is not None and not np.asarray(cont).any()
    return first, last


def kept_events(info: SourceInfo, expr: FilterExpr | None, skip_empty: bool) -> np.ndarray:
    """The events ``split`` keeps (a boolean per event): those ``expr`` keeps, without an
    all-zero first or last image (old Shape-In files, as ``dclab-split``) if ``skip_empty``."""
    keep = np.ones(info.n_events, dtype=bool)
    if skip_empty:
        first, last = _empty_boundaries(info)
        keep[:1] &= not first
        keep[-1:] &= not last
    mask = event_filter(info, expr)
    return keep if mask is None else keep & mask
