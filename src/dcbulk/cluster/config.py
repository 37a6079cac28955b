"""Cluster settings in dask's own configuration: a file on top of it, and the checks dask skips.

dask reads ``~/.config/dask/*.yaml``, ``$DASK_CONFIG`` and ``DASK_*`` variables; dask-jobqueue
reads its ``jobqueue.<kind>.*`` keys from there and validates its keyword arguments. What is
left for dcbulk: :func:`use_config_file` (a ``--cluster-config`` file merged on top, for the
duration of a run only, since dask-jobqueue reads the configuration again for every job it
builds), the small ``dcbulk:`` section (:data:`DEFAULTS`) and three checks that dask-jobqueue
does not make (:func:`check_jobqueue`): a setting name it does not know (it would ignore a
misspelt ``qeue:`` without a word), a walltime that YAML read as a number, and a network
interface this machine does not have.

dask-jobqueue is imported through :func:`jobqueue` only: at its import (module
``dask_jobqueue.runner``) it replaces Python's SIGINT handler with ``sys.exit()``, so Ctrl-C
would end a run with status 0 and no word, as if it had finished; the handler is put back.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import os
import signal
import threading
from collections.abc import Iterator
from os import PathLike
from types import ModuleType
from typing import Any

import dask
import yaml
from dask.utils import parse_bytes, parse_timedelta

from ..errors import ConfigError

__all__ = ["KINDS", "DEFAULTS", "check_jobqueue", "check_memory_fractions",
           "distributed_defaults", "duration", "jobqueue", "setting", "use_config_file"]

#: ``--cluster`` choices: distributed's LocalCluster, or the dask-jobqueue cluster class
KINDS = {"local": "LocalCluster", "slurm": "SLURMCluster", "pbs": "PBSCluster",
         "sge": "SGECluster", "lsf": "LSFCluster", "htcondor": "HTCondorCluster"}

#: dcbulk's own keys (dask config ``dcbulk.*``) with their defaults; read, never registered
DEFAULTS: dict[str, Any] = {
    "cluster": "local",           # the kind started when --cluster is not given
    "jobs": None,                 # batch clusters: a fixed number of jobs, or ...
    "minimum-jobs": None,         # ... adaptive scaling between these two
    "maximum-jobs": None,
    "worker-timeout": "10 minutes",  # how long to wait for the first batch worker
    # null: a worker process per core, one thread each (dcbulk.engine.client.local_shape)
    "local": {"n-workers": None, "threads-per-worker": None, "memory-limit": "auto"},
}


#: the settings that count workers, threads or jobs: a whole number >= 1 or null
_COUNTS = ("jobs", "minimum-jobs", "maximum-jobs", "local.n-workers",
           "local.threads-per-worker")


def setting(key: str) -> Any:
    """``dcbulk.<key>`` (e.g. ``jobs``, ``local.n-workers``) from dask's config, else default.

    Raises
    ------
    ConfigError
        A count (workers, threads, jobs) that is not a whole number of at least 1 (``-3``
        workers started a cluster of none, which waited for ever).
    """
    default: Any = DEFAULTS
    for part in key.split("."):
        default = default[part]
    value = dask.config.get(f"dcbulk.{key}", default=default)
    if key in _COUNTS and value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"dcbulk.{key} must be a whole number of at least 1 (or null), "
                          f"got {value!r}")
    if key == "local.memory-limit":
        _check_memory_limit(value)
    return value


def _check_memory_limit(value: Any) -> None:
    """``dcbulk.local.memory-limit``: ``auto``/null, a fraction or a finite size (``1e400``
    and ``.inf`` failed the cluster's start with an OverflowError, after the output
    directory was made)."""
    if value is None or str(value).strip().lower() == "auto":
        return
    try:
        number = float(value) if isinstance(value, (int, float)) else None
        if number is None or number > 1:
            parse_bytes(value)
        elif not number > 0:  # 0, negative, nan
            raise ValueError(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"dcbulk.local.memory-limit must be a size such as 4GiB, a fraction "
                          f"of the machine's memory such as 0.5, or auto, got {value!r}"
                          ) from exc


def duration(timeout: str | float, where: str) -> float:
    """Seconds of a timeout (``--timeout``, ``dcbulk.worker-timeout``, dask's connect one).

    Raises
    ------
    ConfigError
        For what is no duration, or none that ends (``nan``, ``inf``, ``1e400``: the wait
        never ended).
    """
    try:
        seconds = parse_timedelta(timeout, default="s")
        if not math.isfinite(seconds):
            raise ValueError(timeout)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ConfigError(f"{where}: timeout {timeout!r} is not a duration such as "
                          f"'30s' or '10 minutes'") from exc
    return seconds


def distributed_defaults() -> None:
    """Load distributed's defaults into dask's configuration (importing it registers them):
    before a block sets ``distributed.*`` keys, whose section would otherwise be new, so
    the block removed it whole at its end, the defaults registered inside with it (every
    later ``distributed.dashboard.*`` was a KeyError, e.g. ``dcbulk process --workers 1``
    after its cluster check), and so a file's ``distributed:`` merges into them."""
    import distributed  # noqa: F401  (deferred: a run in dcbulk's process does without it)


def check_memory_fractions() -> None:
    """Refuse a worker memory threshold of dask's config (``distributed.worker.memory.target``,
    ``spill``, ``pause``, ``terminate``) that is neither a fraction 0..1 nor false: each
    worker's nanny failed with a MemoryError traceback (22 lines), then the cluster.

    Raises
    ------
    ConfigError
        Naming the setting and its value.
    """
    distributed_defaults()  # under the environment's values
    for name in ("target", "spill", "pause", "terminate"):
        key = f"distributed.worker.memory.{name}"
        value = dask.config.get(key, default=False)
        if value is False or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 <= value <= 1:
            raise ConfigError(f"{key} must be a fraction of the worker's memory limit (0 to 1) "
                              f"or false, got {value!r}")


def _unknown(where: str, given: Any, known: Any, prefix: str) -> None:
    """One-line error for the first key of mapping ``given`` that is not in ``known``."""
    canon = {str(k).replace("_", "-") for k in known}
    for key in given:
        if str(key).replace("_", "-") not in canon:
            close = difflib.get_close_matches(str(key).replace("_", "-"), sorted(canon), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where}: unknown setting {prefix}{key}{hint}")


def _check_sections(path: str, given: Any, default: Any, prefix: str) -> None:
    """One-line error where the file gives a setting that dask's default has as a mapping
    (``distributed: 5``, ``distributed: {dashboard: null}``) something else: merged, it
    replaced the whole section, and distributed failed on a missing key (a traceback)."""
    if not isinstance(default, dict):
        return
    if not isinstance(given, dict):
        raise ConfigError(f"{path}: {prefix} must be a mapping of settings (as dask's "
                          f"default is), got {given!r}")
    canon = {str(k).replace("_", "-"): v for k, v in default.items()}
    for key, value in given.items():
        below = canon.get(str(key).replace("_", "-"))
        _check_sections(path, value, below, f"{prefix}.{key}")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read cluster configuration ({exc.strerror})"
                          ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from exc
    if isinstance(doc, dict) and "dcbulk-cluster" in doc:
        raise ConfigError(f"{path}: 'dcbulk-cluster:' files are no longer read; write "
                          f"'jobqueue: <kind>: ...' and 'dcbulk: ...' (see cluster_configs/)")
    sections = ("jobqueue", "dcbulk")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, {}), dict) for k in sections):
        raise ConfigError(f"{path}: expected dask configuration (mappings such as "
                          f"'jobqueue: slurm: ...' and 'dcbulk: ...')")
    if not isinstance(doc.get("dcbulk", {}).get("local", {}) or {}, dict):
        raise ConfigError(f"{path}: dcbulk.local must be a mapping")
    return doc


@contextlib.contextmanager
def use_config_file(path: str | PathLike | None) -> Iterator[None]:
    """Merge the dask configuration file ``path`` over dask's configuration inside the block.

    ``None`` changes nothing. The ``dcbulk:`` section is checked for unknown keys here;
    ``jobqueue:`` is checked by :func:`check_jobqueue` once the kind is known.
    """
    if path is None:
        yield
        return
    path = os.fspath(path)
    doc = _read(path)
    _unknown(path, doc.get("dcbulk", {}), DEFAULTS, "dcbulk.")
    _unknown(path, doc.get("dcbulk", {}).get("local") or {}, DEFAULTS["local"],
             "dcbulk.local.")
    if "jobqueue" in doc:  # its defaults first: they must not land inside the block only
        jobqueue()
    if "distributed" in doc:  # the same (see distributed_defaults)
        distributed_defaults()
    defaults = dask.config.merge(*dask.config.defaults)
    for key, value in doc.items():
        _check_sections(path, value, defaults.get(key), str(key))
    merged = dask.config.update(dask.config.merge(dask.config.config), doc)
    keys = [dask.config.canonical_name(k, merged) for k in doc]
    with dask.config.set({k: merged[k] for k in keys}):  # whole top-level sections, merged
        yield


def jobqueue() -> ModuleType:
    """``dask_jobqueue``, imported with Python's SIGINT handler kept (see the module text)."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    import dask_jobqueue
    if main and signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


def check_jobqueue(kind: str, where: str) -> None:
    """The checks dask-jobqueue does not make, on ``jobqueue.<kind>`` of the active config.

    Raises
    ------
    ConfigError
        A setting dask-jobqueue does not know, an unquoted walltime, or an interface that
        does not exist on this machine.
    """
    jobqueue()  # registers the jobqueue.* defaults (and writes its yaml file)
    import psutil
    section = dask.config.get(f"jobqueue.{kind}", default={}) or {}
    _unknown(where, section, _jobqueue_defaults(kind), f"jobqueue.{kind}.")
    walltime = section.get("walltime")
    if isinstance(walltime, (int, float)) and not isinstance(walltime, bool):
        raise ConfigError(f"{where}: jobqueue.{kind}.walltime must be quoted, e.g. "
                          f"'12:00:00' (YAML reads an unquoted 12:00:00 as the number "
                          f"{walltime})")
    # the scheduler listens on this machine: on scheduler-options' interface, or (without
    # a host or interface there) on the workers' one
    options = section.get("scheduler-options") or section.get("scheduler_options") or {}
    own = "host" in options or "interface" in options
    names = psutil.net_if_addrs()
    for key, value in ((f"jobqueue.{kind}.scheduler-options.interface",
                        options.get("interface")),
                       (f"jobqueue.{kind}.interface",
                        None if own else section.get("interface"))):
        if value is not None and value not in names:
            raise ConfigError(f"{where}: {key} is {value!r}, which this machine does not "
                              f"have (it has {', '.join(sorted(names))}); the scheduler "
                              f"listens here, so name an interface of this node")


def _jobqueue_defaults(kind: str) -> dict:
    """dask-jobqueue's own defaults of ``jobqueue.<kind>`` (from the file it ships)."""
    with open(os.path.join(os.path.dirname(jobqueue().__file__), "jobqueue.yaml"),
              encoding="utf-8") as fh:
        return yaml.safe_load(fh)["jobqueue"][kind]
