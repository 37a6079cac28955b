"""Starting the cluster of a run, rendering its job script, and opening the run's client.

dask-jobqueue builds batch clusters from ``jobqueue.<kind>.*`` and validates their keywords;
dcbulk adds only its worker environment (exported in the job prologue), the command line's
sizing, the scale, and one-line errors where distributed would log tracebacks: a failed job
submission (e.g. ``sbatch`` while ``slurmctld`` is down) is waited for and reported at once
(distributed has no public call that waits for it, hence ``SpecCluster._correct_state``),
and no worker within ``dcbulk.worker-timeout`` ends the run with advice. :func:`check_client`
makes every check of :func:`open_client` that needs no cluster (the same functions), so a run
refuses a bad setting before it creates anything in its output location.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from os import PathLike
from typing import Any

import dask
from dask.utils import parse_bytes

from ..engine.client import WORKER_ENVIRON, local_shape, make_local_cluster
from ..errors import ConfigError
from .config import (KINDS, check_jobqueue, check_memory_fractions, duration, jobqueue,
                     setting, use_config_file)
from .probe import probe_scheduler, scheduler_file_address

__all__ = ["check_client", "job_script", "open_client"]

logger = logging.getLogger(__name__)

_STATUS_COMMAND = {"slurm": "squeue -u $USER", "pbs": "qstat -u $USER",
                   "sge": "qstat -u $USER", "lsf": "bjobs", "htcondor": "condor_q"}


def _kind(cluster: str | None) -> str:
    kind = cluster or setting("cluster")
    if kind not in KINDS:
        raise ConfigError(f"unknown cluster kind {kind!r} (dcbulk.cluster or --cluster: "
                          f"{', '.join(KINDS)})")
    return kind


def _batch(kind: str, where: str, threads_per_worker: int | None,
           memory_limit: str | int | None) -> tuple[Any, dict]:
    """The dask-jobqueue class and the keywords dcbulk adds to its configuration: the worker
    environment before the configured prologue, and per-worker sizing as per-job settings."""
    check_jobqueue(kind, where)
    dask_jobqueue = jobqueue()
    from distributed.deploy.local import nprocesses_nthreads
    conf = dask.config.get(f"jobqueue.{kind}")
    kwargs: dict[str, Any] = {"job_script_prologue": [
        *(f"export {k}={shlex.quote(v)}" for k, v in WORKER_ENVIRON.items()),
        *_worker_settings(),
        *(conf.get("job-script-prologue") or [])]}
    resources = dask.config.get("distributed.worker.resources", None) or {}
    if resources:  # e.g. dcbulk process: one dcnum job per worker
        kwargs["worker_extra_args"] = [*(conf.get("worker-extra-args") or []), "--resources",
                                       ",".join(f"{k}={v}" for k, v in resources.items())]
    cores, processes = conf.get("cores"), conf.get("processes")
    if threads_per_worker is not None:
        if not cores or cores % threads_per_worker:
            raise ConfigError(f"{where}: --threads-per-worker {threads_per_worker} must divide "
                              f"jobqueue.{kind}.cores ({cores})")
        processes = kwargs["processes"] = cores // threads_per_worker
    if memory_limit is not None:
        try:
            per_worker = parse_bytes(memory_limit)
        except (ValueError, TypeError, OverflowError) as exc:  # 1e400: infinity
            raise ConfigError(f"--memory-limit {memory_limit!r} is not a size such as 4GiB "
                              f"(a batch job's memory is workers x this)") from exc
        processes = processes or (nprocesses_nthreads(cores)[0] if cores else 1)
        kwargs["memory"] = f"{per_worker * processes}B"
    return getattr(dask_jobqueue, KINDS[kind]), kwargs


def _worker_settings() -> list[str]:
    """Exports for batch workers that must not be daemonic (``distributed.worker.daemon``
    False in this process's configuration, as ``dcbulk process`` sets it: dcnum starts
    processes)."""
    if dask.config.get("distributed.worker.daemon", True):
        return []
    return ["export DASK_DISTRIBUTED__WORKER__DAEMON=False"]


@contextlib.contextmanager
def _submission(cluster: Any, kind: str, where: str) -> Iterator[None]:
    """Around ``scale``: wait until its jobs are submitted; one line if submitting failed.

    ``scale`` submits from a callback whose failure tornado logs as a traceback: the filter
    keeps the exception instead, and waiting for the cluster's next state correction lets
    that callback finish first (they share a lock).
    """
    from distributed.core import Status
    errors: list[BaseException] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            errors.append(record.exc_info[1])
            return False
        return True

    app_log = logging.getLogger("tornado.application")
    app_log.addFilter(keep)
    try:
        yield
        cluster.sync(cluster._correct_state)
    finally:
        app_log.removeFilter(keep)
    failed = [job for job in cluster.workers.values() if getattr(job, "job_id", 1) is None]
    for job in failed:  # left "created", which SpecCluster.close asserts against
        job.status = Status.failed
    if failed or errors:
        text = " ".join(str(e) for e in errors) or "no job id returned"
        detail = " ".join(text.rpartition("stderr:")[2].split()) or " ".join(text.split())
        raise ConfigError(f"{where}: {kind} job submission failed: {detail}")


def _scaling(where: str, n_workers: int | None, jobs: int | None) -> dict:
    """How a batch cluster is scaled, checked: workers or jobs from the command line, else
    ``dcbulk.jobs``, else adaptive between ``dcbulk.minimum-jobs`` and ``maximum-jobs``
    (``minimum_jobs``/``maximum_jobs``, for ``adapt``), else one job."""
    low, high = setting("minimum-jobs"), setting("maximum-jobs")
    fixed = jobs if jobs is not None else setting("jobs")
    for key, value in (("jobs", fixed), ("minimum-jobs", low), ("maximum-jobs", high)):
        if value is not None and (type(value) is not int or value < 0):
            raise ConfigError(f"{where}: dcbulk.{key} must be a whole number, not {value!r}")
    if n_workers is not None:
        return {"n": n_workers}
    if fixed is not None or (low is None and high is None):
        return {"jobs": 1 if fixed is None else fixed}
    if (low or 0) > (high if high is not None else low):
        raise ConfigError(f"{where}: dcbulk.minimum-jobs ({low}) exceeds maximum-jobs ({high})")
    return {"minimum_jobs": low, "maximum_jobs": high}


def _scale(cluster: Any, how: dict) -> dict:
    """Scale ``cluster`` as :func:`_scaling` says; return the bounds to ``adapt`` (or {})."""
    if "minimum_jobs" in how:
        cluster.scale(jobs=max(how["minimum_jobs"] or 0, 1))  # submitted (and checked) first
        return how
    cluster.scale(**how)
    return {}


def _prepare(kind: str, where: str, *, n_workers, threads_per_worker, memory_limit, jobs,
             timeout) -> Callable[[], Any]:
    """Check everything a cluster of ``kind`` needs, starting nothing; return what starts
    it (running, scaled, its jobs submitted; the caller closes it)."""
    check_memory_fractions()
    if kind == "local":
        if jobs is not None:
            raise ConfigError("--jobs applies to batch clusters, not to a local one")
        workers = n_workers or setting("local.n-workers")
        threads = threads_per_worker or setting("local.threads-per-worker")
        local_shape(workers, threads, names=(  # a bound checked before anything starts
            "--workers" if n_workers else "dcbulk.local.n-workers",
            "--threads-per-worker" if threads_per_worker else "dcbulk.local.threads-per-worker"))
        return functools.partial(make_local_cluster, n_workers=workers,
                                 threads_per_worker=threads,
                                 memory_limit=memory_limit or setting("local.memory-limit"))
    cls, kwargs = _batch(kind, where, threads_per_worker, memory_limit)
    submit = cls.job_cls.submit_command.split()[0]
    if shutil.which(submit) is None:
        raise ConfigError(f"{where}: {kind} jobs are submitted with '{submit}', which is not "
                          f"on PATH; run dcbulk on a login node of the {kind} cluster")
    how = _scaling(where, n_workers, jobs)
    duration(timeout or setting("worker-timeout"), where)  # how long _first_worker waits
    return functools.partial(_start_batch, cls, kwargs, kind, where, how)


def _start_batch(cls: Any, kwargs: dict, kind: str, where: str, how: dict) -> Any:
    """The batch cluster ``cls(**kwargs)``, scaled as ``how`` says, its jobs submitted."""
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {cls.__name__}: {' '.join(str(exc).split())}") from exc
    try:
        with _submission(cluster, kind, where):
            bounds = _scale(cluster, how)
        if bounds:
            cluster.adapt(**bounds)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _where(cluster_config: str | PathLike | None) -> str:
    """What a configuration error names: the ``--cluster-config`` file, or dask's config."""
    return os.fspath(cluster_config) if cluster_config else "dask configuration"


def _running_only(**given) -> None:
    """Refuse settings of a cluster to start given with a running scheduler."""
    extra = [k for k, v in given.items() if v is not None]
    if extra:
        raise ConfigError(f"{', '.join(extra)} cannot be combined with a running "
                          f"scheduler (it has its own workers)")


def check_client(*, check: Callable[[Any], None] | None = None, **client_args) -> None:
    """Raise what :func:`open_client` (``client_args``: its arguments) would raise before
    its cluster starts, starting nothing: a run calls it before it creates anything in its
    output location. A running scheduler is connected to and left, ``check(client)``
    called (a job's check of the workers).

    Raises
    ------
    ConfigError
        As :func:`open_client`, for all but a cluster that fails while it starts.
    """
    if client_args.get("scheduler") is not None or client_args.get("scheduler_file") is not None:
        with open_client(**client_args) as (client, _):  # connects, starts nothing
            if check is not None:
                check(client)
        return
    with use_config_file(client_args.get("cluster_config")):
        _prepare(_kind(client_args.get("cluster")), _where(client_args.get("cluster_config")),
                 **{key: client_args.get(key) for key in (
                     "n_workers", "jobs", "threads_per_worker", "memory_limit", "timeout")})


def job_script(*, cluster: str | None = None, cluster_config: str | PathLike | None = None,
               n_workers: int | None = None, threads_per_worker: int | None = None,
               memory_limit: str | int | None = None) -> str:
    """The batch script each job would run (nothing is submitted, no scheduler started).

    For a local cluster, a short description instead. The scheduler address in the script
    is a placeholder; the real one is known once the cluster runs.
    """
    with use_config_file(cluster_config):
        kind = _kind(cluster)
        if kind == "local":
            workers, threads = local_shape(n_workers or setting("local.n-workers"),
                                           threads_per_worker
                                           or setting("local.threads-per-worker"))
            return (f"# LocalCluster: {workers} worker process(es), {threads} thread(s) each, "
                    f"memory_limit={memory_limit or setting('local.memory-limit')}\n"
                    "# worker environment: "
                    + " ".join(f"{k}={v}" for k, v in WORKER_ENVIRON.items()) + "\n")
        where = _where(cluster_config)
        cls, kwargs = _batch(kind, where, threads_per_worker, memory_limit)
        # a job creates its log directory when built: render with a scratch directory so
        # that a dry run leaves nothing behind, then show the configured one
        log_dir = dask.config.get(f"jobqueue.{kind}.log-directory", default=None)
        with tempfile.TemporaryDirectory() as scratch:
            try:
                script = cls.job_cls("tcp://<scheduler-address>:8786", name="dummy-name",
                                     **kwargs, **({"log_directory": scratch} if log_dir else {})
                                     ).job_script()
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {cls.__name__}: {' '.join(str(exc).split())}"
                                  ) from exc
        return script.replace(scratch, str(log_dir)) if log_dir else script


@contextlib.contextmanager
def open_client(*, scheduler: str | None = None, scheduler_file: str | PathLike | None = None,
                cluster: str | None = None, cluster_config: str | PathLike | None = None,
                n_workers: int | None = None, threads_per_worker: int | None = None,
                memory_limit: str | int | None = None, jobs: int | None = None,
                timeout: str | float | None = None) -> Iterator[tuple[Any, Any]]:
    """Yield ``(client, cluster)`` for a run and close what was created here at exit.

    Parameters
    ----------
    scheduler, scheduler_file
        Connect to a running scheduler (``cluster`` is then None); excludes the others.
    cluster
        The kind to start (:data:`KINDS`); default ``dcbulk.cluster`` of dask's config.
    cluster_config
        A dask configuration file merged on top of dask's configuration for the run.
    n_workers, threads_per_worker, memory_limit, jobs
        Overrides of the configuration (None keeps it); ``memory_limit`` is per worker.
    timeout
        How long to wait for the scheduler (default ``distributed.comm.timeouts.connect``)
        or for the first worker of a batch cluster (default ``dcbulk.worker-timeout``).

    Raises
    ------
    ConfigError
        For conflicting arguments, an unreachable scheduler, a bad configuration, a failed
        job submission, or when no batch worker joins in time (with advice).
    """
    from distributed import Client
    if scheduler is not None or scheduler_file is not None:
        _running_only(scheduler_file=scheduler and scheduler_file, cluster=cluster,
                      cluster_config=cluster_config, n_workers=n_workers,
                      threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                      jobs=jobs)
        with _connect(scheduler, scheduler_file, timeout) as client:
            yield client, None
        return
    with use_config_file(cluster_config):
        kind, where = _kind(cluster), _where(cluster_config)
        start = _prepare(kind, where, n_workers=n_workers, jobs=jobs, timeout=timeout,
                         threads_per_worker=threads_per_worker, memory_limit=memory_limit)
        with _closed_if_interrupted():
            running = start()
        try:
            with Client(running) as client:
                if kind != "local":
                    _first_worker(client, kind, where, timeout or setting("worker-timeout"))
                yield client, running
        finally:
            running.close()


@contextlib.contextmanager
def _closed_if_interrupted() -> Iterator[None]:
    """A cluster that Ctrl-C (or SIGTERM) catches while it starts in the block is closed
    here, quietly: it was not made yet, so no context closes it, and distributed's exit
    hook would, with an AssertionError traceback and INFO lines on the terminal. Closed
    here, while the run's log (:func:`~dcbulk.runlog.run_log`) still takes distributed's
    lines (closed at the command's end, a nanny still starting could print one), and the
    processes it spawned are killed first and last: one still unpickling its start when
    its nanny closes prints a traceback on the terminal (its output goes to the run's log
    only once it runs)."""
    from distributed.deploy.spec import SpecCluster
    before, spawned = set(SpecCluster._instances), _children()
    try:
        yield
    except KeyboardInterrupt:
        from distributed.core import Status
        new = [c for c in set(SpecCluster._instances) - before
               if getattr(c, "status", None) != Status.closed]
        if new:  # the command is ending: its workers' start tasks fail unretrieved
            for name in ("distributed", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
            _kill(_children() - spawned)
        for cluster in new:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)
            cluster.shutdown_on_close = False  # the exit hook would try again
        if new:
            _kill(_children() - spawned)
        raise


def _children() -> set:
    """The worker processes multiprocessing spawned from this process (``psutil.Process``;
    not its resource tracker, which they share with the caller's)."""
    import psutil
    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()):
                found.add(child)
    return found


def _kill(processes: set) -> None:
    import psutil
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@contextlib.contextmanager
def _connect(scheduler: str | None, scheduler_file: str | PathLike | None,
             timeout: str | float | None) -> Iterator[Any]:
    from distributed import Client
    target = scheduler if scheduler is not None else os.fspath(scheduler_file)
    if scheduler_file is not None and not os.path.isfile(target):
        raise ConfigError(f"{target}: scheduler file does not exist")
    seconds = duration(timeout or dask.config.get("distributed.comm.timeouts.connect"), target)
    probe_scheduler(scheduler if scheduler is not None else scheduler_file_address(target),
                    seconds)
    try:
        client = Client(scheduler, scheduler_file=scheduler_file and target, timeout=seconds)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{target}: cannot connect to the dask scheduler within "
                          f"{seconds:g} s ({' '.join(str(exc).split())})") from exc
    logger.info("connected to %s; dcbulk's worker environment is not applied to its workers",
                client.scheduler.address)
    with client:
        yield client


def _first_worker(client: Any, kind: str, where: str, timeout: str | float) -> None:
    seconds = duration(timeout, where)
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError as exc:
        queue = dask.config.get(f"jobqueue.{kind}.queue", default=None) or "the default queue"
        raise ConfigError(
            f"{where}: no dask worker joined within {seconds:g} s: the {kind} jobs may still "
            f"wait in {queue} or have failed (check `{_STATUS_COMMAND[kind]}` and the job "
            f"logs; dcbulk.worker-timeout or --timeout waits longer)") from exc
