"""Modes beyond compress: reprocess (Python), condense, split, join and process (also CLI).

One module per mode, each built on the public engine API (``read_features``,
``store_features``, ``convert``) and, for whole archives, on ``convert_archive`` with a
per-file job; ``common`` holds what they share.
"""
from __future__ import annotations

from .condense import CondenseJob, condense
from .join import join
from .process import ProcessJob, process
from .reprocess import ReprocessJob, reprocess
from .split import split

__all__ = ["CondenseJob", "ProcessJob", "ReprocessJob", "condense", "join", "process",
           "reprocess", "split"]
