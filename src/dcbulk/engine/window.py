"""Computing tasks from inside a task, at most a window of them in flight.

distributed has no bounded "map as completed" for a task that feeds the cluster (``Client.map``
submits everything at once, which would hold a whole output in memory); this module is
that loop, small: submit, wait with ``as_completed``, collect with ``client.gather`` (which
reads results held by this very worker from its memory instead of asking the scheduler and
unpickling a copy), submit the next.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["run_windowed", "default_window"]


def default_window(client) -> int:
    """Twice the cluster's threads plus two: every thread busy, one result queued each."""
    return 2 * max(1, sum(client.nthreads().values())) + 2


def run_windowed(jobs: Iterator[tuple[Any, Callable]], *, window: int | None = None
                 ) -> Iterator[tuple[Any, Any]]:
    """From inside a task: run jobs on the cluster, at most ``window`` in flight.

    Each job is a ``(tag, submit)`` pair; ``submit(client)`` returns a future. The calling
    task first leaves the worker's thread pool (``secede``), so it never holds a compute
    slot while it waits. ``(tag, result)`` pairs are yielded as they complete; a new job is
    submitted each time one has been consumed (backpressure). Outstanding futures are
    cancelled on error or when the consumer stops early.
    """
    from distributed import as_completed, get_client, secede
    client = get_client()
    secede()
    window = window or default_window(client)
    pending = as_completed()
    live: dict = {}

    def submit_next() -> None:
        job = next(jobs, None)
        if job is not None:
            tag, submit = job
            fut = submit(client)
            live[fut.key] = (tag, fut)
            pending.add(fut)

    for _ in range(window):
        submit_next()
    try:
        for fut in pending:
            tag, _ = live.pop(fut.key)
            result = client.gather(fut)
            fut.release()
            yield tag, result
            del result
            submit_next()
    finally:
        if live:
            client.cancel([fut for _, fut in live.values()])
