"""Blocks of the writers of this process computed by a pool of its threads.

When dcbulk makes a run in its own process (:mod:`dcbulk.bulk.inprocess`), each output's
writer runs in a thread of the file pool, and its blocks (read, decode, encode, or stored
chunks proved sound) are computed by the threads of one :class:`BlockPool`: the codecs run
outside HDF5's lock and the GIL (:mod:`dcbulk.codec.encode`), so the threads encode at once,
and each block reaches its writer in this process's memory, with no pickling and no transfer
between processes. A file's blocks spread over every core, so a single large file is made
as fast as many.

Written by hand because ``concurrent.futures`` has no bounded map: :meth:`BlockPool.run`
submits a writer's blocks while a slot is free, and the slots (one semaphore for the
whole pool, whatever the number of writers) keep at most ``window`` blocks in memory. A
writer that holds no block in flight waits for a slot; one that holds some waits for its
own, so no writer waits on another. Results come as they complete (the writer stores
each chunk at its index).

The pool of the calling thread is a context variable (:func:`using_block_pool`,
:func:`current_block_pool`), set by the in-process client for the tasks it runs; elsewhere
(a worker of a cluster) there is none and a writer computes its blocks itself, or has them
computed by the cluster's tasks. One exception: the task of a run's **lone output** on a
cluster whose workers all share its host (:func:`lone_block_pool`) takes a pool of as many
threads as those workers have, since nothing else of the run needs them: its blocks then
reach the writer from its own process's memory, as in dcbulk's process, instead of as
pickled results of tasks on the other workers (the 1.59 GB file on a warm 2 x 1 cluster:
10.1-10.2 s and 17.0-17.6 worker CPU-s instead of 11.8-13.8 s and 19.5-23.2).
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..errors import DcbulkError
from ..plan import DEFAULT_TASK_BYTES
from .client import current_worker

__all__ = ["BlockPool", "current_block_pool", "host_threads", "lone_block_pool",
           "raise_if_stopped", "run_blocks", "started_executor", "using_block_pool"]

_CURRENT: contextvars.ContextVar[BlockPool | None] = contextvars.ContextVar(
    "dcbulk_block_pool", default=None)

#: seconds between looks at the pool's stop flag while a writer waits for a slot
_POLL = 0.25


class BlockPool:
    """Threads computing the blocks of every writer of this process.

    Parameters
    ----------
    threads
        Threads of the pool.
    window
        Blocks in flight or waiting for their writer, for the whole pool (default: twice
        the threads plus two: every thread busy, one result waiting each).
    """

    def __init__(self, threads: int, window: int | None = None):
        self.threads = max(1, threads)
        self._pool = started_executor(self.threads, "dcbulk-block")
        self._slots = threading.Semaphore(window or 2 * self.threads + 2)
        self._stopped = threading.Event()

    def _slot(self, wait_for_one: bool) -> bool:
        """Take a slot; wait for one only with ``wait_for_one`` (the writer holds none)."""
        while True:
            if self._stopped.is_set():
                raise DcbulkError("the run was stopped")
            if self._slots.acquire(timeout=_POLL if wait_for_one else 0):
                return True
            if not wait_for_one:
                return False

    def run(self, jobs: Iterable[tuple[Any, Callable[[], Any]]]) -> Iterator[tuple[Any, Any]]:
        """``(tag, job())`` of every ``(tag, job)``, computed by the pool's threads.

        Results are yielded as they complete; a job's exception is raised when its result
        comes, and the jobs still in flight are then cancelled (and those running waited
        for: the writer's files stay open until they end). :meth:`close` makes every writer
        in here raise :class:`~dcbulk.errors.DcbulkError` at its next block.
        """
        jobs = iter(jobs)
        live: dict[Future, Any] = {}
        more = True
        try:
            while True:
                while more and self._slot(wait_for_one=not live):
                    job = next(jobs, None)
                    if job is None:
                        self._slots.release()
                        more = False
                        break
                    live[self._pool.submit(job[1])] = job[0]
                if not live:
                    return
                done, _ = wait(live, timeout=_POLL, return_when=FIRST_COMPLETED)
                if self.stopped:
                    raise DcbulkError("the run was stopped")
                for fut in done:
                    tag = live.pop(fut)
                    self._slots.release()
                    yield tag, fut.result()
        finally:  # the blocks running end before their writer goes on (and closes files);
            # a block cancelled before it ran is never done for wait() (close() takes it
            # from the executor's queue), so only those that could not be cancelled are awaited
            wait([fut for fut in live if not fut.cancel()])
            for _ in live:
                self._slots.release()

    @property
    def stopped(self) -> bool:
        """Whether the pool was closed (its writers make no output any more)."""
        return self._stopped.is_set()

    def close(self) -> None:
        """Stop: blocks not started are dropped, writers stop at their next block (or
        before they commit their file, :func:`raise_if_stopped`); returns once the blocks
        running have ended and with them every thread of the pool."""
        self._stopped.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def started_executor(threads: int, prefix: str) -> ThreadPoolExecutor:
    """A ``ThreadPoolExecutor`` of ``threads`` threads, all started now.

    ``ThreadPoolExecutor`` starts a thread per ``submit`` while none is idle, holding a lock
    global to every executor of the process until the new thread runs: a run's first
    files and blocks would start threads in the middle of the other threads' HDF5 calls
    (a CI run hung there once).
    """
    pool = ThreadPoolExecutor(threads, thread_name_prefix=prefix)
    barrier = threading.Barrier(threads)
    wait([pool.submit(barrier.wait, 5) for _ in range(threads)])
    return pool


def current_block_pool() -> BlockPool | None:
    """The block pool of the calling thread's task, or None (compute blocks in place)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using_block_pool(pool: BlockPool | None) -> Iterator[None]:
    """Within the block, :func:`current_block_pool` is ``pool``."""
    token = _CURRENT.set(pool)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def raise_if_stopped() -> None:
    """Raise :class:`~dcbulk.errors.DcbulkError` when the block pool of the calling task
    was closed: a writer of a run that stops commits nothing after (between the blocks its
    pool computes, :meth:`BlockPool.run` raises the same)."""
    pool = current_block_pool()
    if pool is not None and pool.stopped:
        raise DcbulkError("the run was stopped")


def run_blocks(jobs: Iterable[tuple[Any, Callable[[], Any]]]) -> Iterator[tuple[Any, Any]]:
    """``(tag, job())`` of every job: by the current block pool, or here one by one."""
    pool = current_block_pool()
    if pool is not None:
        yield from pool.run(jobs)
        return
    for tag, job in jobs:
        yield tag, job()


def host_threads(nthreads: dict[str, int], host: str, memory_limit: int | None, *,
                 block_bytes: int = DEFAULT_TASK_BYTES) -> int:
    """Threads of a lone output's block pool in a worker on ``host``.

    ``nthreads`` maps every worker's address to its threads (``Client.nthreads()``). The
    threads of them all when they all run on ``host``, else 0 (the cluster's other hosts
    are better used by tasks); at most so many that the pool's window of blocks (each up
    to ``block_bytes`` read, decoded and encoded: three copies) stays within half of the
    worker's ``memory_limit`` (None or 0: no limit).
    """
    from distributed.comm import get_address_host
    if not nthreads or any(get_address_host(addr) != host for addr in nthreads):
        return 0
    threads = sum(nthreads.values())
    if memory_limit:  # window = 2 x threads + 2 blocks
        threads = min(threads, (memory_limit // 2 // (3 * block_bytes) - 2) // 2)
    return max(0, threads)


@contextlib.contextmanager
def lone_block_pool(lone: bool = True) -> Iterator[bool]:
    """Within the block, a dask worker's task has a block pool of its host's threads.

    For the task of a run's only output (``lone``: the caller knows; nothing else of the run
    then wants the cluster's threads): yields True with the pool set (:func:`host_threads`
    threads), False where the task uses the cluster's tasks or its own thread (not lone,
    not in a worker's task, a pool already set, workers on other hosts, a single thread).
    """
    worker = current_worker() if lone else None
    if worker is None or current_block_pool() is not None:
        yield False
        return
    from distributed import get_client
    from distributed.comm import get_address_host
    threads = host_threads(get_client().nthreads(), get_address_host(worker.address),
                           worker.memory_manager.memory_limit)
    if threads < 2:
        yield False
        return
    pool = BlockPool(threads)
    try:
        with using_block_pool(pool):
            yield True
    finally:
        pool.close()
