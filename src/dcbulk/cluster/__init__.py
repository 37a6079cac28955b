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

from .config import KINDS, ClusterConfig, default_cluster_config, load_cluster_config
from .connect import job_script, make_cluster, open_client

__all__ = ["KINDS", "ClusterConfig", "default_cluster_config", "load_cluster_config",
           "make_cluster", "job_script", "open_client"]
