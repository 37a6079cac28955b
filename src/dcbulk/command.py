"""How a job is offered on the command line: one :class:`Command` per sub-command.

A mode module defines its job and one ``COMMAND``; :mod:`dcbulk.registry` lists them, and
:mod:`dcbulk.cli` builds its sub-commands from that list (the options every job shares,
those the command asks for in ``options``, and its own from ``add_arguments``).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from .bulk.job import Job

__all__ = ["SHARED_OPTIONS", "Command", "positive_count"]


def positive_count(text: str) -> int:
    """argparse type: an integer >= 1 (a count below 1 is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

#: the shared options a command may ask for (each has one definition in :mod:`dcbulk.cli`)
SHARED_OPTIONS = ("features", "filter", "basin_to_source", "resume", "max_open_outputs",
                  "verify", "follow_external")


@dataclass(frozen=True)
class Command:
    """A sub-command of ``dcbulk``: its name, texts, options and the job it runs.

    Parameters
    ----------
    name, help, description
        The sub-command's name and its texts for ``dcbulk --help`` and ``dcbulk NAME -h``.
    job
        Builds the job from the parsed arguments (``argparse.Namespace``).
    options
        Shared options it takes, from :data:`SHARED_OPTIONS`.
    add_arguments
        Adds its own arguments to its parser.
    output_help
        The help text of ``-o/--output`` (a directory, or one file for ``join``).
    compression
        For a command with its own compression option (added by ``add_arguments``, e.g.
        ``process``'s ``-c zstd-5``): reads the run's codec spec from the parsed arguments;
        the shared ``--compression`` is then not offered. None: the shared one.
    """

    name: str
    help: str
    description: str
    job: Callable[[argparse.Namespace], Job]
    options: tuple[str, ...] = ()
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    output_help: str = "output directory"
    compression: Callable[[argparse.Namespace], str] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(SHARED_OPTIONS))
        if unknown:
            raise ValueError(f"command {self.name!r}: unknown shared option(s) {unknown}; "
                             f"known: {', '.join(SHARED_OPTIONS)}")
