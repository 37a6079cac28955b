"""Dask clusters from YAML configuration: local, SLURM or PBS, and the client to use them.

A cluster file (see ``cluster_configs/*.yaml``) holds one ``dcbulk-cluster:`` mapping with
``kind`` (``local``, ``slurm`` or ``pbs``), ``cluster`` (keyword arguments of
``distributed.LocalCluster`` or ``dask_jobqueue.SLURMCluster``/``PBSCluster``) and ``scale``
(``jobs: N``, or ``minimum_jobs``/``maximum_jobs`` for adaptive scaling). It is read once into
a frozen :class:`ClusterConfig`; explicit arguments override it
(:meth:`ClusterConfig.with_overrides`).
:func:`open_client` is the one entry point of the CLI. ``dask_jobqueue`` is imported only when
a batch cluster is actually built (its import writes a default file into ``~/.config/dask``).
Without a file, the built-in local defaults of :func:`default_cluster_config` apply (the same
values as ``cluster_configs/local.yaml``, which is not installed with the package).
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import shlex
import shutil
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["KINDS", "ClusterConfig", "default_cluster_config", "load_cluster_config",
           "make_cluster", "job_script", "open_client"]

logger = logging.getLogger(__name__)

#: the cluster kinds a configuration file may name
KINDS = ("local", "slurm", "pbs")
_TOP_KEY = "dcbulk-cluster"
_SECTION_KEYS = ("kind", "cluster", "scale")
_SCALE_KEYS = ("jobs", "workers", "minimum_jobs", "maximum_jobs")
_LIST = "list of strings"
#: expected type of well-known ``cluster:`` keys (others are checked against the classes)
_TYPES = types.MappingProxyType({
    "cores": int, "processes": int, "n_workers": int, "threads_per_worker": int,
    "job_cpu": int, "memory": str, "walltime": str, "queue": str, "account": str,
    "interface": str, "local_directory": str, "python": str, "job_name": str,
    "log_directory": str, "shebang": str, "resource_spec": str, "job_mem": str,
    "protocol": str, "dashboard_address": str, "memory_limit": (str, int, float),
    "death_timeout": (int, float, str), "scheduler_options": dict,
    "job_extra_directives": _LIST, "worker_extra_args": _LIST, "job_script_prologue": _LIST,
    "job_directives_skip": _LIST,
})
_POSITIVE = ("cores", "processes", "n_workers", "threads_per_worker", "job_cpu")
_STATUS_COMMAND = types.MappingProxyType({"slurm": "squeue -u $USER", "pbs": "qstat -u $USER"})


@dataclass(frozen=True)
class ClusterConfig:
    """A validated cluster configuration.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"slurm"`` or ``"pbs"``.
    cluster : dict
        Keyword arguments of the cluster class (a copy is used when building).
    scale : dict
        ``{"jobs": N}``, ``{"workers": N}`` or ``{"minimum_jobs": a, "maximum_jobs": b}``;
        empty for local clusters.
    path : str or None
        The file it was read from; None for the built-in defaults.
    """

    kind: str
    cluster: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def where(self) -> str:
        """The file name for messages (or a description of the built-in defaults)."""
        return self.path or "<built-in local cluster defaults>"

    def with_overrides(self, **overrides: Any) -> ClusterConfig:
        """A copy with explicit settings merged over the file's; None means keep.

        ``n_workers`` sets the worker count (for batch clusters: ``scale: {workers: N}``);
        ``jobs``, ``minimum_jobs`` and ``maximum_jobs`` replace the scale; ``threads_per_worker``
        and ``memory_limit`` apply to local clusters only; every other key goes to ``cluster``.

        Raises
        ------
        ConfigError
            For a value of the wrong type, or a local-only setting on a batch cluster.
        """
        cluster, scale = dict(self.cluster), dict(self.scale)
        given = {k: v for k, v in overrides.items() if v is not None}
        if "jobs" in given:
            scale = {"jobs": given.pop("jobs")}
        if "minimum_jobs" in given or "maximum_jobs" in given:
            scale = {k: v for k, v in scale.items() if k in ("minimum_jobs", "maximum_jobs")}
            scale.update({k: given.pop(k) for k in ("minimum_jobs", "maximum_jobs")
                          if k in given})
        if self.kind != "local":
            if "n_workers" in given:
                scale = {"workers": given.pop("n_workers")}
            local_only = [k for k in ("threads_per_worker", "memory_limit") if k in given]
            if local_only:
                raise ConfigError(
                    f"{self.where}: {', '.join(local_only)} only apply to local clusters; for "
                    f"kind {self.kind} set cluster.cores, cluster.processes and cluster.memory")
        cluster.update(given)
        return _validated(self.kind, cluster, scale, self.path)

    def describe(self) -> str:
        """One line: kind, file and scale, for logs and dry runs."""
        if self.kind == "local":
            sizing = {k: self.cluster.get(k) for k in ("n_workers", "threads_per_worker",
                                                       "memory_limit")}
            return f"local cluster ({self.where}): " + ", ".join(
                f"{k}={v if v is not None else 'auto'}" for k, v in sizing.items())
        return f"{self.kind} cluster ({self.where}): scale " + ", ".join(
            f"{k}={v}" for k, v in self.scale.items())


def default_cluster_config() -> ClusterConfig:
    """The built-in local cluster: one single-threaded worker process per core."""
    return ClusterConfig(kind="local",
                         cluster={"n_workers": None, "threads_per_worker": 1,
                                  "memory_limit": "auto"},
                         scale={}, path=None)


def _check_value(where: str, key: str, value: Any) -> None:
    expected = _TYPES.get(key)
    if value is None or expected is None:
        return
    if key == "walltime" and isinstance(value, int):
        raise ConfigError(f"{where}: cluster.walltime must be quoted, e.g. '12:00:00' "
                          f"(YAML reads an unquoted 12:00:00 as the number {value})")
    if expected == _LIST:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: cluster.{key} must be a {_LIST}, not {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple)
                                                 else (expected,)))
        raise ConfigError(f"{where}: cluster.{key} must be {names}, not {value!r}")
    if key in _POSITIVE and value < 1:
        raise ConfigError(f"{where}: cluster.{key} must be at least 1, not {value}")


def _validated(kind: Any, cluster: Any, scale: Any, path: str | None) -> ClusterConfig:
    where = path or "<built-in local cluster defaults>"
    if kind not in KINDS:
        raise ConfigError(f"{where}: {_TOP_KEY}.kind must be one of {', '.join(KINDS)}, "
                          f"not {kind!r}")
    for name, value in (("cluster", cluster), ("scale", scale)):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {_TOP_KEY}.{name} must be a mapping, not {value!r}")
    for key, value in cluster.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: cluster key {key!r} is not a string")
        _check_value(where, key, value)
    for key, value in scale.items():
        if key not in _SCALE_KEYS:
            raise ConfigError(f"{where}: unknown key scale.{key} (use jobs, or minimum_jobs "
                              f"and maximum_jobs)")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: scale.{key} must be a non-negative integer, "
                              f"not {value!r}")
    if kind == "local" and scale:
        raise ConfigError(f"{where}: scale applies to batch clusters; for kind local set "
                          f"cluster.n_workers")
    fixed = [k for k in ("jobs", "workers") if k in scale]
    if len(fixed) > 1 or (fixed and len(scale) > 1):
        raise ConfigError(f"{where}: scale: give either jobs or minimum_jobs/maximum_jobs, "
                          f"not {', '.join(sorted(scale))}")
    if scale.get("minimum_jobs", 0) > scale.get("maximum_jobs", float("inf")):
        raise ConfigError(f"{where}: scale.minimum_jobs ({scale['minimum_jobs']}) exceeds "
                          f"scale.maximum_jobs ({scale['maximum_jobs']})")
    return ClusterConfig(kind=kind, cluster=dict(cluster), scale=dict(scale), path=path)


def load_cluster_config(path: str | PathLike) -> ClusterConfig:
    """Read a cluster file (``yaml.safe_load``) into a :class:`ClusterConfig`.

    Raises
    ------
    ConfigError
        One line naming the file and the key: missing file, bad YAML, unknown top-level or
        section keys, unknown kind, values of the wrong type.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read cluster configuration ({exc.strerror})"
                          ) from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: invalid YAML ({detail})") from exc
    if not isinstance(doc, dict) or _TOP_KEY not in doc:
        raise ConfigError(f"{path}: expected a top-level '{_TOP_KEY}:' mapping")
    unknown = sorted(str(k) for k in doc if k != _TOP_KEY)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)} "
                          f"(only '{_TOP_KEY}' is allowed)")
    section = doc[_TOP_KEY]
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: '{_TOP_KEY}' must be a mapping")
    unknown = sorted(str(k) for k in section if k not in _SECTION_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(f'{_TOP_KEY}.{k}' for k in unknown)}"
                          f" (allowed: {', '.join(_SECTION_KEYS)})")
    if "kind" not in section:
        raise ConfigError(f"{path}: {_TOP_KEY}.kind is missing ({', '.join(KINDS)})")
    return _validated(section["kind"], section.get("cluster") or {},
                      section.get("scale") or {}, path)


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

    from .engine.client import WORKER_ENVIRON
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
        from .engine.client import make_local_cluster
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
        from .engine.client import WORKER_ENVIRON
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
    try:
        job = cls.job_cls("tcp://<scheduler-address>:8786", name="dummy-name", **job_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config.where}: {cls.__name__}: "
                          f"{' '.join(str(exc).split())}") from exc
    return job.job_script()


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
