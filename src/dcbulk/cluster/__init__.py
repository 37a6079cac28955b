"""The dask cluster of a run, from dask's own configuration (and dask-jobqueue's).

``--cluster slurm`` starts ``dask_jobqueue.SLURMCluster()`` exactly as dask-jobqueue would
from ``jobqueue.slurm.*`` (``~/.config/dask/jobqueue.yaml``, ``$DASK_CONFIG``, ``DASK_*``
variables); a ``--cluster-config`` file is dask configuration merged on top for the run.
dcbulk's own settings are the few keys of ``dcbulk:`` (:data:`DEFAULTS`). ``dask_jobqueue``
is imported only when a batch cluster is used (its import writes a default
``jobqueue.yaml`` into ``$DASK_CONFIG`` or ``~/.config/dask``).
"""
from __future__ import annotations

from .config import DEFAULTS, KINDS, check_jobqueue, setting, use_config_file
from .connect import check_client, job_script, open_client

__all__ = ["KINDS", "DEFAULTS", "setting", "use_config_file", "check_jobqueue", "check_client",
           "job_script", "open_client"]
