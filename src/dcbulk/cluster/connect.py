"""Starting the cluster of a run, rendering its job script, and opening the run's client.

dask-jobqueue builds batch clusters from ``jobqueue.<kind>.*`` and validates their keywords;
dcbulk adds only its worker environment (exported in the job prologue), the command line's
sizing, the scale, and one-line errors where distributed would log tracebacks: a failed job
submission (e.g. ``sbatch`` while ``slurmctld`` is down) is waited for and reported at once
(distributed has no public call that waits for it, hence ``SpecCluster._correct_state``),
and no worker within ``dcbulk.worker-timeout`` ends the run with advice.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from os import PathLike
from typing import Any

import dask

from ..errors import ConfigError
from .config import KINDS, check_jobqueue, setting, use_config_file

__all__ = ["job_script", "open_client"]

logger = logging.getLogger(__name__)

_STATUS_COMMAND = {"slurm": "squeue -u $USER", "pbs": "qstat -u $USER",
                   "sge": "qstat -u $USER", "lsf": "bjobs", "htcondor": "condor_q"}


def _kind(cluster: str | None) -> str:
    kind = cluster or setting("cluster")
    if kind not in KINDS:
        raise ConfigError(f"unknown cluster kind {kind!r} (dcbulk.cluster or --cluster: "
                          f"{', '.join(KINDS)})")
    return kind


def _job_kwargs(kind: str, where: str, *, threads_per_worker: int | None,
                memory_limit: str | int | None) -> dict:
    """Keywords for the dask-jobqueue class beyond its configuration: the worker environment
    before the configured prologue, and per-worker sizing turned into per-job settings."""
    from dask.utils import parse_bytes
    from distributed.deploy.local import nprocesses_nthreads

    from ..engine.client import WORKER_ENVIRON
    get = lambda key: dask.config.get(f"jobqueue.{kind}.{key}", default=None)  # noqa: E731
    exports = [f"export {k}={shlex.quote(v)}" for k, v in WORKER_ENVIRON.items()]
    kwargs: dict[str, Any] = {"job_script_prologue": [*exports,
                                                      *(get("job-script-prologue") or [])]}
    cores, processes = get("cores"), get("processes")
    if threads_per_worker is not None:
        if not cores or cores % threads_per_worker:
            raise ConfigError(f"{where}: --threads-per-worker {threads_per_worker} must divide "
                              f"jobqueue.{kind}.cores ({cores})")
        processes = kwargs["processes"] = cores // threads_per_worker
    if memory_limit is not None:
        try:
            per_worker = parse_bytes(memory_limit)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--memory-limit {memory_limit!r} is not a size such as 4GiB "
                              f"(a batch job's memory is workers x this)") from exc
        processes = processes or (nprocesses_nthreads(cores)[0] if cores else 1)
        kwargs["memory"] = f"{per_worker * processes}B"
    return kwargs


def _scale(cluster: Any, where: str, *, n_workers: int | None, jobs: int | None) -> dict:
    """Ask for the jobs (command line, then ``dcbulk.*``, else one job); return adapt's bounds."""
    low, high = setting("minimum-jobs"), setting("maximum-jobs")
    fixed = jobs if jobs is not None else setting("jobs")
    for key, value in (("jobs", fixed), ("minimum-jobs", low), ("maximum-jobs", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise ConfigError(f"{where}: dcbulk.{key} must be a non-negative integer, "
                              f"not {value!r}")
    if n_workers is not None:
        cluster.scale(n=n_workers)
        return {}
    if fixed is not None or (low is None and high is None):
        cluster.scale(jobs=1 if fixed is None else fixed)
        return {}
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: dcbulk.minimum-jobs ({low}) exceeds dcbulk.maximum-jobs "
                          f"({high})")
    cluster.scale(jobs=max(low or 0, 1))
    return {"minimum_jobs": low, "maximum_jobs": high}


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


def _start(kind: str, where: str, *, n_workers, threads_per_worker, memory_limit, jobs):
    """The running cluster of ``kind``, scaled and its jobs submitted; the caller closes it."""
    if kind == "local":
        from ..engine.client import make_local_cluster
        return make_local_cluster(
            n_workers=n_workers or setting("local.n-workers"),
            threads_per_worker=threads_per_worker or setting("local.threads-per-worker"),
            memory_limit=memory_limit or setting("local.memory-limit"))
    check_jobqueue(kind, where)
    import dask_jobqueue
    cls = getattr(dask_jobqueue, KINDS[kind])
    submit = cls.job_cls.submit_command.split()[0]
    if shutil.which(submit) is None:
        raise ConfigError(f"{where}: {kind} jobs are submitted with '{submit}', which is not "
                          f"on PATH; run dcbulk on a login node of the {kind} cluster")
    kwargs = _job_kwargs(kind, where, threads_per_worker=threads_per_worker,
                         memory_limit=memory_limit)
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {cls.__name__}: {' '.join(str(exc).split())}") from exc
    try:
        with _submission(cluster, kind, where):
            bounds = _scale(cluster, where, n_workers=n_workers, jobs=jobs)
        if bounds:
            cluster.adapt(**bounds)
    except BaseException:
        cluster.close()
        raise
    return cluster


def job_script(*, cluster: str | None = None, cluster_config: str | PathLike | None = None,
               n_workers: int | None = None, threads_per_worker: int | None = None,
               memory_limit: str | int | None = None) -> str:
    """The batch script each job would run (nothing is submitted, no scheduler started).

    For a local cluster, a short description instead. The scheduler address in the script
    is a placeholder; the real one is known once the cluster runs.
    """
    from ..engine.client import WORKER_ENVIRON
    with use_config_file(cluster_config):
        kind = _kind(cluster)
        if kind == "local":
            workers = n_workers or setting("local.n-workers") or \
                f"{os.cpu_count() or 1} (one per core)"
            return (f"# LocalCluster: {workers} worker process(es), "
                    f"{threads_per_worker or setting('local.threads-per-worker')} thread(s) "
                    f"each, memory_limit={memory_limit or setting('local.memory-limit')}\n"
                    "# worker environment: "
                    + " ".join(f"{k}={v}" for k, v in WORKER_ENVIRON.items()) + "\n")
        where = os.fspath(cluster_config) if cluster_config else "dask configuration"
        check_jobqueue(kind, where)
        import dask_jobqueue
        cls = getattr(dask_jobqueue, KINDS[kind])
        kwargs = _job_kwargs(kind, where, threads_per_worker=threads_per_worker,
                             memory_limit=memory_limit)
        # a job creates its log_directory when built: render with a scratch directory so
        # that a dry run leaves nothing behind, then show the configured one
        log_dir = dask.config.get(f"jobqueue.{kind}.log-directory", default=None)
        with tempfile.TemporaryDirectory() as scratch:
            try:
                job = cls.job_cls("tcp://<scheduler-address>:8786", name="dummy-name",
                                  **kwargs, **({"log_directory": scratch} if log_dir else {}))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {cls.__name__}: {' '.join(str(exc).split())}"
                                  ) from exc
            script = job.job_script()
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
    from dask.utils import parse_timedelta
    from distributed import Client
    given = {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
             "memory_limit": memory_limit, "jobs": jobs, "cluster": cluster,
             "cluster_config": cluster_config}
    if scheduler is not None or scheduler_file is not None:
        extra = [k for k, v in given.items() if v is not None]
        if scheduler is not None and scheduler_file is not None:
            extra.insert(0, "scheduler_file")
        if extra:
            raise ConfigError(f"{', '.join(extra)} cannot be combined with a running "
                              f"scheduler (it has its own workers)")
        target = scheduler if scheduler is not None else os.fspath(scheduler_file)
        if scheduler_file is not None and not os.path.isfile(target):
            raise ConfigError(f"{target}: scheduler file does not exist")
        seconds = parse_timedelta(timeout or dask.config.get("distributed.comm.timeouts.connect"),
                                  default="s")
        try:
            client = Client(scheduler, scheduler_file=scheduler_file and target,
                            timeout=seconds)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{target}: cannot connect to the dask scheduler within "
                              f"{seconds:g} s ({' '.join(str(exc).split())})") from exc
        logger.info("connected to %s; dcbulk's worker environment is not applied to its "
                    "workers", client.scheduler.address)
        try:
            yield client, None
        finally:
            client.close()
        return
    with use_config_file(cluster_config):
        kind = _kind(cluster)
        where = os.fspath(cluster_config) if cluster_config else "dask configuration"
        running = _start(kind, where, n_workers=n_workers, threads_per_worker=threads_per_worker,
                         memory_limit=memory_limit, jobs=jobs)
        try:
            client = Client(running)
            try:
                if kind != "local":
                    _first_worker(client, kind, where, timeout or setting("worker-timeout"))
                yield client, running
            finally:
                client.close()
        finally:
            running.close()


def _first_worker(client: Any, kind: str, where: str, timeout: str | float) -> None:
    from dask.utils import parse_timedelta
    try:
        seconds = parse_timedelta(timeout, default="s")
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{where}: worker timeout {timeout!r} is not a duration such as "
                          f"'10 minutes'") from exc
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError as exc:
        queue = dask.config.get(f"jobqueue.{kind}.queue", default=None) or "the default queue"
        raise ConfigError(
            f"{where}: no dask worker joined within {seconds:g} s: the {kind} jobs may still "
            f"wait in {queue} or have failed (check `{_STATUS_COMMAND[kind]}` and the job "
            f"logs; dcbulk.worker-timeout or --timeout waits longer)") from exc
