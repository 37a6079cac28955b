"""dcbulk: convert and reprocess deformability cytometry archives with dask.

Public API: :func:`convert_archive` (whole archives), :func:`reprocess` (new features
computed by a function for every file of an archive), :func:`process` (dcnum's pipeline
for every measurement of an archive), :func:`convert` (one file),
:func:`read_features` (features as aligned dask arrays), :func:`store_features` (dask arrays
into a new file), :func:`verify` (prove outputs equal their sources), :func:`forget` (sources
left out of an output directory on purpose), the dcnum-compatible writer
module :mod:`dcbulk.write`, and the exceptions in :mod:`dcbulk.errors`.
"""
from __future__ import annotations

from . import clock  # noqa: F401  (first: the command's clock starts with dcbulk's import)
from ._version import __version__
from .bulk import ArchiveReport, convert_archive, forget
from .engine import Report, convert, read_features, store_features
from .errors import DcbulkError
from .modes import process, reprocess
from .modes.verify import VerifyReport, verify

__all__ = ["__version__", "ArchiveReport", "DcbulkError", "Report", "convert",
           "convert_archive", "forget", "process", "read_features", "reprocess",
           "store_features", "VerifyReport", "verify"]
