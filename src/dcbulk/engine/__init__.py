"""The dask engine: features as dask arrays, blocks encoded by HDF5 on workers, one writer per output.

Modules: ``arrays`` (features as dask arrays, blocks of encoded chunks), ``window`` (a
bounded window of tasks computed from inside a task), ``writer`` (the single writer of an
output), ``report`` (its result), ``finish`` (metadata, basins, provenance), ``client``
(LocalCluster defaults), ``api`` (convert, store_features).
"""
from __future__ import annotations

from .api import convert, store_features, submit_conversion
from .arrays import read_features
from .report import Report
from .writer import write_output

__all__ = ["Report", "convert", "read_features", "store_features", "submit_conversion",
           "write_output"]
