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

from ._version import __version__
from .cli_options import add_source_args, check_report_paths
from .cli_process import add_process_parser, process_call
from .errors import DcbulkError, UsageError, one_line, printable

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
    from .codec.table import choices_text
    return f"{choices_text()}; each followed by Fletcher-32 [zstd:5]"


def _parser() -> argparse.ArgumentParser:
    compression_help = _compression_help()
    top = argparse.ArgumentParser(
        prog="dcbulk", description="Convert archives of deformability cytometry (.rtdc) files "
        "in parallel with dask.", epilog="Exit status: 0 ok, 1 some files failed, 2 usage, "
        "3 error, 130 interrupted.")
    top.add_argument("--version", action="version", version=f"dcbulk {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="convert files, directories or globs into DST",
                       description="Convert .rtdc files (directories are walked, the tree is "
                       "mirrored in DST). Re-running resumes: finished files are skipped.")
    c.add_argument("sources", nargs="+", metavar="SRC", help="file, directory or glob")
    c.add_argument("-o", "--output", required=True, metavar="DST", help="output directory")
    c.add_argument("--include", default="*.rtdc", help="file pattern in directories [*.rtdc]")
    c.add_argument("--features", type=_csv, metavar="A,B",
                   help="features to write (default: all of each file's own features)")
    c.add_argument("--filter", metavar="EXPR",
                   help="keep events matching e.g. 'deform < 0.1 & area_um > 20'")
    c.add_argument("--compression", default="zstd:5",
                   help=compression_help)
    c.add_argument("--basin-to-source", action="store_true",
                   help="add a basin pointing back to each source file")
    c.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files finished by an earlier run [on]")
    c.add_argument("--force", action="store_true",
                   help="redo all files, replace outputs, accept changed options")
    c.add_argument("--max-open-outputs", type=_positive, metavar="N")
    c.add_argument("--report", metavar="JSON", help="write a JSON summary per file")
    c.add_argument("--performance-report", metavar="HTML", help="write dask's performance report")
    c.add_argument("--html-report", metavar="HTML", help="write the run's report as one HTML "
                   "file that opens offline (also for a failed or interrupted run)")
    c.add_argument("--dry-run", action="store_true",
                   help="show what would be done (and the batch job script), do nothing")
    c.add_argument("--verify", action="store_true",
                   help="verify each output against its source before recording it as done")
    c.add_argument("--follow-external", action="store_true",
                   help="follow HDF5 external links, virtual datasets and external storage "
                        "in sources (refused by default: the file fails)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_source_args(c)
    _add_cluster_args(c)

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
    _add_mode_parsers(sub)
    add_process_parser(sub, _add_cluster_args)
    return top


def _add_mode_parsers(sub) -> None:
    """condense, split, join: the options of convert where they apply."""
    k = sub.add_parser("condense", help="scalar features only, with a basin to each source",
                       description="As dclab-condense, for whole archives: every scalar "
                       "feature, metadata and basins, and a basin to the source for images, "
                       "masks and traces. Re-running resumes.")
    s = sub.add_parser("split", help="split files into files of at most N events",
                       description="As dclab-split: <stem>_0001.rtdc, ... each complete "
                       "alone, written in parallel.")
    j = sub.add_parser("join", help="join measurements into one file",
                       description="As dclab-join: ordered by recording date and time, "
                       "metadata of the earliest, time offset by each start, logs of all.")
    for p in (k, s, j):
        p.add_argument("sources", nargs="+", metavar="SRC", help="file, directory or glob")
        p.add_argument("--include", default="*.rtdc", help="file pattern in directories [*.rtdc]")
        p.add_argument("--compression", default="zstd:5", help=_compression_help())
        p.add_argument("--filter", metavar="EXPR",
                       help="keep events matching e.g. 'deform < 0.1 & area_um > 20'")
        p.add_argument("--force", action="store_true", help="replace existing outputs")
        p.add_argument("--report", metavar="JSON", help="write a JSON summary per file")
        p.add_argument("--performance-report", metavar="HTML",
                       help="write dask's performance report")
        p.add_argument("--html-report", metavar="HTML", help="write the run's report as one "
                       "HTML file that opens offline")
        p.add_argument("--dry-run", action="store_true", help="show what would be done")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        add_source_args(p)
        _add_cluster_args(p)
    for p in (k, s):
        p.add_argument("-o", "--output", required=True, metavar="DST", help="output directory")
        p.add_argument("--max-open-outputs", type=_positive, metavar="N")
    for p in (s, j):
        p.add_argument("--features", type=_csv, metavar="A,B",
                       help="features to write (default: each file's own features)")
    k.add_argument("--ancillary", action="store_true",
                   help="also compute dclab's ancillary features (needs dclab on the workers)")
    k.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files finished by an earlier run [on]")
    s.add_argument("--events-per-file", type=int, default=10000, metavar="N",
                   help="maximum events per output [10000]")
    s.add_argument("--include-empty-boundary-images", action="store_true",
                   help="keep an all-zero first or last image (dropped, as by dclab-split)")
    j.add_argument("-o", "--output", required=True, metavar="OUT.rtdc", help="output file")


def _client_args(ns) -> dict:
    return {"scheduler": ns.scheduler, "scheduler_file": ns.scheduler_file,
            "cluster": ns.cluster, "cluster_config": ns.cluster_config, "n_workers": ns.workers,
            "threads_per_worker": ns.threads_per_worker, "memory_limit": ns.memory_limit,
            "jobs": ns.jobs, "timeout": ns.timeout}


def _print_summary(report, out, log_path: str | None = None, page: str | None = None) -> None:
    counts = report.to_dict()["counts"]
    print(f"dcbulk: {counts['done']} converted, {counts['skipped']} skipped (finished before), "
          f"{counts['failed']} failed in {report.wall_seconds:,.1f} s -> "
          f"{printable(report.output_dir)}" + (f"; page: {page}" if page else "")
          + (f"; log: {printable(log_path)}" if log_path else ""), file=out)
    for f in report.failed:
        print(f"  FAILED {printable(f.source)}: {one_line(f.error)}", file=out)


def _mode_call(ns):
    """The function and keyword arguments of a mode sub-command (dcbulk.modes)."""
    from . import modes
    kwargs = dict(include=ns.include, filter=ns.filter, compression=ns.compression,
                  force=ns.force, timeout=ns.timeout_per_file, follow_links=ns.follow_links)
    if ns.command == "condense":
        kwargs.update(ancillary=ns.ancillary, resume=ns.resume,
                      max_open_outputs=ns.max_open_outputs)
    elif ns.command == "split":
        kwargs.update(features=ns.features, events_per_file=ns.events_per_file,
                      include_empty_boundary_images=ns.include_empty_boundary_images,
                      max_open_outputs=ns.max_open_outputs)
    else:
        kwargs.update(features=ns.features)
    return getattr(modes, ns.command), kwargs


def _convert(ns, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from .bulk import output_lock
    from .bulk.usage import check_memory_limit
    from .cluster import job_script, setting
    from .partials import clean_partials
    from .monitor import dashboard_page, live_page, observers, recorded
    from .progress import ArchiveProgress
    from .runlog import LOG_DIRNAME, logged_client, run_log
    check_memory_limit(ns.memory_limit)
    check_report_paths(ns.report, getattr(ns, "performance_report", None),
                       getattr(ns, "html_report", None))
    settings = contextlib.nullcontext  # dask configuration of the cluster this run starts
    if ns.command == "process":
        convert_archive, kwargs, settings = process_call(ns)
    elif ns.command in ("condense", "split", "join"):
        convert_archive, kwargs = _mode_call(ns)
    else:
        from .bulk import convert_archive
        kwargs = dict(include=ns.include, features=ns.features, filter=ns.filter,
                      compression=ns.compression, resume=ns.resume, force=ns.force,
                      basin_to_source=ns.basin_to_source,
                      max_open_outputs=ns.max_open_outputs, verify=getattr(ns, "verify", False),
                      follow_external=getattr(ns, "follow_external", False),
                      timeout=getattr(ns, "timeout_per_file", None),
                      follow_links=getattr(ns, "follow_links", False))
    # decide first (cheap, writes nothing): usage errors and option conflicts fail before
    # any cluster starts, and a run with nothing left to do starts none
    preview = convert_archive(ns.sources, ns.output, dry_run=True, **kwargs)
    if ns.dry_run:
        for f in preview.files:
            print(printable(f"{f.status:8s} {f.source} -> {f.output} ({f.reason})"), file=out)
        if ns.cluster or ns.cluster_config or (setting("cluster") != "local" and not (
                ns.scheduler or ns.scheduler_file)):
            with settings():  # the script a run submits (process: its workers' settings)
                print(job_script(cluster=ns.cluster, cluster_config=ns.cluster_config,
                                 n_workers=ns.workers, threads_per_worker=ns.threads_per_worker,
                                 memory_limit=ns.memory_limit), file=out)
        return EXIT_OK
    # a second run on DST stops here, before a cluster starts (join writes one file: no lock)
    one_file = ns.command == "join"
    lock = contextlib.nullcontext() if one_file else output_lock(ns.output)
    log_home = os.path.dirname(os.path.abspath(ns.output)) if one_file else ns.output
    with lock:
        n_files = len(preview.files)
        total = sum(f.bytes_in or os.path.getsize(f.source) for f in preview.files)
        state = _run_state(ns, kwargs, preview, total, one_file)
        if not any(f.status == "planned" for f in preview.files):
            with recorded(state, getattr(ns, "html_report", None)):  # nothing to do: no cluster
                report = convert_archive(ns.sources, ns.output, progress=state, **kwargs)
            return _finish(ns, report, out)
        try:
            with recorded(state, getattr(ns, "html_report", None)), \
                    run_log(os.path.join(log_home, LOG_DIRNAME)) as log_path, settings(), \
                    dashboard_page(), \
                    logged_client(log_path, **_client_args(ns)) as (client, cluster), \
                    live_page(state, client, cluster, stream=err, quiet=ns.quiet) as page:
                if not ns.quiet:
                    print(f"dcbulk {__version__}: {n_files} files, {total / 1e6:,.0f} MB; "
                          f"dashboard: {client.dashboard_link}"
                          + (f"; dcbulk page: {page}" if page else ""), file=err, flush=True)
                progress = None if ns.quiet else ArchiveProgress(n_files, total, stream=err)
                perf = contextlib.nullcontext()
                if ns.performance_report:
                    from distributed import performance_report
                    # inline: Bokeh's JavaScript in the file, so that it opens offline
                    perf = performance_report(filename=ns.performance_report, mode="inline")
                try:
                    with perf:
                        report = convert_archive(ns.sources, ns.output, client=client,
                                                 progress=observers(progress, state), **kwargs)
                finally:
                    if progress is not None:
                        progress.close()
        finally:
            if not (ns.scheduler or ns.scheduler_file or one_file):
                # the cluster this run started is closed: none of its writers is left, so
                # what they left (e.g. after Ctrl-C) goes now, with the lock still held
                clean_partials(ns.output)
    return _finish(ns, report, out, log_path, page)


def _run_state(ns, kwargs: dict, preview, total: int, one_file: bool):
    """The run's state for its dashboard page and HTML report."""
    from .bulk.manifest import MANIFEST_NAME
    from .monitor import RunState
    state = RunState(command=ns.command, total_files=len(preview.files), total_bytes=total,
                     options={"sources": ns.sources, "output": ns.output, **kwargs},
                     manifest=None if one_file else os.path.join(os.path.abspath(ns.output),
                                                                 MANIFEST_NAME),
                     outputs=[f.output for f in preview.files if f.status == "planned"])
    state.json_report = ns.report and os.path.abspath(ns.report)
    return state


def _write_report(path: str, doc: dict) -> None:
    from .nofollow import write_nofollow
    write_nofollow(path, (json.dumps(doc, indent=2, default=str) + "\n").encode())


def _finish(ns, report, out, log_path: str | None = None, page: str | None = None) -> int:
    if ns.report:
        _write_report(ns.report, {**report.to_dict(), "page": page})
    _print_summary(report, out, log_path, page)
    return EXIT_OK if report.ok else EXIT_FAILED_FILES


def _demo(ns, out=None) -> int:
    out = out or sys.stdout
    from .synth import make_archive
    root = os.path.abspath(ns.dir)
    src, dst = os.path.join(root, "archive"), os.path.join(root, "converted")
    if not os.path.isdir(src):
        print(f"dcbulk demo: writing a sample archive of {ns.files} files to {src} ...", file=out)
        make_archive(src, ns.files, events=(max(10, ns.events // 20), ns.events), seed=1,
                     compression="none")
    ns.sources, ns.output = [src], dst
    for key, val in dict(include="*.rtdc", features=None, filter=None, compression="zstd:5",
                         basin_to_source=False, resume=True, force=False,
                         max_open_outputs=None, report=os.path.join(root, "report.json"),
                         performance_report=os.path.join(root, "performance-report.html"),
                         html_report=os.path.join(root, "report.html"),
                         dry_run=False, quiet=False).items():
        setattr(ns, key, val)
    status = _convert(ns, out=out)
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
    from .read.layout import file_lines, file_summary
    if os.path.isdir(ns.file):
        from .bulk import discover_sources
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
    from .runlog import log_dir_for, logged_client, run_log
    from .verify import verify, verify_pairs
    from .monitor import RunState, dashboard_page, live_page, recorded
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
            run_log(log_dir_for(ns.output), kind="verify") as log_path, dashboard_page(), \
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    from .runlog import terminal_warnings
    try:
        with terminal_warnings():
            if ns.command in ("convert", "condense", "split", "join", "process"):
                return _convert(ns)
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
