"""The dask engine: aligned dask arrays, worker-side encoding, one writer task per output.

Modules: ``arrays`` (features as dask arrays, arrays as chunk streams), ``tasks`` (worker
tasks), ``writer`` (the single writer of an output), ``finish`` (metadata, basins,
provenance), ``client`` (LocalCluster defaults), ``api`` (convert, store_features).
"""
from __future__ import annotations

from .api import Report, convert, store_features, submit_conversion
from .arrays import read_features
from .writer import WriteSummary, write_output

__all__ = ["Report", "WriteSummary", "convert", "read_features", "store_features",
           "submit_conversion", "write_output"]
