"""Modes beyond compress: reprocess (Python), condense, split and join (also CLI).

One module per mode, each a :class:`~dcbulk.bulk.Job` run by the archive executor and,
where it is a sub-command, a ``COMMAND`` listed in :mod:`dcbulk.registry`; ``common`` holds
what they share.
"""
from __future__ import annotations

from .condense import CondenseJob, condense
from .join import JoinJob, join
from .reprocess import ReprocessJob, reprocess
from .split import SplitJob, split

__all__ = ["CondenseJob", "JoinJob", "ReprocessJob", "SplitJob", "condense", "join",
           "reprocess", "split"]
