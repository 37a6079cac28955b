"""``dcbulk process``: dcnum's pipeline over whole archives, one job per measurement.

:func:`process` runs :class:`ProcessJob` on the archive executor; on a worker it runs one
``dcnum.logic.DCNumPipelineJob`` on the source (background, segmentation, features, gating, as
dcnum does it) into the output ``<stem>_dcn.rtdc`` (ChipStream's name), with ``num_procs`` =
the worker's threads. The workers are not daemonic (required since dcnum ran in the worker's
thread and spawned from it; the child process of :mod:`.process_run` no longer needs it), and
one job per worker runs at a time (the worker resource ``dcnum``, see
:func:`cluster_settings`): the job's hooks (:class:`~dcbulk.bulk.Job`) give the executor these
settings, the resources, the check of the workers, the recognition of a finished output
(:meth:`ProcessJob.finished`) and the sweep of dcnum's leftovers. Discovery, the manifest,
resume, progress and per-file isolation are the executor's; dcnum's pipeline identifiers join
the options fingerprint (:meth:`PipelineOptions.identity`), so a changed setting redoes
finished files (refused without ``force``).

Each job runs in a child process of its own (:mod:`.process_run`): one that makes no
progress for ``stall_timeout`` seconds (default 300) or outlives the file's time limit is
killed with its whole process tree, a stalled one is retried, then the file fails alone.
dcnum writes its output as ``<stem>_output_<suffix>.rtdc~`` and renames it into place when
complete; dcbulk gives each job a ``dcbulk-<hex>`` suffix, fsyncs the output after the
rename, and removes the ``*.rtdc~`` files and ``<stem>_dcn.log`` logs that killed jobs left.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace

from ..bulk import ArchiveReport, Job, Target, make_options, run_job
from ..bulk.sources import output_path
from ..cluster.config import distributed_defaults
from ..command import Command
from ..engine.report import Report
from ..errors import (ConfigError, NotRtdcError, OutputExistsError, PlanError,
                      ProcessJobError, describe_failure, one_line)
from ..partials import fsync_path, partial_path
from ..read.inspect import inspect_source
from .process_args import (add_arguments, compression_from_args, pipeline_from_args,
                           resources_from_args)
from .process_options import PipelineOptions, require_dcnum
from .process_run import STALL_TIMEOUT, check_stall_timeout
from .process_run import remove_files as _remove
from .process_run import run_job as _run

__all__ = ["COMMAND", "OUTPUT_SUFFIX", "PipelineOptions", "ProcessJob", "check_workers",
           "cluster_settings", "process"]

#: what ChipStream (and dcnum's default ``path_out``) appends to an output's stem
OUTPUT_SUFFIX = "_dcn"
#: the worker resource one dcnum job holds (workers offer 1: one job per worker at a time)
RESOURCE = "dcnum"
#: dcnum's temporary files of a job of dcbulk (``tmp_suffix`` ``dcbulk-<12 hex>``)
_TILDE_RE = re.compile(r"^(?P<stem>.+)_(?:input_bb|output)_dcbulk-[0-9a-f]{12}\.rtdc~$")
_WORKERS_NEED = ("dcbulk process needs workers that are not daemonic and offer the "
                 "resources {res} (start them with DASK_DISTRIBUTED__WORKER__DAEMON=False "
                 "and --resources {res})")


def output_relpath(relpath: str) -> str:
    """ChipStream's output name: ``sub/M001_data.rtdc`` -> ``sub/M001_data_dcn.rtdc``."""
    stem, ext = os.path.splitext(relpath)
    return f"{stem}{OUTPUT_SUFFIX}{ext or '.rtdc'}"


def cluster_settings(*, resources: dict | None = None) -> dict:
    """dask configuration for a cluster that dcbulk starts for this mode.

    Workers that are not daemonic (see the module text), offering ``resources``
    (default ``{"dcnum": 1}``: one job per worker). A local cluster keeps dcbulk's shape, a
    worker process per core with one thread, so jobs run side by side with ``num_procs=1``
    each: their serial phases (background, writing, copying) overlap, which measured 1.37x
    the serial loop of ``num_procs=2`` jobs on 2 cores where one worker with both cores
    (one job at a time) gave 0.85x. For one or two large measurements ``--workers 1`` gives
    a single job every core. Batch jobs get the same through exported
    ``DASK_DISTRIBUTED__WORKER__*`` variables (:mod:`dcbulk.cluster.connect`).
    """
    return {"distributed.worker.daemon": False,
            "distributed.worker.resources": dict(resources or {RESOURCE: 1})}


def _worker_state(dask_worker) -> dict:
    import multiprocessing
    return {"daemon": multiprocessing.current_process().daemon,
            "resources": dict(dask_worker.state.total_resources)}


def check_workers(client, resources: dict) -> None:
    """Raise a one-line ConfigError unless every worker can run dcnum's jobs."""
    states = client.run(_worker_state)
    if not states:
        raise ConfigError("dcbulk process: the cluster has no workers")
    res = ",".join(f"{k}={v}" for k, v in resources.items())
    bad = sorted(addr for addr, st in states.items() if st["daemon"] or any(
        st["resources"].get(k, 0) < v for k, v in resources.items()))
    if bad:
        raise ConfigError(_WORKERS_NEED.format(res=res) + f"; not so: {', '.join(bad)}")


def dcnum_leftovers(output: str) -> list[str]:
    """dcnum's temporary files of killed dcbulk jobs for ``output`` (``*.rtdc~``, its log)."""
    directory, name = os.path.split(output)
    stem = os.path.splitext(name)[0]
    found = [os.path.join(directory, stem + ".log")]
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found += [os.path.join(directory, n) for n in names
              if (m := _TILDE_RE.match(n)) is not None and m.group("stem") == stem]
    return [p for p in found if os.path.lexists(p)]


def _source_pipeline(source: str) -> tuple[str | None, int, int]:
    """``pipeline:dcnum hash``, ``pipeline:dcnum yield`` and event count of a source.

    This module opens files with HDF5's default locking, as dcnum does: HDF5 refuses a
    second open of a file in one process with other locking flags, and dcnum may hold
    handles longer than its jobs (its HDF5Data leaks some, dcnum#50).
    """
    import h5py
    with h5py.File(source, "r") as h5:
        attrs = h5.attrs
        n = len(h5["events"][next(iter(h5["events"]))]) if len(h5.get("events", ())) else 0
        return attrs.get("pipeline:dcnum hash"), int(attrs.get("pipeline:dcnum yield", -1)), n


def _check_source(source: str) -> None:
    """Refuse in one line naming ``source`` what dcnum's pipeline cannot read (dcnum failed
    with an AttributeError, IndexError or KeyError naming no file): convert's checks of a
    source (:func:`~dcbulk.read.inspect.inspect_source`: not HDF5, no ``events``, a
    malformed layout), then images, events, and the event count dcnum reads."""
    import h5py
    info = inspect_source(source)
    if "image" not in info.features:  # dcnum: an AttributeError
        raise PlanError(f"{source}: has no 'image' feature (own or from a basin); "
                        f"dcnum's pipeline segments images")
    if not info.n_events:  # dcnum: an IndexError
        raise PlanError(f"{source}: holds no events; dcnum's pipeline has none to process")
    with h5py.File(source, "r") as h5:  # HDF5's default locking, as dcnum opens it
        if "experiment:event count" not in h5.attrs:  # dcnum: a KeyError
            raise NotRtdcError(f"{source}: has no 'experiment:event count' attribute, which "
                               f"dcnum reads as its number of events (an .rtdc file has it)")


class ProcessJob(Job):
    """The job of :func:`process`: one dcnum pipeline job per measurement.

    Parameters
    ----------
    pipeline
        dcnum's job keywords (checked).
    resources
        Worker resources each job holds (default ``{"dcnum": 1}``: one job per worker).
    stall_timeout
        Seconds without progress after which a dcnum job is ended (and retried).

    Attributes
    ----------
    child_hook : str or None
        Test-only: ``"module:function"`` each job's child process calls with its recipe
        before the job (:func:`~dcbulk.modes.process_run.run_job`).
    """

    name = "process"
    verb = "processed"
    child_hook: str | None = None

    def __init__(self, pipeline: PipelineOptions, *, resources: dict | None = None,
                 stall_timeout: float = STALL_TIMEOUT):
        self.pipeline = pipeline.check()
        self.fingerprint = pipeline.identity()
        self.resources = dict(resources or {RESOURCE: 1})
        self.stall_timeout = check_stall_timeout(stall_timeout)

    def targets(self, entries, output, options) -> list[Target]:
        """One output per measurement, named as ChipStream names it (``<stem>_dcn.rtdc``)."""
        return [Target(output_path(replace(e, relpath=output_relpath(e.relpath)), output), e,
                       os.path.getsize(e.path)) for e in entries]

    def check_cluster(self, client) -> None:
        """One line (ConfigError) unless every worker is non-daemonic with the resources."""
        check_workers(client, self.resources)

    def cluster_settings(self):
        """dask's configuration for a cluster started for this job (:func:`cluster_settings`)."""
        import dask
        distributed_defaults()  # before the block: else its end removed them
        return dask.config.set(cluster_settings(resources=self.resources))

    def sweep(self, targets) -> int:
        """Remove dcnum's temporary files and logs that killed jobs left (under the lock)."""
        return sum(_remove(dcnum_leftovers(t.output)) for t in targets)

    def dcnum_job(self, source: str, output: str, num_procs: int = 1):
        """The ``DCNumPipelineJob`` of one measurement (what this task runs)."""
        from dcnum.logic import DCNumPipelineJob
        return DCNumPipelineJob(path_in=source, path_out=output, num_procs=num_procs,
                                **self.pipeline.job_kwargs())

    def finished(self, source: str, output: str) -> bool:
        """Whether ``output`` is this pipeline's finished output of ``source`` (for resume).

        dcnum renames its output into place only when complete; it is this job's when its
        ``pipeline:dcnum hash`` is the one this pipeline gives ``source``, its dcnum job
        log names ``source`` as input, and it is newer than the source.
        """
        import h5py
        try:
            expected = self.dcnum_job(source, output).get_ppid(ret_hash=True)[1]
            with h5py.File(output, "r") as h5:
                got = h5.attrs.get("pipeline:dcnum hash")
                inputs = []
                for name, ds in h5.get("logs", {}).items():
                    if name.startswith("dcnum-job-"):
                        doc = json.loads("\n".join(
                            x.decode() if isinstance(x, bytes) else str(x) for x in ds[:]))
                        inputs.append(str(doc.get("job", {}).get("path_in")))
            return (got == expected and source in inputs
                    and os.stat(output).st_mtime >= os.stat(source).st_mtime)
        except Exception:  # unreadable output or source: not a finished output
            return False

    def make(self, target: Target, options, *, overwrite: bool,
             inline_bytes: int = 0) -> Report:
        """Run the measurement's dcnum job (a task on a worker; ``num_procs``: its threads).

        A source that already carries this pipeline (same ``pipeline:dcnum hash``, every
        event kept) is left alone: the report's ``note`` says so (settled as skipped).
        """
        from distributed import get_worker
        source, output = target.source.path, target.output
        t0 = time.perf_counter()
        st = os.stat(source)
        aside = None
        try:
            _check_source(source)
            num_procs = get_worker().state.nthreads
            job = self.dcnum_job(source, output, num_procs=num_procs)
            pphash = job.get_ppid(ret_hash=True)[1]
            have, yielded, n_events = _source_pipeline(source)
            if have == pphash and yielded == n_events:
                return Report(source=source, output="", events=n_events,
                              note=f"source already carries this pipeline "
                                   f"(pipeline:dcnum hash {pphash}); not reprocessed")
            job.validate()
            if os.path.lexists(output):
                if not overwrite:
                    raise OutputExistsError(f"{output}: exists already (use force)")
                aside = partial_path(output)
                os.replace(output, aside)
            _remove(dcnum_leftovers(output))
            _run(source, output, num_procs=num_procs,
                 job_kwargs=self.pipeline.job_kwargs(), stall_timeout=self.stall_timeout,
                 hook=self.child_hook)
            fsync_path(output)  # dcnum's rename made durable: the file, then its directory
            fsync_path(os.path.dirname(output))
            if aside is not None:
                os.unlink(aside)
                aside = None
        except BaseException as exc:  # dcnum's SegmenterNotApplicableError is one
            if aside is not None and not os.path.lexists(output):
                os.replace(aside, output)  # the old output stays when its redo failed
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return Report(source=source, output=output, error=_failure(exc, output),
                          error_type=type(exc))
        return _done(source, output, st, t0)


def _failure(exc: BaseException, output: str) -> str:
    if isinstance(exc, ProcessJobError):  # the child's one line names the error's type
        return one_line(str(exc))
    reasons = getattr(exc, "reasons_list", None)  # dcnum's SegmenterNotApplicableError
    if reasons:
        return f"{type(exc).__name__}: {one_line('; '.join(map(str, reasons)), 300)}"
    return describe_failure(exc, output)


def _done(source: str, output: str, st: os.stat_result, t0: float) -> Report:
    import h5py
    from dcnum.read import get_measurement_identifier
    with h5py.File(source, "r") as h5:
        identifier = get_measurement_identifier(h5)
    with h5py.File(output, "r") as h5:
        events = int(h5.attrs.get("experiment:event count", 0))
    return Report(source=source, output=output, events=events, bytes_in=st.st_size,
                  bytes_out=os.path.getsize(output), identifier=identifier,
                  source_mtime_ns=st.st_mtime_ns, wall_seconds=time.perf_counter() - t0)


def process(sources, output_dir, *, pipeline: PipelineOptions | None = None, client=None,
            resources: dict | None = None, resume: bool = True, force: bool = False,
            include: str = "*.rtdc", max_open_outputs: int | None = None,
            dry_run: bool = False, progress=None, timeout: float | None = None,
            follow_links: bool = False, stall_timeout: float = STALL_TIMEOUT,
            **job_keywords) -> ArchiveReport:
    """Run dcnum's pipeline on every measurement of an archive (the tree is mirrored).

    Parameters
    ----------
    sources
        Files, directories (walked recursively) or glob patterns.
    output_dir
        Where the outputs (``<stem>_dcn.rtdc``, as ChipStream names them) and the
        manifest go.
    pipeline
        The pipeline (:class:`PipelineOptions`); or give dcnum's job keywords directly
        (``data_kwargs``, ``background_code``, ``background_kwargs``, ``segmenter_code``,
        ``segmenter_kwargs``, ``feature_code``, ``feature_kwargs``, ``gate_code``,
        ``gate_kwargs``, ``basin_strategy``, ``compression``), with dcnum's defaults.
    client
        A ``distributed.Client`` whose workers are not daemonic and offer ``resources``;
        by default a LocalCluster of one such worker with a thread per core.
    resources
        Worker resources each job holds (default ``{"dcnum": 1}``: one job per worker);
        e.g. ``{"GPU": 1}`` for a GPU segmenter on workers started with
        ``--resources GPU=1`` (one job per GPU).
    resume, force, include, max_open_outputs, dry_run, progress, timeout, follow_links
        As for :func:`~dcbulk.convert_archive`; ``timeout`` (seconds per file) also ends
        the dcnum job.
    stall_timeout
        Seconds without progress (dcnum's state, its progress, its temporary files' size)
        after which a dcnum job is killed with its processes and run again (3 attempts in
        all; then the file fails with one line).

    Raises
    ------
    UsageError
        dcnum is not installed, or an unknown method or keyword.
    ConfigError
        The workers are daemonic or lack ``resources`` (one line, what they need).
    """
    require_dcnum()
    if pipeline is None:
        pipeline = PipelineOptions(**job_keywords)
    elif job_keywords:
        raise TypeError(f"give either pipeline= or dcnum's job keywords, not both "
                        f"({', '.join(sorted(job_keywords))})")
    job = ProcessJob(pipeline, resources=resources, stall_timeout=stall_timeout)
    options = make_options(compression=pipeline.compression.replace("-", ":"))
    return run_job(job, sources, output_dir, options, include=include, resume=resume,
                   force=force, dry_run=dry_run, client=client, progress=progress,
                   max_open_outputs=max_open_outputs, timeout=timeout,
                   follow_links=follow_links)


COMMAND = Command(
    name="process", help="run dcnum's pipeline on every measurement (outputs *_dcn.rtdc)",
    description="Background correction, segmentation, feature extraction and gating "
    "with dcnum, one job per measurement on the dask workers (the tree is mirrored, "
    "outputs named <stem>_dcn.rtdc as by chipstream-cli). Options as chipstream-cli; "
    "defaults as dcnum's DCNumPipelineJob. Needs pip install 'dcbulk[dcnum]'. "
    "Re-running resumes.",
    job=lambda ns: ProcessJob(pipeline_from_args(ns), resources=resources_from_args(ns),
                              stall_timeout=ns.stall_timeout),
    options=("resume", "max_open_outputs"), add_arguments=add_arguments,
    compression=compression_from_args)
