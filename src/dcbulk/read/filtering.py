"""Which events of a source an event filter keeps (a filter expression evaluated on a file).

The one place that turns a checked :class:`~dcbulk.filter_expr.FilterExpr` into a boolean
event filter over a source: ``convert --filter``, the modes and ``verify`` all call it, so an
output and its verification see the same events.
"""
from __future__ import annotations

import numpy as np

from ..errors import PlanError
from ..filter_expr import FilterExpr
from .chunks import OpenFiles, read_event_rows
from .inspect import SourceInfo

__all__ = ["event_filter", "filter_mapping"]


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
