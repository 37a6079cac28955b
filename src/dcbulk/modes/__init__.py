"""Modes beyond compress: reprocess (Python), condense, split and join (also CLI).

One module per mode, each built on the public engine API (``read_features``,
``store_features``, ``convert``) and, for whole archives, on ``convert_archive`` with a
per-file job; ``common`` holds what they share.
"""
from __future__ import annotations

from .reprocess import ReprocessJob, reprocess

__all__ = ["ReprocessJob", "reprocess"]
