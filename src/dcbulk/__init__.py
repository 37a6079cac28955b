"""dcbulk: convert and reprocess deformability cytometry archives with dask."""
from __future__ import annotations

from ._version import __version__
from .errors import DcbulkError

__all__ = ["__version__", "DcbulkError"]
