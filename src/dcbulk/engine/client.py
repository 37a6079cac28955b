"""Getting a dask client: the caller's, or a LocalCluster sized to this machine.

Workers get large-allocation malloc settings (multi-MB chunk buffers otherwise cost fresh
``mmap``s and page faults per task) and a warning when ``HDF5_PLUGIN_PATH`` is set, since it
stops hdf5plugin from registering its filters. They start with SIGINT blocked
(:mod:`dcbulk.interrupts`, a nanny preload): Ctrl-C is the command's, which closes them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import dask

from ..errors import ConfigError

__all__ = ["NANNY_PRELOAD", "WORKER_ENVIRON", "client_context", "current_worker",
           "local_shape", "make_local_cluster"]

logger = logging.getLogger(__name__)

#: environment for worker processes (glibc malloc: keep large buffers instead of mmap/munmap)
WORKER_ENVIRON = {
    "MALLOC_MMAP_THRESHOLD_": "268435456",
    "MALLOC_TRIM_THRESHOLD_": "536870912",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


#: the nanny preload of a local cluster: its worker processes start with SIGINT blocked
#: (:func:`dcbulk.interrupts.dask_setup`; a module name, imported by distributed)
NANNY_PRELOAD = "dcbulk.interrupts"


def current_worker():
    """The dask worker whose task calls this, or None (distributed is imported only if it
    already is: a run in dcbulk's own process does without it)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker
    try:
        return get_worker()
    except ValueError:  # not in a worker's task
        return None


#: a local cluster's worker processes (and threads of one worker) per core at most: more
#: only queue for the cores, and each worker process (with its nanny) needs a few hundred MB
#: (``--workers 100000`` started processes for minutes, silently, until the machine gave out)
MAX_PER_CORE = 4


def local_shape(n_workers: int | None = None, threads_per_worker: int | None = None,
                cores: int | None = None, *,
                names: tuple[str, str] = ("n_workers", "threads_per_worker")
                ) -> tuple[int, int]:
    """``(worker processes, threads each)`` of a local cluster; None means "decide".

    By default a worker process per core, one thread each. The codecs run outside HDF5's
    lock and the GIL (:mod:`dcbulk.codec.encode`), but everything around them does not:
    HDF5 reads, writes and metadata, h5py's objects, the writer and dask's own bookkeeping.
    Measured on 2 cores (README, "Cluster defaults"), processes were as fast as or faster
    than one process with threads on a large file and on an archive, and kept their speed
    when other work shared the machine, where the threads of one process lost half of it.
    Given only one of the two numbers, the other divides the cores by it.

    Raises
    ------
    ConfigError
        For more than :data:`MAX_PER_CORE` per core of either, naming it as ``names`` say
        (the option or setting it came from).
    """
    cores = max(1, cores or os.cpu_count() or 1)
    limit = MAX_PER_CORE * cores
    for name, value, what, why in zip(
            names, (n_workers, threads_per_worker), ("worker processes", "threads per worker"),
            ("each worker process needs a few hundred MB", "more only wait for the cores")):
        if value is not None and value > limit:
            raise ConfigError(f"{name} {value}: a local cluster takes at most {limit} {what} "
                              f"here ({MAX_PER_CORE} per core, {cores} cores; {why})")
    if n_workers is None and threads_per_worker is None:
        return cores, 1
    if threads_per_worker is None:
        return n_workers, max(1, cores // n_workers)
    if n_workers is None:
        return max(1, cores // threads_per_worker), threads_per_worker
    return n_workers, threads_per_worker


def make_local_cluster(n_workers: int | None = None, threads_per_worker: int | None = None,
                       memory_limit: str | float | None = "auto", **kwargs):
    """Start a process-based LocalCluster (by default a worker process per core).

    See :func:`local_shape` for how the two numbers are decided. Its worker processes
    never take SIGINT (:data:`NANNY_PRELOAD`): a terminal's Ctrl-C reaches them too, and
    while they start, each printed a KeyboardInterrupt traceback; the cluster is closed
    when the command stops.
    """
    from distributed import LocalCluster
    if os.environ.get("HDF5_PLUGIN_PATH"):
        logger.warning("HDF5_PLUGIN_PATH is set; hdf5plugin will not register its filters "
                       "for writing in the workers")
    n_workers, threads_per_worker = local_shape(n_workers, threads_per_worker)
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.update(WORKER_ENVIRON)
    preload = kwargs.pop("preload_nanny", None)
    if preload is None:
        preload = dask.config.get("distributed.nanny.preload", []) or []
    preload = [preload] if isinstance(preload, str) else list(preload)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            processes=True, memory_limit=memory_limit,
                            dashboard_address=kwargs.pop("dashboard_address", ":0"),
                            preload_nanny=[*preload, NANNY_PRELOAD], **kwargs)


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
