"""Read-only access to .rtdc files: opening, features, basins, identifiers."""
from __future__ import annotations

from .basins import extract_basin_dicts
from .files import list_features, open_rtdc
from .identifier import get_measurement_identifier

__all__ = [
    "extract_basin_dicts",
    "get_measurement_identifier",
    "list_features",
    "open_rtdc",
]
