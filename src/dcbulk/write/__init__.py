"""dcnum-compatible writing of .rtdc files (``import dcbulk.write as write``).

A drop-in replacement for dcnum 0.31's ``dcnum.write.writer`` API; the
same names are also importable from :mod:`dcbulk.write.writer`.
"""
from __future__ import annotations

from . import writer
from .writer import (CreatingFileWithoutBasinWarning, HDF5Writer,
                     IgnoringBasinTypeWarning, copy_basins, copy_features,
                     copy_metadata, create_with_basins,
                     set_default_filter_kwargs)

__all__ = [*writer.__all__, "writer"]
