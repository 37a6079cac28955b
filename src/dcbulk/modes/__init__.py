"""Modes beyond compress: reprocess (Python), condense, split, join and process (also CLI).

One module per mode, each a :class:`~dcbulk.bulk.Job` run by the archive executor and,
where it is a sub-command, a ``COMMAND`` listed in :mod:`dcbulk.registry`; ``common`` holds
what they share.
"""
from __future__ import annotations

from .condense import CondenseJob, condense
from .join import JoinJob, join
from .process import ProcessJob, process
from .reprocess import ReprocessJob, reprocess
from .split import SplitJob, split

__all__ = ["CondenseJob", "JoinJob", "ProcessJob", "ReprocessJob", "SplitJob", "condense",
           "join", "process",
           "reprocess", "split"]
