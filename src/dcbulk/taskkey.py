"""The dask key of one file's task, shared by every client that submits file tasks.

The executor (:mod:`dcbulk.bulk.executor`) names every job's per-file tasks this way, and
the dashboard page (:mod:`dcbulk.monitor.state`) maps these keys back to the outputs' names.
"""
from __future__ import annotations

import hashlib
import os

__all__ = ["file_key"]


def file_key(output: str, index: int | str) -> str:
    """The dask key of one output's task: a hash of the output's name, never the name itself
    (a file name need not be valid UTF-8; a key must be), and ``index`` (unique in a run)."""
    digest = hashlib.sha256(os.fsencode(output)).hexdigest()[:16]
    return f"dcbulk-file-{digest}-{index}"
