"""dclab's ancillary scalar features of a file, computed by dclab itself.

``condense --ancillary`` stores them and its verification computes them again the same way;
dcbulk keeps no copy of dclab's formulas (volume, brightness percentiles, ...), so dclab
(an optional dependency, ``pip install dcbulk[dclab]``) must be importable where they are
computed.
"""
from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable

import numpy as np

from ..errors import PlanError

__all__ = ["NO_DCLAB", "ancillary_features", "has_module"]

#: the one line when dclab is missing where ancillary features are computed
NO_DCLAB = ("--ancillary needs dclab on every worker (pip install 'dcbulk[dclab]'); "
            "it is missing on {where}")


def has_module(name: str) -> bool:
    """Whether ``name`` is importable here (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def ancillary_features(path: str, have: Iterable[str]) -> dict[str, np.ndarray]:
    """dclab's ancillary scalar features of a file that are not in ``have`` (every event;
    none of a file without events)."""
    if not has_module("dclab"):
        raise PlanError(NO_DCLAB.format(where="this worker"))
    # dclab (with scipy behind it): imported here only
    import dclab
    from dclab import definitions as dfn
    have = set(have)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dclab.new_dataset(path) as ds:
            if not len(ds):  # none to compute (dclab's computations fail on no events)
                return {}
            names = [f for f in ds.features_ancillary
                     if f not in have and dfn.scalar_feature_exists(f)]
            return {f: np.asarray(ds[f]) for f in names}
