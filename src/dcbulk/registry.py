"""The sub-commands of ``dcbulk`` that run a job: one line per mode.

A new mode is one module (its :class:`~dcbulk.bulk.Job` and a
:class:`~dcbulk.command.Command` named ``COMMAND``) plus one line in :data:`MODES`;
:mod:`dcbulk.cli` builds its sub-commands, their options and help from :func:`commands`.
"""
from __future__ import annotations

import importlib

from .command import Command

__all__ = ["MODES", "commands"]

#: the modules defining a ``COMMAND``, in the order of ``dcbulk --help``
MODES = (
    "dcbulk.modes.convert",
    "dcbulk.modes.condense",
    "dcbulk.modes.split",
    "dcbulk.modes.join",
    "dcbulk.modes.process",
)


def commands(modes: tuple[str, ...] = MODES) -> tuple[Command, ...]:
    """The :class:`~dcbulk.command.Command` of each module in ``modes``."""
    return tuple(importlib.import_module(name).COMMAND for name in modes)
