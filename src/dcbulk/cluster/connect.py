"""Starting the cluster of a ClusterConfig, rendering its job script, and opening the client of a run."""
from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import tempfile
import shlex
import shutil
import types
from collections.abc import Iterator
from os import PathLike
from typing import Any

from ..errors import ConfigError
from .config import ClusterConfig, default_cluster_config, load_cluster_config

__all__ = ["make_cluster", "job_script", "open_client"]

logger = logging.getLogger(__name__)

_STATUS_COMMAND = types.MappingProxyType({"slurm": "squeue -u $USER", "pbs": "qstat -u $USER"})


# -- building ----------------------------------------------------------------------------
def _parameters(*callables: Any) -> set[str]:
    names: set[str] = set()
    for func in callables:
        for name, param in inspect.signature(func).parameters.items():
            if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) and name != "self":
                names.add(name)
    return names


def _reject_unknown(config: ClusterConfig, allowed: set[str], target: str) -> None:
    for key in config.cluster:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{config.where}: unknown option cluster.{key} for "
                              f"{target}{hint}")


def _jobqueue_class(kind: str):
    import dask_jobqueue
    return {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]


def _jobqueue_kwargs(config: ClusterConfig) -> tuple[Any, dict, set[str]]:
    """The cluster class, its keyword arguments (worker environment merged into the
    prologue) and the names that only the cluster, not the job, accepts."""
    from dask_jobqueue.core import JobQueueCluster

    from ..engine.client import WORKER_ENVIRON
    cls = _jobqueue_class(config.kind)
    job_names = set()
    for klass in cls.job_cls.__mro__:
        if "__init__" in vars(klass):
            job_names |= _parameters(klass.__init__)
    cluster_only = _parameters(JobQueueCluster.__init__) - job_names
    managed = {"job_cls", "scheduler", "name", "n_workers", "loop", "asynchronous",
               "scheduler_cls"}  # set by dcbulk or dask_jobqueue, or through scale:
    _reject_unknown(config, (job_names | cluster_only) - managed, cls.__name__)
    kwargs = {k: v for k, v in config.cluster.items() if v is not None}
    exports = [f"export {k}={shlex.quote(v)}" for k, v in WORKER_ENVIRON.items()]
    kwargs["job_script_prologue"] = exports + list(kwargs.get("job_script_prologue") or [])
    return cls, kwargs, cluster_only


def _local_kwargs(config: ClusterConfig) -> dict:
    from distributed import LocalCluster, Nanny, Worker
    if "processes" in config.cluster:
        raise ConfigError(f"{config.where}: cluster.processes cannot be set: dcbulk's local "
                          f"clusters always run worker processes (set n_workers)")
    allowed = _parameters(LocalCluster.__init__, Nanny.__init__, Worker.__init__)
    _reject_unknown(config, allowed - {"worker_class", "scheduler_ip", "scheduler_port",
                                       "loop", "asynchronous", "start"}, "LocalCluster")
    return dict(config.cluster)


def make_cluster(config: ClusterConfig):
    """Start the cluster of ``config`` and apply its scale.

    Local: :func:`dcbulk.engine.client.make_local_cluster` (process workers with dcbulk's
    worker environment). SLURM/PBS: ``SLURMCluster``/``PBSCluster`` whose job scripts export
    :data:`dcbulk.engine.client.WORKER_ENVIRON`, then ``scale(jobs=...)`` or
    ``adapt(minimum_jobs=..., maximum_jobs=...)``. The caller closes the cluster.

    Raises
    ------
    ConfigError
        For unknown options, a batch cluster without a scale, or a missing submit command.
    """
    if config.kind == "local":
        from ..engine.client import make_local_cluster
        kwargs = _local_kwargs(config)
        return make_local_cluster(n_workers=kwargs.pop("n_workers", None),
                                  threads_per_worker=kwargs.pop("threads_per_worker", None) or 1,
                                  memory_limit=kwargs.pop("memory_limit", "auto"), **kwargs)
    if not config.scale:
        raise ConfigError(f"{config.where}: scale is empty; set scale.jobs (or minimum_jobs/"
                          f"maximum_jobs), or pass the number of workers")
    cls, kwargs, _ = _jobqueue_kwargs(config)
    submit = cls.job_cls.submit_command
    if shutil.which(submit) is None:
        raise ConfigError(f"{config.where}: kind {config.kind} submits workers with "
                          f"'{submit}', which is not on PATH; run dcbulk on a login node of "
                          f"the {config.kind} cluster")
    try:
        cluster = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config.where}: {cls.__name__}: "
                          f"{' '.join(str(exc).split())}") from exc
    try:
        scale = config.scale
        if "jobs" in scale:
            cluster.scale(jobs=scale["jobs"])
        elif "workers" in scale:
            cluster.scale(n=scale["workers"])
        else:
            cluster.adapt(minimum_jobs=scale.get("minimum_jobs"),
                          maximum_jobs=scale.get("maximum_jobs"))
    except BaseException:
        cluster.close()
        raise
    logger.info("%s", config.describe())
    return cluster


def job_script(config: ClusterConfig) -> str:
    """The batch script each job would run (nothing is submitted, no scheduler started).

    For local clusters, a short description instead. The scheduler address in the script is
    a placeholder; the real one is known once the cluster runs.

    Raises
    ------
    ConfigError
        For options the cluster class does not accept.
    """
    if config.kind == "local":
        from ..engine.client import WORKER_ENVIRON
        kwargs = _local_kwargs(config)
        workers = kwargs.pop("n_workers", None) or f"{os.cpu_count() or 1} (one per core)"
        lines = [f"# {config.describe()}",
                 f"# LocalCluster: {workers} worker process(es), "
                 f"{kwargs.pop('threads_per_worker', None) or 1} thread(s) each, "
                 f"memory_limit={kwargs.pop('memory_limit', 'auto')}",
                 *(f"# {k}={v!r}" for k, v in sorted(kwargs.items())),
                 "# worker environment: " + " ".join(f"{k}={v}"
                                                     for k, v in WORKER_ENVIRON.items())]
        return "\n".join(lines) + "\n"
    cls, kwargs, cluster_only = _jobqueue_kwargs(config)
    job_kwargs = {k: v for k, v in kwargs.items() if k not in cluster_only}
    # dask-jobqueue creates log_directory when a job is built: render with a scratch
    # directory so that a dry run leaves nothing behind, then show the configured one
    log_dir = job_kwargs.get("log_directory")
    with tempfile.TemporaryDirectory() as scratch:
        if log_dir:
            job_kwargs["log_directory"] = scratch
        try:
            job = cls.job_cls("tcp://<scheduler-address>:8786", name="dummy-name",
                              **job_kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config.where}: {cls.__name__}: "
                              f"{' '.join(str(exc).split())}") from exc
        script = job.job_script()
    return script.replace(scratch, str(log_dir)) if log_dir else script


# -- client ------------------------------------------------------------------------------
@contextlib.contextmanager
def open_client(*, scheduler: str | None = None, scheduler_file: str | PathLike | None = None,
                cluster_config: str | PathLike | None = None, n_workers: int | None = None,
                threads_per_worker: int | None = None, memory_limit: str | int | None = None,
                timeout: str | float = "60s") -> Iterator[tuple[Any, Any]]:
    """Yield ``(client, cluster)`` for a run and close what was created here at exit.

    Parameters
    ----------
    scheduler, scheduler_file, cluster_config
        At most one: the address of a running scheduler, its scheduler file, or a cluster
        YAML file. With none, a local cluster from :func:`default_cluster_config`.
        ``cluster`` is None when connecting to a running scheduler.
    n_workers, threads_per_worker, memory_limit
        Overrides of the cluster configuration (None keeps it); not allowed with
        ``scheduler``/``scheduler_file``.
    timeout
        How long to wait for the scheduler, and for the first worker of a batch cluster.

    Raises
    ------
    ConfigError
        For conflicting arguments, an unreachable scheduler, a bad cluster file, or when no
        batch worker joins in time (the message says how to check the queue).
    """
    from dask.utils import parse_timedelta
    from distributed import Client
    chosen = [name for name, value in (("scheduler", scheduler),
                                       ("scheduler_file", scheduler_file),
                                       ("cluster_config", cluster_config)) if value is not None]
    if len(chosen) > 1:
        raise ConfigError(f"give at most one of scheduler, scheduler_file and cluster_config "
                          f"(got {', '.join(chosen)})")
    seconds = parse_timedelta(timeout, default="s")
    sizing = {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
              "memory_limit": memory_limit}
    if scheduler is not None or scheduler_file is not None:
        given = [k for k, v in sizing.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to a cluster that dcbulk starts, "
                              f"not to a running scheduler")
        target = scheduler if scheduler is not None else os.fspath(scheduler_file)
        if scheduler_file is not None and not os.path.isfile(target):
            raise ConfigError(f"{target}: scheduler file does not exist")
        try:
            client = Client(scheduler, scheduler_file=scheduler_file and target,
                            timeout=seconds)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{target}: cannot connect to the dask scheduler within "
                              f"{timeout} ({' '.join(str(exc).split())})") from exc
        logger.info("connected to %s; worker environment settings of dcbulk are not "
                    "applied to its workers", client.scheduler.address)
        try:
            yield client, None
        finally:
            client.close()
        return
    config = (load_cluster_config(cluster_config) if cluster_config is not None
              else default_cluster_config()).with_overrides(**sizing)
    cluster = make_cluster(config)
    try:
        client = Client(cluster, timeout=seconds)
        try:
            if config.kind != "local":
                _wait_for_first_worker(client, config, seconds, timeout)
            yield client, cluster
        finally:
            client.close()
    finally:
        cluster.close()


def _wait_for_first_worker(client: Any, config: ClusterConfig, seconds: float,
                           timeout: str | float) -> None:
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError as exc:
        queue = config.cluster.get("queue") or "the default queue"
        raise ConfigError(
            f"{config.where}: no dask worker joined within {timeout}: the {config.kind} jobs "
            f"may still wait in {queue} or have failed (check `{_STATUS_COMMAND[config.kind]}`"
            f" and the job logs)") from exc
