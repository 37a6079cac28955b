"""Runs made by threads of dcbulk's own process, without a cluster.

Starting a LocalCluster and closing it costs about 2.5 s of wall time and 4-5 CPU-seconds on
2 cores (worker processes and their nannies importing dask, distributed and h5py; a
scheduler; the dashboard's Bokeh), more than converting a few megabytes takes; and on a
cluster of a worker process per core, a file's blocks encoded by one worker travel,
pickled, to its writer on the other. :func:`runs_in_process` decides (once, for the
executor) that a run is made here instead -- a job that allows it, nothing asked of a
cluster, at most :data:`THREADED_RUN_BYTES` (a run short enough not to need a dashboard
page), and few files (:data:`THREADED_RUN_FILES`) or large ones
(:data:`THREADED_FILE_BYTES` on average) -- and :class:`InProcessClient` then makes its
targets in a ``concurrent.futures`` thread pool of this process: each file's writer
without a dask graph (:func:`~dcbulk.engine.arrays.plan_blocks`), its blocks computed by the
threads of one :class:`~dcbulk.engine.blockpool.BlockPool`, where the codecs release the
GIL, so a single large file uses every core too. A run that stops (Ctrl-C) waits for its
threads (:meth:`InProcessClient.close`: each ends at its next block, its partial file
removed), so that nothing of it runs when the command has ended.

Why few or large files: the Python and h5py work of each file (inspection, metadata,
datasets: 70-100 ms) holds the GIL, so threads do not scale on many small files, where
worker processes do; worse, h5py calls made by two threads at once take about twice as long
as by one (opening every dataset of 60 files and looking up its chunks: 0.37 s with one
thread, 0.75-0.84 s with two; h5py and HDF5 take their locks around every call), so
``verify`` of 30 outputs took 3.2-3.5 s with two threads and 3.6-4.0 s with one. About 30
such files lose what the cluster's start costs. Measured on 2 cores, whole runs: 30 files of
~55 MB (1.6 GB) 6.1 s here vs 9.2 s on the process cluster; one 1.45 GB file 4.3 s vs 7.4 s;
a 104 MB file split in 4, 2.3 s vs 4.6 s; 100 files of ~16 MB 12.0 s vs 10.8 s, 200 of ~12
MB 21.4 s vs 16.6 s; 48 files of ~0.4 MB 5.3 s vs 3.9 s; 1 000 such files: two threads 96 s,
one 72 s, the process cluster 46 s. ``verify`` (which writes nothing, so leaves no marker)
takes the same decision on what it reads, each output and its source: on a machine 2.4x
slower, one 16 MB output 1.3-1.6 s here vs 4.8-5.2 s with a cluster; one 330 MB output (1.6
GB raw) 6.4 vs 10.0-10.8 s; 30 outputs of 10 MB from sources of 55 MB (1.6 GB raw), later,
7.2 s here vs 10.2 s with a cluster (when only the outputs' size counted, this run went to
the cluster).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait

from ..engine.blockpool import BlockPool, started_executor, using_block_pool
from ..nofollow import refuse_unless_file, write_nofollow

__all__ = ["MARKER_NAME", "THREADED_FILE_BYTES", "THREADED_RUN_BYTES", "THREADED_RUN_FILES",
           "InProcessClient", "check_marker", "clear_marker", "in_process_run", "is_marker",
           "markers", "runs_in_process"]

logger = logging.getLogger(__name__)

#: a run of at most this many bytes to read may be made in dcbulk's process ...
THREADED_RUN_BYTES = 4 * 1024**3
#: ... if it has at most this many files ...
THREADED_RUN_FILES = 24
#: ... or files of at least this size on average
THREADED_FILE_BYTES = 32 * 1024**2

#: the marker of an in-process run in its output directory, removed when the run ends: this,
#: then ``-<host>-<pid>`` (one per run: runs of join may share a directory)
MARKER_NAME = ".dcbulk-in-process"


def is_marker(name: str) -> bool:
    """Whether the file name ``name`` is the marker of an in-process run (any run's, also
    the one name all runs shared before)."""
    return name == MARKER_NAME or name.startswith(MARKER_NAME + "-")


def markers(marker_dir: str) -> list[str]:
    """The markers of in-process runs in ``marker_dir``, running or dead."""
    try:
        names = os.listdir(marker_dir or os.curdir)
    except OSError:  # absent (or no directory): none
        return []
    return sorted(os.path.join(marker_dir, name) for name in names if is_marker(name))


def _own_marker(marker_dir: str) -> str:
    return os.path.join(marker_dir, f"{MARKER_NAME}-{socket.gethostname()}-{os.getpid()}")


def _running(marker: str) -> bool:
    """Whether the run of ``marker`` is a live process of this host (one of another host,
    or of the shared name, cannot be told from a dead one: taken for dead, as before)."""
    host, _, pid = os.path.basename(marker)[len(MARKER_NAME) + 1:].rpartition("-")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
        return False  # pid 0 would be os.kill's own process group: always "alive"
    import psutil  # distributed's dependency; here: only when a marker is found
    try:
        started = psutil.Process(int(pid)).create_time()
        written = os.lstat(marker).st_mtime
    except (psutil.NoSuchProcess, OSError, OverflowError, ValueError):
        return False
    except psutil.AccessDenied:  # cannot be told
        return True
    return started <= written + 1  # else the pid is another process's now


def _dead_markers(marker_dir: str) -> list[str]:
    return [path for path in markers(marker_dir) if not _running(path)]


def runs_in_process(job, marker_dir: str | None, sizes: list[int], *,
                    timeout: float | None = None) -> bool:
    """Whether a run of ``job`` making targets of ``sizes`` bytes is made in this process.

    Only for jobs that allow it (``job.in_process``), for at most
    :data:`THREADED_RUN_BYTES` in at most :data:`THREADED_RUN_FILES` files or in files of
    :data:`THREADED_FILE_BYTES` on average (see the module text),
    without a per-file ``timeout``, and unless the marker of an in-process run that died is
    in ``marker_dir`` (that run's files are then made on a cluster; None: a run that writes
    nothing, without a marker).
    """
    if not (getattr(job, "in_process", False) and sizes and timeout is None):
        return False
    total = sum(sizes)
    if total > THREADED_RUN_BYTES or (len(sizes) > THREADED_RUN_FILES
                                      and total / len(sizes) < THREADED_FILE_BYTES):
        return False
    dead = [] if marker_dir is None else _dead_markers(marker_dir)
    if dead:  # not the marker of another run still going on (two joins into one directory)
        logger.warning("an earlier run in dcbulk's own process ended abruptly (%s); this run "
                       "uses worker processes, so that a file that crashes one fails alone",
                       dead[0])
        return False
    return True


class _Task(Future):
    """A future with the key the executor tracks it by (as a distributed future has)."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def release(self) -> None:
        """Nothing to release (a distributed future frees its result on the cluster)."""


class InProcessClient:
    """The calls the executor makes on a ``distributed.Client``, on a thread pool.

    Parameters
    ----------
    threads
        Threads of the pool (default: the machine's cores).
    """

    dashboard_link = None

    def __init__(self, threads: int | None = None):
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._pool = started_executor(self._threads, "dcbulk-file")
        self._blocks = BlockPool(self._threads)
        self._topics: dict[str, Callable] = {}
        #: every thread of the client has ended (:meth:`close` returned)
        self.ended = False

    def nthreads(self) -> dict[str, int]:
        return {"in-process": self._threads}

    def subscribe_topic(self, topic: str, handler: Callable) -> None:
        self._topics[topic] = handler

    def unsubscribe_topic(self, topic: str) -> None:
        self._topics.pop(topic, None)

    def submit(self, func, *args, key: str, pure=None, resources=None, **kwargs) -> _Task:
        """Run ``func(*args, **kwargs)`` in the pool; the subscribed topics hear when it
        starts (``resources`` and ``pure`` concern clusters only)."""
        task = _Task(key)

        def run() -> None:
            if not task.set_running_or_notify_cancel():
                return
            for handler in list(self._topics.values()):
                handler((time.time(), {"key": key}))
            try:
                with using_block_pool(self._blocks):
                    task.set_result(func(*args, **kwargs))
            except BaseException as exc:  # handed to the executor, as a cluster does
                task.set_exception(exc)

        self._pool.submit(run)
        return task

    def cancel(self, futures) -> None:
        """Cancel tasks not started yet (a started thread is stopped by :meth:`close`; one
        abandoned past its time limit commits nothing after its deadline,
        :func:`~dcbulk.partials.commit_deadline`)."""
        for fut in futures:
            fut.cancel()

    @staticmethod
    def wait_first(futures, timeout: float | None) -> None:
        """Wait until one of ``futures`` is done, or ``timeout`` ran out (the executor then
        settles every one that is done)."""
        wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)

    def close(self) -> None:
        """Stop, and return once every thread of the client has ended: tasks not started
        are dropped, the running ones fail at their next block (or before they commit
        their file: :func:`~dcbulk.engine.blockpool.raise_if_stopped`), removing their
        partial files. Returning earlier left them to the interpreter's exit, which waits
        for the threads, and a second Ctrl-C there ended the process in the middle of
        their HDF5 calls (partial files left, or a hang on h5py's lock)."""
        self._blocks.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.ended = True


@contextlib.contextmanager
def in_process_run(marker_dir: str | None) -> Iterator[InProcessClient]:
    """An :class:`InProcessClient` with the run's own marker in ``marker_dir`` while it
    lasts (None: no marker, for a run that writes nothing)."""
    marker = None if marker_dir is None else _own_marker(marker_dir)
    if marker is not None:
        os.makedirs(marker_dir or os.curdir, exist_ok=True)  # a one-file job's output directory
        write_nofollow(marker, f"{socket.gethostname()} pid {os.getpid()} {time.ctime()}\n"
                       .encode())
    client = InProcessClient()
    try:
        yield client
    finally:
        # a close cut short (KeyboardInterrupt, outside the command's handling of signals)
        # leaves the marker: threads may still write, the next run takes them for dead
        client.close()
        if marker is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)


def check_marker(output_dir: str) -> None:
    """Refuse a marker that is no regular file (a directory, a link): the run would make
    its files, then fail to remove it. Before any work, as for the lock and manifest.

    Raises
    ------
    LinkRefusedError
        Naming the marker.
    """
    for marker in markers(output_dir) + [_own_marker(output_dir)]:
        refuse_unless_file(marker)


def clear_marker(output_dir: str) -> None:
    """Remove the markers of in-process runs that died (after a cluster run made their
    files); those of runs still going on stay."""
    for marker in _dead_markers(output_dir):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)
