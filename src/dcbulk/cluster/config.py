"""Cluster configuration: the typed ClusterConfig, read from a YAML file, validated and overridden."""
from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["KINDS", "ClusterConfig", "default_cluster_config", "load_cluster_config"]

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
