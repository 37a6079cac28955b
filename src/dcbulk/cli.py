"""The ``dcbulk`` command: a thin layer over the Python API.

Exit status: 0 success; 1 some files failed (the others were converted); 2 bad usage;
3 a dcbulk error stopped the run (bad configuration, sources, manifest); 130 interrupted
(Ctrl-C); 143 terminated (SIGTERM: ``kill``, ``timeout``, ``scancel``), ended as Ctrl-C ends
a run: its cluster closed, no partial file left. Only the first of them stops the command:
further ones while it stops change nothing (:mod:`dcbulk.interrupts`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from ._version import __version__
from .bulk import (CheckPlan, RunPlan, check_plan, discover_sources, execute, forget,
                   make_options, planned)
from .bulk.inprocess import in_process_run
from .bulk.manifest import MANIFEST_NAME
from .bulk.report import ArchiveReport
from .bulk.usage import check_memory_limit
from .cli_options import check_report_paths, check_reports_spare
from .cli_parser import build_parser as _parser
from .clock import command_seconds
from .cluster import check_client, job_script, setting
from .command import Command
from .errors import DcbulkError, UsageError, one_line, printable
from .interrupts import Terminated, stopping
from .modes.verify import VerifyJob, VerifyReport, pairs_of
from .monitor import (RunState, dashboard_page, live_page, observers, performance_report,
                      recorded)
from .progress import ArchiveProgress
from .read.layout import file_lines, file_summary
from .runlog import LOG_DIRNAME, log_dir_for, logged_client, run_log, terminal_warnings
from .synth import make_archive

__all__ = ["main", "EXIT_OK", "EXIT_FAILED_FILES", "EXIT_USAGE", "EXIT_ERROR",
           "EXIT_TERMINATED"]

EXIT_OK, EXIT_FAILED_FILES, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 128 + signal.SIGTERM


def _client_args(ns) -> dict:
    return {"scheduler": ns.scheduler, "scheduler_file": ns.scheduler_file,
            "cluster": ns.cluster, "cluster_config": ns.cluster_config, "n_workers": ns.workers,
            "threads_per_worker": ns.threads_per_worker, "memory_limit": ns.memory_limit,
            "jobs": ns.jobs, "timeout": ns.timeout}


def _print_summary(report, out, log_path: str | None = None, page: str | None = None,
                   verb: str = "converted", where: str | None = None) -> None:
    counts = report.to_dict()["counts"]
    print(f"dcbulk: {counts['done']} {verb}, {counts['skipped']} skipped (finished before), "
          f"{counts['failed']} failed in {command_seconds():,.1f} s -> "
          f"{printable(where or report.output_dir)}" + (f"; page: {page}" if page else "")
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
    ns.resumable = job.resumable  # what an interrupted run's line advises
    _check_cluster(ns, job)
    with planned(job, ns.sources, ns.output, options, include=ns.include,
                 resume=getattr(ns, "resume", True), force=ns.force,
                 dry_run=ns.dry_run, follow_links=ns.follow_links) as plan:
        if ns.dry_run:
            _print_plan(ns, plan, out)
            return EXIT_OK
        check_reports_spare((ns.report, ns.performance_report, ns.html_report),
                            [p for t in plan.targets for p in (t.source.path, t.output)])
        shown = {"sources": ns.sources, "output": ns.output, "include": ns.include,
                 "force": ns.force, "resume": getattr(ns, "resume", True),
                 **plan.options.fingerprint_dict()}
        report, log_path, page = _execute(ns, plan, shown, err,
                                          os.path.join(plan.output_dir, LOG_DIRNAME), job.name)
        where = plan.targets[0].output if job.one_file and plan.targets else None  # join's file
    return _finish(ns, report, out, log_path, page, job.verb, where)


def _execute(ns, plan: RunPlan, shown: dict, err, log_dir: str, log_kind: str, *,
             fallback: bool = False, doc: Callable[[ArchiveReport], dict] = ArchiveReport.to_dict
             ) -> tuple[ArchiveReport, str | None, str | None]:
    """Execute ``plan`` for a sub-command: its log (:func:`~dcbulk.runlog.run_log` of
    ``log_kind`` in ``log_dir``, or with ``fallback`` in the temporary directory when
    ``log_dir`` cannot be written), cluster, dashboard page (showing the options ``shown``),
    banner, progress and reports, however the run ends (:func:`~dcbulk.monitor.recorded`;
    ``--report``: ``doc`` of the run's report, or of what settled before it was interrupted
    or failed); returns the report, the log's path and the page's URL."""
    state = _run_state(ns, plan, shown)
    log_path = page = report = None
    settled = ArchiveReport(output_dir=plan.output_dir)  # the report of a run ended early

    def json_doc() -> dict:
        if report is None:
            settled.wall_seconds = time.perf_counter() - plan.t0
        return {**doc(settled if report is None else report), "page": page}

    def collect(result, done: int, total: int) -> None:
        settled.files.append(result)

    @contextlib.contextmanager
    def open_client(in_process: bool):  # started only when there is something to do
        nonlocal log_path, page
        with run_log(log_dir, kind=log_kind, fallback=fallback,
                     cluster=not in_process) as log_path:
            if in_process:
                if not ns.quiet:
                    print(f"dcbulk {__version__}: {_plural(len(plan.decisions), 'file')}, "
                          f"{plan.total_bytes / 1e6:,.1f} MB; made by threads of this "
                          f"process (no cluster, no dashboard)", file=err, flush=True)
                with in_process_run(plan.marker_dir) as client:
                    yield client
                return
            with _open_cluster(ns, state, plan, log_path, err) as (client, page):
                yield client

    progress = (None if ns.quiet else
                ArchiveProgress(len(plan.decisions), plan.total_bytes, stream=err))
    try:
        with recorded(state, ns.html_report, json_doc):
            report = execute(plan, open_client=open_client,
                             progress=observers(progress, state, collect),
                             max_open_outputs=getattr(ns, "max_open_outputs", None),
                             timeout=getattr(ns, "timeout_per_file", None),
                             in_process=False if _cluster_asked(ns) else None)
    finally:
        if progress is not None:
            progress.close()
        ns.unwritten_reports = list(state.unwritten)  # the exit status says so
    return report, log_path, page


def _check_cluster(ns, job) -> None:
    """Before the run creates anything in its output location (directory, lock, manifest,
    log): what would stop its cluster from being set up (a bad setting, a scheduler that
    does not answer, workers that cannot run ``job``) is one line, and nothing is left. A
    run that asks for no cluster may be made in this process (distributed not imported):
    the default local cluster's settings are checked when it starts."""
    if not getattr(ns, "dry_run", False) and _cluster_asked(ns):
        with job.cluster_settings():  # as the cluster would be started
            check_client(**_client_args(ns), check=job.check_cluster)


def _cluster_asked(ns) -> bool:
    """Whether the command line (or dask's configuration) asks for a cluster of some kind:
    any of :func:`_client_args` but ``--timeout``, or dask's performance report."""
    return (any(value for key, value in _client_args(ns).items() if key != "timeout")
            or bool(getattr(ns, "performance_report", None)) or setting("cluster") != "local")


@contextlib.contextmanager
def _open_cluster(ns, state: RunState, plan: RunPlan, log_path: str, err):
    """The run's cluster with its pages; yields ``(client, dcbulk page URL or None)``."""
    with dashboard_page(), \
            logged_client(log_path, **_client_args(ns)) as (client, cluster), \
            live_page(state, client, cluster, stream=err, quiet=ns.quiet) as page:
        if not ns.quiet:
            print(f"dcbulk {__version__}: {_plural(len(plan.decisions), 'file')}, "
                  f"{plan.total_bytes / 1e6:,.0f} MB; dashboard: {client.dashboard_link}"
                  + (f"; dcbulk page: {page}" if page else ""), file=err, flush=True)
        with performance_report(state, getattr(ns, "performance_report", None)):
            yield client, page


def _run_state(ns, plan: RunPlan, shown: dict) -> RunState:
    """The run's state for its dashboard page and HTML report (``shown``: its options)."""
    state = RunState(command=ns.command, total_files=len(plan.decisions),
                     total_bytes=plan.total_bytes, options=shown,
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


def _finish(ns, report, out, log_path: str | None = None, page: str | None = None,
            verb: str = "converted", where: str | None = None) -> int:
    _print_summary(report, out, log_path, page, verb, where)
    return _status(ns, report.ok)


def _status(ns, ok: bool) -> int:
    """The exit status of a run that ended: 0, 1 when a file failed (differs, for verify),
    3 when a report it was asked for could not be written (its line is printed; automation
    must not read an old report as this run's)."""
    if getattr(ns, "unwritten_reports", None):
        return EXIT_ERROR
    return EXIT_OK if ok else EXIT_FAILED_FILES


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


def _verify(ns, out=None, err=None) -> int:
    """``dcbulk verify``: the pairs decided before any cluster starts (usage errors,
    missing sources), then checked by the executor as every job is."""
    out, err = out or sys.stdout, err or sys.stderr
    check_report_paths(ns.report, ns.html_report)
    pairs, checked = pairs_of(ns.output, ns.against, features=ns.features, filter=ns.filter,
                              follow_external=ns.follow_external)
    check_reports_spare((ns.report, ns.html_report),
                        [p for pair in pairs
                         for p in (pair.output, pair.source, *(pair.inputs or ())) if p])
    _check_cluster(ns, VerifyJob())
    plan: CheckPlan = check_plan(VerifyJob(), checked, VerifyJob.targets_of(pairs))
    shown = {"output": " ".join(ns.output), "against": ns.against, "features": ns.features,
             "filter": ns.filter}
    done, _log_path, page = _execute(ns, plan, shown, err, log_dir_for(ns.output[0]),
                                     "verify", fallback=True,
                                     doc=lambda r: VerifyReport.of(r, pairs).to_dict())
    report = VerifyReport.of(done, pairs)
    for line in report.problems:
        print(printable(line), file=out)
    counts = report.to_dict()["counts"]
    alone = (f", {counts['alone']} sound but compared with nothing (dcnum pipeline output: no "
             f"dcbulk provenance log, no source)" if counts["alone"] else "")
    print(f"dcbulk verify: {_plural(counts['files'], 'file')}, {counts['equal']} equal, "
          f"{counts['mismatched']} differ{alone} ({_plural(counts['problems'], 'problem')}) "
          f"in {command_seconds():,.1f} s" + (f"; page: {page}" if page else ""), file=out)
    return _status(ns, report.ok)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _interrupted(ns) -> str:
    """The one line of an interrupted run (Ctrl-C)."""
    again = ("re-run the same command" if ns.command == "verify" else "re-run the same "
             "command to resume" if getattr(ns, "resumable", True) else "its outputs written "
             "are complete (no manifest: split, join); re-run with --force to make them all")
    running = getattr(ns, "scheduler", None) or getattr(ns, "scheduler_file", None)
    if running:  # not dcbulk's cluster: its tasks were cancelled, the cluster left running
        return (f"dcbulk: interrupted; this run's tasks were cancelled on the cluster of "
                f"{running}, which keeps running (a file being written there may still be "
                f"finished; the next run removes its leftovers); {again}")
    return f"dcbulk: interrupted; {again}"


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
    # the first Ctrl-C (or SIGTERM) stops the command, further ones wait for that stop:
    # also while its line is printed
    with stopping():
        return _run_main(ns)


def _run_main(ns) -> int:
    """:func:`main` once the arguments are parsed: each outcome one line and a status."""
    try:
        with terminal_warnings():
            if getattr(ns, "run_command", None) is not None:
                return _run_command(ns)
            if ns.command == "demo":
                return _demo(ns)
            if ns.command == "verify":
                return _verify(ns)
            if ns.command == "forget":
                forgotten = forget(ns.output, ns.sources)
                print(f"dcbulk forget: {_plural(len(forgotten), 'source')} forgotten in "
                      f"{os.path.abspath(ns.output)}")
                return EXIT_OK
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
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        line = _interrupted(ns)
        print(line.replace("interrupted", "terminated (SIGTERM)", 1) if terminated else line,
              file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


if __name__ == "__main__":
    with stopping(keep=True):  # the interpreter's exit is part of an interrupted run's stop
        sys.exit(main())
