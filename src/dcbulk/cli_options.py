"""Command-line options about hostile input: their argument types and checks.

``--timeout-per-file`` and ``--follow-links`` (every command that walks sources and writes one
output per file) and the refusal of a ``--report``/``--performance-report`` path that is a
symbolic link, before any work starts.
"""
from __future__ import annotations

import argparse

__all__ = ["add_source_args", "check_report_paths", "seconds"]


def seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_source_args(p: argparse.ArgumentParser) -> None:
    """``--follow-links`` and ``--timeout-per-file`` on a sub-command's parser."""
    p.add_argument("--follow-links", action="store_true",
                   help="also take symbolic links that lead out of the source directories "
                   "(skipped with a warning by default)")
    p.add_argument("--timeout-per-file", type=seconds, metavar="SECONDS",
                   help="a file taking longer fails alone, without output (its task is "
                   "abandoned; the worker thread may run on, but commits nothing)")


def check_report_paths(*paths: str | None) -> None:
    """Refuse report paths that are symbolic links (one line, exit 3), before any work.

    Raises
    ------
    LinkRefusedError
        Naming the first such path.
    """
    from .nofollow import refuse_link
    for path in paths:
        if path:
            refuse_link(path)
