"""The ``dcbulk`` command: a thin layer over the Python API.

Exit status: 0 success; 1 some files failed (the others were converted); 2 bad usage;
3 a dcbulk error stopped the run (bad configuration, sources, manifest); 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence

from distributed import performance_report

from ._version import __version__
from .bulk import discover_sources, execute, make_options, planned
from .bulk.manifest import MANIFEST_NAME
from .bulk.usage import check_memory_limit
from .cli_options import add_source_args, check_report_paths
from .cluster import job_script, setting
from .codec import choices_text
from .command import Command
from .errors import DcbulkError, UsageError, one_line, printable
from .monitor import RunState, dashboard_page, live_page, observers, recorded
from .progress import ArchiveProgress
from .read.layout import file_lines, file_summary
from .registry import commands
from .runlog import LOG_DIRNAME, log_dir_for, logged_client, run_log, terminal_warnings
from .synth import make_archive
from .modes.verify import verify, verify_pairs
from .nofollow import write_nofollow

__all__ = ["main", "EXIT_OK", "EXIT_FAILED_FILES", "EXIT_USAGE", "EXIT_ERROR"]

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _positive(text: str) -> int:
    """argparse type: an integer >= 1 (0 or -1 workers would start a cluster that never works)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    g.add_argument("--workers", type=_positive, metavar="N", help="workers (default: cores, or the "
                   "jobs' processes)")
    g.add_argument("--threads-per-worker", type=_positive, metavar="N")
    g.add_argument("--memory-limit", metavar="M", help="per worker, e.g. 4GB")
    g.add_argument("--jobs", type=_positive, metavar="N",
                   help="batch jobs to submit [dcbulk.jobs, 1]")
    g.add_argument("--timeout", metavar="T", help="wait this long for the scheduler [dask's "
                   "distributed.comm.timeouts.connect] or the first batch worker "
                   "[dcbulk.worker-timeout]")


def _compression_help() -> str:
    """The ``--compression`` help: every row of the codec table."""
    return f"{choices_text()}; each followed by Fletcher-32 [zstd:5]"


def _add_shared(p: argparse.ArgumentParser, cmd: Command) -> None:
    """The options every job command takes, and the shared ones ``cmd`` asks for."""
    p.add_argument("sources", nargs="+", metavar="SRC", help="file, directory or glob")
    p.add_argument("-o", "--output", required=True, metavar="DST", help=cmd.output_help)
    p.add_argument("--include", default="*.rtdc", help="file pattern in directories [*.rtdc]")
    if cmd.compression is None:  # else the command's own (added by its add_arguments)
        p.add_argument("--compression", default="zstd:5", help=_compression_help())
    wants = set(cmd.options)
    if "features" in wants:
        p.add_argument("--features", type=_csv, metavar="A,B",
                       help="features to write (default: all of each file's own features)")
    if "filter" in wants:
        p.add_argument("--filter", metavar="EXPR",
                       help="keep events matching e.g. 'deform < 0.1 & area_um > 20'")
    if "basin_to_source" in wants:
        p.add_argument("--basin-to-source", action="store_true",
                       help="add a basin pointing back to each source file")
    if "resume" in wants:
        p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="skip files finished by an earlier run [on]")
    p.add_argument("--force", action="store_true",
                   help="redo all files, replace outputs, accept changed options")
    if "max_open_outputs" in wants:
        p.add_argument("--max-open-outputs", type=_positive, metavar="N")
    p.add_argument("--report", metavar="JSON", help="write a JSON summary per file")
    p.add_argument("--performance-report", metavar="HTML",
                   help="write dask's performance report")
    p.add_argument("--html-report", metavar="HTML", help="write the run's report as one HTML "
                   "file that opens offline (also for a failed or interrupted run)")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be done (and the batch job script), do nothing")
    if "verify" in wants:
        p.add_argument("--verify", action="store_true",
                       help="verify each output against its source before recording it as done")
    if "follow_external" in wants:
        p.add_argument("--follow-external", action="store_true",
                       help="follow HDF5 external links, virtual datasets and external "
                            "storage in sources (refused by default: the file fails)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_source_args(p)


def _parser(cmds: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command (the job ones: ``cmds``, default the registry's)."""
    cmds = commands() if cmds is None else cmds
    top = argparse.ArgumentParser(
        prog="dcbulk", description="Convert archives of deformability cytometry (.rtdc) files "
        "in parallel with dask.", epilog="Exit status: 0 ok, 1 some files failed, 2 usage, "
        "3 error, 130 interrupted.")
    top.add_argument("--version", action="version", version=f"dcbulk {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in cmds:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        _add_shared(p, cmd)
        if cmd.add_arguments is not None:
            cmd.add_arguments(p)
        _add_cluster_args(p)
        p.set_defaults(run_command=cmd)

    v = sub.add_parser("verify", help="prove outputs equal their sources (every chunk read)",
                       description="Compare outputs with their sources: every chunk is read "
                       "(checksums checked) and every feature, contour, attribute, log, table "
                       "and basin compared. OUT is a file (with --against) or an output "
                       "directory (pairs and options from its manifest). Exit status: 0 all "
                       "equal, 1 any mismatch, 2 usage, 3 error.")
    v.add_argument("output", metavar="OUT", help="output file or output directory")
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

    d = sub.add_parser("demo", help="build a sample archive, convert it, show the results")
    d.add_argument("--dir", default="dcbulk-demo", help="working directory [dcbulk-demo]")
    d.add_argument("--files", type=int, default=12)
    d.add_argument("--events", type=int, default=2000, help="largest file's events [2000]")
    _add_cluster_args(d)

    i = sub.add_parser("info", help="features, events, chunks, filters and basins of a file "
                       "(a directory: one line per file)")
    i.add_argument("file")
    return top


def _client_args(ns) -> dict:
    return {"scheduler": ns.scheduler, "scheduler_file": ns.scheduler_file,
            "cluster": ns.cluster, "cluster_config": ns.cluster_config, "n_workers": ns.workers,
            "threads_per_worker": ns.threads_per_worker, "memory_limit": ns.memory_limit,
            "jobs": ns.jobs, "timeout": ns.timeout}


def _print_summary(report, out, log_path: str | None = None, page: str | None = None,
                   verb: str = "converted") -> None:
    counts = report.to_dict()["counts"]
    print(f"dcbulk: {counts['done']} {verb}, {counts['skipped']} skipped (finished before), "
          f"{counts['failed']} failed in {report.wall_seconds:,.1f} s -> "
          f"{printable(report.output_dir)}" + (f"; page: {page}" if page else "")
          + (f"; log: {printable(log_path)}" if log_path else ""), file=out)
    for f in report.failed:
        print(f"  FAILED {printable(f.source)}: {one_line(f.error)}", file=out)


def _run_command(ns, out=None, err=None) -> int:
    """Run a job sub-command: options parsed once, the run planned once, then executed."""
    out, err = out or sys.stdout, err or sys.stderr
    cmd: Command = ns.run_command
    check_memory_limit(ns.memory_limit)
    check_report_paths(ns.report, ns.performance_report, ns.html_report)
    options = make_options(features=getattr(ns, "features", None),
                           filter=getattr(ns, "filter", None),
                           compression=(ns.compression if cmd.compression is None
                                        else cmd.compression(ns)),
                           basin_to_source=getattr(ns, "basin_to_source", False),
                           follow_external=getattr(ns, "follow_external", False))
    job = cmd.job(ns)
    with planned(job, ns.sources, ns.output, options, include=ns.include,
                 resume=getattr(ns, "resume", True), force=ns.force,
                 dry_run=ns.dry_run, follow_links=ns.follow_links) as plan:
        if ns.dry_run:
            _print_plan(ns, plan, out)
            return EXIT_OK
        state = _run_state(ns, plan)
        log_path = page = None

        @contextlib.contextmanager
        def open_client():  # started only when there is something to make
            nonlocal log_path, page
            with run_log(os.path.join(os.path.dirname(plan.output) if job.one_file
                                      else plan.output, LOG_DIRNAME),
                         kind=job.name) as log_path, \
                    dashboard_page(), \
                    logged_client(log_path, **_client_args(ns)) as (client, cluster), \
                    live_page(state, client, cluster, stream=err, quiet=ns.quiet) as page:
                if not ns.quiet:
                    print(f"dcbulk {__version__}: {len(plan.decisions)} files, "
                          f"{plan.total_bytes / 1e6:,.0f} MB; dashboard: "
                          f"{client.dashboard_link}"
                          + (f"; dcbulk page: {page}" if page else ""), file=err, flush=True)
                # inline: Bokeh's JavaScript in the file, so that it opens offline
                with (performance_report(filename=ns.performance_report, mode="inline")
                      if ns.performance_report else contextlib.nullcontext()):
                    yield client

        progress = (None if ns.quiet else
                    ArchiveProgress(len(plan.decisions), plan.total_bytes, stream=err))
        try:
            with recorded(state, ns.html_report):
                report = execute(plan, open_client=open_client,
                                 progress=observers(progress, state),
                                 max_open_outputs=getattr(ns, "max_open_outputs", None),
                                 timeout=ns.timeout_per_file)
        finally:
            if progress is not None:
                progress.close()
    return _finish(ns, report, out, log_path, page, job.verb)


def _run_state(ns, plan) -> RunState:
    """The run's state for its dashboard page and HTML report."""
    state = RunState(command=ns.command, total_files=len(plan.decisions),
                     total_bytes=plan.total_bytes,
                     options={"sources": ns.sources, "output": ns.output,
                              "include": ns.include, "force": ns.force,
                              "resume": getattr(ns, "resume", True),
                              **plan.options.fingerprint_dict()},
                     manifest=(None if plan.manifest is None
                               else os.path.join(plan.output_dir, MANIFEST_NAME)),
                     outputs=[step.target.output for step in plan.steps])
    state.json_report = ns.report and os.path.abspath(ns.report)
    return state


def _print_plan(ns, plan, out) -> None:
    """``--dry-run``: what would be done, and the batch job script where one is used."""
    for f in plan.files:
        print(printable(f"{f.status:8s} {f.source} -> {f.output} ({f.reason})"), file=out)
    if ns.cluster or ns.cluster_config or (setting("cluster") != "local" and not (
            ns.scheduler or ns.scheduler_file)):
        with plan.job.cluster_settings():  # the script a run submits, with its job's settings
            print(job_script(cluster=ns.cluster, cluster_config=ns.cluster_config,
                             n_workers=ns.workers,
                             threads_per_worker=ns.threads_per_worker,
                             memory_limit=ns.memory_limit), file=out)


def _write_report(path: str, doc: dict) -> None:
    write_nofollow(path, (json.dumps(doc, indent=2, default=str) + "\n").encode())


def _finish(ns, report, out, log_path: str | None = None, page: str | None = None,
            verb: str = "converted") -> int:
    if ns.report:
        _write_report(ns.report, {**report.to_dict(), "page": page})
    _print_summary(report, out, log_path, page, verb)
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _demo(ns, out=None) -> int:
    out = out or sys.stdout
    root = os.path.abspath(ns.dir)
    src, dst = os.path.join(root, "archive"), os.path.join(root, "converted")
    if not os.path.isdir(src):
        print(f"dcbulk demo: writing a sample archive of {ns.files} files to {src} ...", file=out)
        make_archive(src, ns.files, events=(max(10, ns.events // 20), ns.events), seed=1,
                     compression="none")
    # the convert command's defaults, with this demo's archive and reports
    defaults = _parser().parse_args(["convert", src, "-o", dst])
    for key, val in vars(defaults).items():
        if not hasattr(ns, key):
            setattr(ns, key, val)
    ns.sources, ns.output = [src], dst
    ns.report = os.path.join(root, "report.json")
    ns.performance_report = os.path.join(root, "performance-report.html")
    ns.html_report = os.path.join(root, "report.html")
    status = _run_command(ns, out=out)
    print(f"dcbulk demo: outputs in {dst}\n  JSON report: {ns.report}\n  HTML report: "
          f"{ns.html_report}\n  dask performance report: "
          f"{ns.performance_report}\n  inspect a file with: dcbulk info "
          f"{next(iter(sorted(_walk(dst))), dst)}\n  run it again to see resume skip every file.",
          file=out)
    return status


def _walk(root: str):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".rtdc"):
                yield os.path.join(dirpath, name)


def _info(ns, out=None) -> int:
    """``dcbulk info``: never a traceback for a bad file (one line each; see the README)."""
    out = out or sys.stdout
    if os.path.isdir(ns.file):
        # as convert walks it: FIFOs, devices, sockets and links out of it are skipped
        # (one warning line each), never opened
        status = EXIT_OK
        for entry in discover_sources([ns.file]):
            line, ok = file_summary(entry.path)
            print(printable(line), file=out)
            status = status if ok else EXIT_FAILED_FILES
        return status
    print("\n".join(printable(line) for line in file_lines(ns.file)), file=out)
    return EXIT_OK


def _verify(ns, out=None) -> int:
    out = out or sys.stdout
    # what to compare, before any cluster starts (usage errors, missing sources)
    check_report_paths(ns.report, getattr(ns, "performance_report", None), ns.html_report)
    pairs = verify_pairs(ns.output, ns.against, features=ns.features, filter=ns.filter,
                         follow_external=getattr(ns, "follow_external", False))
    state = RunState(command="verify", total_files=len(pairs),
                     total_bytes=sum(os.path.getsize(p.output) for p in pairs
                                     if os.path.isfile(p.output)),
                     options={"output": ns.output, "against": ns.against,
                              "features": ns.features, "filter": ns.filter},
                     outputs=[p.output for p in pairs])
    state.json_report = ns.report and os.path.abspath(ns.report)
    with recorded(state, ns.html_report), \
            run_log(log_dir_for(ns.output), kind="verify", fallback=True) as log_path, \
            dashboard_page(), \
            logged_client(log_path, **_client_args(ns)) as (client, cluster), \
            live_page(state, client, cluster, quiet=ns.quiet) as page:
        report = verify(pairs, client=client, progress=state)
    if ns.report:
        _write_report(ns.report, {**report.to_dict(), "page": page})
    for line in report.problems:
        print(printable(line), file=out)
    counts = report.to_dict()["counts"]
    print(f"dcbulk verify: {_plural(counts['files'], 'file')}, {counts['equal']} equal, "
          f"{counts['mismatched']} differ ({_plural(counts['problems'], 'problem')}) "
          f"in {report.wall_seconds:,.1f} s" + (f"; page: {page}" if page else ""), file=out)
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def main(argv: Sequence[str] | None = None, *,
         modes: Sequence[Command] | None = None) -> int:
    """Run the command line; return the exit status.

    ``modes`` replaces the job sub-commands of :func:`dcbulk.registry.commands` (e.g. to
    try a new mode before it has its line in the registry).
    """
    parser = _parser(modes)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    try:
        with terminal_warnings():
            if getattr(ns, "run_command", None) is not None:
                return _run_command(ns)
            if ns.command == "demo":
                return _demo(ns)
            if ns.command == "verify":
                return _verify(ns)
            return _info(ns)
    except UsageError as exc:
        print(f"dcbulk: usage error: {one_line(exc, 1000)}", file=sys.stderr)
        return EXIT_USAGE
    except DcbulkError as exc:
        print(f"dcbulk: error: {one_line(exc, 1000)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. "dcbulk info FILE | head"
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keep Python's exit flush quiet)
        return EXIT_OK
    except KeyboardInterrupt:
        print("dcbulk: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
