"""Warnings issued while writing or copying basin definitions."""
from __future__ import annotations

__all__ = ["CreatingFileWithoutBasinWarning", "IgnoringBasinTypeWarning"]


class CreatingFileWithoutBasinWarning(UserWarning):
    """A basin-only file is created from an empty list of basins."""


class IgnoringBasinTypeWarning(UserWarning):
    """A basin of a type other than ``file``/``internal`` is not copied."""
