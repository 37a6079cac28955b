"""What a condensed output (``dcbulk condense``) must hold, beyond a conversion's rules.

A condensed file is checked as a conversion of the scalar features its source provides
(:func:`~dcbulk.plan.scalar_features`, own and from basins; the rows ``source[mapping]``,
their statistics and attributes, the source's metadata and basins plus a basin to the
source), with two differences of condense's own: ``index`` is ``1..n`` where the source has
none or events were filtered (as dclab writes it), and with ``--ancillary`` the scalar
features dclab computes are there, computed again here by dclab and compared bit for bit
(:func:`ancillary_problems`).
"""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import DcbulkError
from ..plan import STAT_ATTRS, scalar_features
from ..read.ancillary import ancillary_features
from ..read.inspect import SourceInfo
from .rows import diff_rows

__all__ = ["ancillary_problems", "condensed_features"]


def condensed_features(info: SourceInfo, mapping: np.ndarray | None) -> list[str]:
    """The features condense stores without ``--ancillary``: the source's scalar features
    and ``index`` (enumerated when the source has none, if any event is kept)."""
    names = scalar_features(info)
    n_out = info.n_events if mapping is None else int(mapping.size)
    return names + (["index"] if "index" not in names and n_out else [])


def ancillary_problems(output: str, source: str, mapping: np.ndarray | None,
                       have: list[str], found: list[str]) -> list[str]:
    """dclab's ancillary features of ``source`` (those not in ``have``) against the output's
    other features ``found``: each there, none else, equal to ``computed[mapping]``."""
    try:
        computed = ancillary_features(source, have)
    except (DcbulkError, OSError, ValueError, KeyError) as exc:
        return [f"{output}: dclab's ancillary features of {source} not computed "
                f"({type(exc).__name__}: {exc})"]
    problems = [f"{output}: feature '{name}' (ancillary) is missing"
                for name in computed if name not in found]
    problems += [f"{output}: feature '{name}' is not in the source's selection"
                 for name in found if name not in computed]
    with h5py.File(output, "r", locking=False) as h5:
        for name in (n for n in found if n in computed):
            want = computed[name] if mapping is None else computed[name][mapping]
            try:
                problem = diff_rows(h5["events"][name][:], want, 0)
            except (OSError, KeyError, ValueError) as exc:
                problem = f"unreadable ({type(exc).__name__}: {exc})"
            if problem:
                problems.append(f"{output}: feature '{name}' (ancillary, computed by dclab): "
                                f"{problem}")
            problems += [f"{output}: feature '{name}' (ancillary): attribute '{key}' is not "
                         f"dcbulk's (it writes only min/max/mean on dclab's features)"
                         for key in h5["events"][name].attrs.keys() if key not in STAT_ATTRS]
    return problems
