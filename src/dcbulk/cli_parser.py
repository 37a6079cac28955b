"""The argument parser of the ``dcbulk`` command: every sub-command and its options.

The job sub-commands come from :mod:`dcbulk.registry` (one :class:`~dcbulk.command.Command`
each): the options every job takes, the shared ones it asks for (one row each in
:data:`_SHARED`), its own, and the cluster options. ``verify``, ``demo`` and ``info`` are
added here. Running the parsed command is :mod:`dcbulk.cli`'s.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._version import __version__
from .cli_options import add_source_args
from .cluster.config import duration
from .codec import choices_text
from .command import Command, positive_count
from .errors import ConfigError
from .registry import commands

__all__ = ["build_parser"]


def _csv(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:  # '' or ',': not "all features"
        raise argparse.ArgumentTypeError(f"no name in {text!r}")
    return names


#: the shared options a command may ask for (:data:`dcbulk.command.SHARED_OPTIONS`):
#: name -> (flags, add_argument's keywords)
_SHARED = {
    "features": (("--features",), dict(
        type=_csv, metavar="A,B",
        help="features to write (default: all of each file's own features)")),
    "filter": (("--filter",), dict(
        metavar="EXPR", help="keep events matching e.g. 'deform < 0.1 & area_um > 20'")),
    "basin_to_source": (("--basin-to-source",), dict(
        action="store_true", help="add a basin pointing back to each source file")),
    "resume": (("--resume",), dict(
        action=argparse.BooleanOptionalAction, default=True,
        help="skip files finished by an earlier run [on]")),
    "max_open_outputs": (("--max-open-outputs",), dict(type=positive_count, metavar="N")),
    "verify": (("--verify",), dict(
        action="store_true",
        help="verify each output against its source before recording it as done")),
    "follow_external": (("--follow-external",), dict(
        action="store_true", help="follow HDF5 external links, virtual datasets and external "
        "storage in sources (refused by default: the file fails)")),
}


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (default: dcbulk.cluster of dask's configuration, "
                             "else a LocalCluster on this machine)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--scheduler", metavar="ADDRESS", help="connect to a running scheduler")
    x.add_argument("--scheduler-file", metavar="FILE",
                   help="connect via a scheduler file (dask scheduler --scheduler-file, dask-mpi)")
    x.add_argument("--cluster-config", metavar="YAML",
                   help="dask configuration file loaded on top of dask's own (jobqueue: and "
                   "dcbulk: sections; see cluster_configs/)")
    g.add_argument("--cluster", choices=("local", "slurm", "pbs", "sge", "lsf", "htcondor"),
                   help="start this cluster from dask's configuration (jobqueue.<kind>.*)")
    g.add_argument("--workers", type=positive_count, metavar="N", help="workers (default: cores, or the "
                   "jobs' processes)")
    g.add_argument("--threads-per-worker", type=positive_count, metavar="N")
    g.add_argument("--memory-limit", metavar="M", help="per worker, e.g. 4GB")
    g.add_argument("--jobs", type=positive_count, metavar="N",
                   help="batch jobs to submit [dcbulk.jobs, 1]")
    g.add_argument("--timeout", metavar="T", type=_timeout, help="wait this long for the scheduler [dask's "
                   "distributed.comm.timeouts.connect] or the first batch worker "
                   "[dcbulk.worker-timeout]")


def _timeout(text: str) -> str:
    """argparse type of ``--timeout``: a duration dask reads, finite and above 0 (``abc``,
    ``-5`` or ``nan`` were taken without a word where no scheduler uses it: a local run)."""
    try:
        seconds = duration(text, "--timeout")
    except ConfigError:
        seconds = None
    if seconds is None or not seconds > 0:
        raise argparse.ArgumentTypeError(f"not a duration such as '30s' or '10 minutes': "
                                         f"{text!r}")
    return text


def _compression_help() -> str:
    """The ``--compression`` help: every row of the codec table."""
    return f"{choices_text()}; each followed by Fletcher-32 [zstd:5]"


def _add_wanted(p: argparse.ArgumentParser, cmd: Command, names: tuple[str, ...]) -> None:
    """Those of the shared options ``names`` that ``cmd`` asks for (in this order)."""
    for name in names:
        if name in cmd.options:
            flags, kwargs = _SHARED[name]
            p.add_argument(*flags, **kwargs)


def _add_shared(p: argparse.ArgumentParser, cmd: Command) -> None:
    """The options every job command takes, and the shared ones ``cmd`` asks for."""
    p.add_argument("sources", nargs="+", metavar="SRC", help="file, directory or glob")
    p.add_argument("-o", "--output", required=True, metavar="DST", help=cmd.output_help)
    p.add_argument("--include", default="*.rtdc", help="file pattern in directories [*.rtdc]")
    if cmd.compression is None:  # else the command's own (added by its add_arguments)
        p.add_argument("--compression", default="zstd:5", help=_compression_help())
    _add_wanted(p, cmd, ("features", "filter", "basin_to_source", "resume"))
    p.add_argument("--force", action="store_true",
                   help="redo all files, replace outputs, accept changed options")
    _add_wanted(p, cmd, ("max_open_outputs",))
    p.add_argument("--report", metavar="JSON", help="write a JSON summary per file")
    p.add_argument("--performance-report", metavar="HTML",
                   help="write dask's performance report")
    p.add_argument("--html-report", metavar="HTML", help="write the run's report as one HTML "
                   "file that opens offline (also for a failed or interrupted run)")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be done (and the batch job script), do nothing")
    _add_wanted(p, cmd, ("verify", "follow_external"))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_source_args(p)


def _add_verify(sub) -> None:
    v = sub.add_parser("verify", help="prove outputs equal their sources (every chunk read)",
                       description="Compare outputs with their sources: every chunk is read "
                       "(checksums checked) and every feature, contour, attribute, log, table "
                       "and basin compared. OUT is a file (against --against, or the source "
                       "and options its provenance log names) or an output directory (pairs "
                       "and options from its manifest); several are checked in one run. Exit "
                       "status: 0 all equal, 1 any mismatch, 2 usage, 3 error.")
    v.add_argument("output", metavar="OUT", nargs="+",
                   help="output files or output directories")
    v.add_argument("--against", metavar="SRC", help="the source of a single output file "
                   "(default: the source and options its provenance log names)")
    v.add_argument("--features", type=_csv, metavar="A,B",
                   help="with --against: features the file was converted with (default: all)")
    v.add_argument("--filter", metavar="EXPR",
                   help="with --against: filter the file was converted with")
    v.add_argument("--follow-external", action="store_true",
                   help="with --against: the file was converted with --follow-external")
    v.add_argument("--report", metavar="JSON", help="write the verdicts as JSON")
    v.add_argument("--html-report", metavar="HTML", help="write the run's report as one HTML "
                   "file that opens offline")
    v.add_argument("-q", "--quiet", action="store_true",
                   help="no progress output (verify prints only its problems and summary)")
    _add_cluster_args(v)


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (its own print the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: usage error: {message} (see {self.prog} --help)\n")


def build_parser(cmds: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command (the job ones: ``cmds``, default the registry's)."""
    cmds = commands() if cmds is None else cmds
    top = _Parser(
        prog="dcbulk", description="Convert archives of deformability cytometry (.rtdc) files "
        "in parallel with dask.", epilog="Exit status: 0 ok, 1 some files failed, 2 usage, "
        "3 error, 130 interrupted, 143 terminated (SIGTERM).")
    top.add_argument("--version", action="version", version=f"dcbulk {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in cmds:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        _add_shared(p, cmd)
        if cmd.add_arguments is not None:
            cmd.add_arguments(p)
        _add_cluster_args(p)
        p.set_defaults(run_command=cmd)
    _add_verify(sub)
    f = sub.add_parser("forget", help="drop sources left out on purpose from an output "
                       "directory's manifest (verify names them no more)",
                       description="Forget sources without an output in OUT (their conversion "
                       "failed, or a run was killed before making them) that are left out of "
                       "the archive on purpose, so dcbulk verify OUT no longer names them. "
                       "A later run that finds such a source makes it again.")
    f.add_argument("output", metavar="OUT", help="the output directory")
    f.add_argument("sources", metavar="SOURCE", nargs="+",
                   help="sources as dcbulk verify names them (or their relative paths)")
    d = sub.add_parser("demo", help="build a sample archive, convert it, show the results")
    d.add_argument("--dir", default="dcbulk-demo", help="working directory [dcbulk-demo]")
    d.add_argument("--files", type=int, default=12)
    d.add_argument("--events", type=int, default=2000, help="largest file's events [2000]")
    _add_cluster_args(d)
    i = sub.add_parser("info", help="features, events, chunks, filters and basins of a file "
                       "(a directory: one line per file)")
    i.add_argument("file")
    return top
