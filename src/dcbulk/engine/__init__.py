"""The dask engine: features as dask arrays, blocks encoded in worker threads, one writer per output.

Blocks are encoded by :mod:`dcbulk.codec` (numcodecs outside HDF5's lock where it reproduces
HDF5's bytes, so the threads of one worker encode at once; HDF5 itself otherwise).

Modules: ``arrays`` (features as dask arrays, blocks of encoded chunks), ``window`` (a
bounded window of tasks computed from inside a task), ``blockpool`` (the same for the
writers of an in-process run, on threads of this process), ``writer`` (the single writer
of an output), ``report`` (its result), ``finish`` (metadata, basins, provenance),
``client`` (LocalCluster defaults: a worker process per core, one thread each), ``api``
(convert, store_features and its check of new features).
"""
from __future__ import annotations

from .api import check_new_features, convert, store_features, submit_conversion
from .arrays import read_features
from .report import Report
from .writer import write_output

__all__ = ["Report", "check_new_features", "convert", "read_features", "store_features",
           "submit_conversion", "write_output"]
