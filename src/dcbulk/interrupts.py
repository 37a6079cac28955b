"""How dcbulk's processes take Ctrl-C (SIGINT) and SIGTERM: the first one stops a command in
order, and nothing else sees one.

A terminal's Ctrl-C reaches every process of its foreground process group, and a user who
sees no effect at once presses it again. Python's own handling raises KeyboardInterrupt in
the main thread at each signal, wherever it is: a second one landed in the middle of the
stop the first began (in a ``finally`` block, in the wait for a run's threads at exit:
"Exception ignored in: threading._shutdown", partial files left, or two threads hung on
h5py's lock), and the worker processes of a local cluster that were still starting (each
importing distributed for a second or two) printed a KeyboardInterrupt traceback each.

:func:`stopping` takes both signals in the main thread for a command: the first raises
KeyboardInterrupt (:class:`Terminated` for SIGTERM) there, so the command stops as it
always did (its run's tasks cancelled, its threads ended, its cluster closed, no partial
file left), and every further one within :data:`FORCE_AFTER` seconds is ignored: the stop
under way is not cut short. Later than that, one raises again, so that a stop that hangs
can still be broken off. Once a signal was taken, the console entry point has both
ignored until the process ends (the interpreter's exit is part of the stop).

:func:`dask_setup` is a nanny preload of dcbulk's local clusters: a nanny of a local cluster
runs in the thread of the cluster's event loop in dcbulk's process and starts its worker
process from a thread it starts there, so with SIGINT blocked in that thread (a signal mask
is inherited by the threads a thread starts, by ``fork`` and across ``exec``), every worker
process begins life with SIGINT blocked, as the standard library's resource tracker does
for its own process. That tracker, when it starts, unblocks SIGINT in the thread that
starts it (the nanny's queues do, the first time), so it is started first. Python's signal
handlers run in the main thread only, so the loop thread never needed the signal. The
workers are stopped by their nannies (the cluster is closed when the command stops), never
by Ctrl-C.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker

__all__ = ["FORCE_AFTER", "Terminated", "dask_setup", "stopping"]

#: seconds after the first signal during which further ones are ignored
FORCE_AFTER = 10.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is (Python's default
    ends the process at once: no line, partial files left until the next run)."""


class _FirstStops:
    """The handler of :func:`stopping`: the first signal raises, further ones are ignored
    for :data:`FORCE_AFTER` seconds."""

    def __init__(self) -> None:
        self.first: float | None = None  # time.monotonic() of the first signal

    def __call__(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.first is not None and now - self.first < FORCE_AFTER:
            return  # the stop is under way
        self.first = now
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def stopping(*, keep: bool = False) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the main thread once (see the module text).

    The handlers before it are restored at its end; with ``keep`` (the process ends after
    the block) not once a signal was taken, so that further ones are ignored to the end.
    Nested in another such block, or outside the main thread (where signals are the
    caller's), it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread() \
            or isinstance(signal.getsignal(signal.SIGINT), _FirstStops):
        yield
        return
    handler = _FirstStops()
    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            # ignored by the system, not by a Python handler: the interpreter's exit puts
            # the default action (ending the process by the signal) back in place of those
            signal.signal(sig, signal.SIG_IGN if keep and handler.first is not None else old)


def dask_setup(nanny) -> None:
    """Nanny preload (``preload_nanny`` of :func:`~dcbulk.engine.client.make_local_cluster`'s
    LocalCluster): block SIGINT in the nanny's thread, so that the worker processes it
    starts never take one (see the module text). Not in the main thread, where the command
    takes its Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()  # it unblocks SIGINT where it starts: first
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
