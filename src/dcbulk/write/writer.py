"""The module path ``dcbulk.write.writer``, mirroring ``dcnum.write.writer``.

Code written for ``from dcnum.write import writer`` runs unchanged with
``from dcbulk.write import writer``: every public name of dcnum's module is
available here, implemented in the sibling modules.
"""
from __future__ import annotations

import hdf5plugin  # noqa: F401  (dcnum exposes it as a module attribute)

from .basin_warnings import (CreatingFileWithoutBasinWarning,
                             IgnoringBasinTypeWarning)
from .copy import (copy_basins, copy_features, copy_metadata,
                   create_with_basins)
from .filters import set_default_filter_kwargs
from .hdf5_writer import HDF5Writer

__all__ = [
    "CreatingFileWithoutBasinWarning",
    "HDF5Writer",
    "IgnoringBasinTypeWarning",
    "copy_basins",
    "copy_features",
    "copy_metadata",
    "create_with_basins",
    "set_default_filter_kwargs",
]
