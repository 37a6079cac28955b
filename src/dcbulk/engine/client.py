"""Getting a dask client: the caller's, or a LocalCluster sized to this machine.

Workers get large-allocation malloc settings (multi-MB chunk buffers otherwise cost fresh
``mmap``s and page faults per task) and a warning when ``HDF5_PLUGIN_PATH`` is set, since it
stops hdf5plugin from registering its filters.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask

__all__ = ["WORKER_ENVIRON", "client_context", "make_local_cluster"]

logger = logging.getLogger(__name__)

#: environment for worker processes (glibc malloc: keep large buffers instead of mmap/munmap)
WORKER_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": "268435456",
    "MALLOC_TRIM_THRESHOLD_": "536870912",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def make_local_cluster(n_workers: int | None = None, threads_per_worker: int = 1,
                       memory_limit: str | float | None = "auto", **kwargs):
    """Start a process-based LocalCluster (one single-threaded worker per core by default)."""
    from distributed import LocalCluster
    if os.environ.get("HDF5_PLUGIN_PATH"):
        logger.warning("HDF5_PLUGIN_PATH is set; hdf5plugin will not register its filters "
                       "for writing in the workers")
    n_workers = n_workers or os.cpu_count() or 1
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.update(WORKER_ENVIRON)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            processes=True, memory_limit=memory_limit,
                            dashboard_address=kwargs.pop("dashboard_address", ":0"), **kwargs)


@contextlib.contextmanager
def client_context(client=None, **cluster_kwargs) -> Iterator:
    """Yield ``client`` as is, or a new client of a fresh LocalCluster closed at exit."""
    if client is not None:
        yield client
        return
    from distributed import Client
    cluster = make_local_cluster(**cluster_kwargs)
    try:
        with Client(cluster) as new_client:
            logger.info("dask dashboard: %s", new_client.dashboard_link)
            yield new_client
    finally:
        cluster.close()
