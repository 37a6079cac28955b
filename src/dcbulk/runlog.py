"""Where a run's logs go: dask's and the workers' messages to a log file, one line per problem
on the terminal.

:func:`run_log` sends the ``distributed`` (scheduler, nanny, client), ``tornado``, ``bokeh``
and ``dcbulk`` loggers of this process to ``<directory>/<kind>-<UTC time>-<pid>.log`` and
makes every worker process that a local cluster (re)starts in the block run
:func:`dask_setup` (a dask preload): its stdout and stderr go to the same file (Python
tracebacks, HDF5's own messages), and it ignores SIGINT, so Ctrl-C of the process group stops
the run through the client (which closes the cluster) instead of printing each worker's
``KeyboardInterrupt``. :func:`terminal_warnings` puts dcbulk's own warnings on the terminal,
one line each, once (except records logged with ``extra={"terminal": False}``: those the
command reports itself). :func:`logged_client` opens the run's client so that a cluster that
fails while it starts is one line naming the log file that holds its traceback.
Batch clusters (dask-jobqueue) keep their workers' logs where their job scripts put them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from os import PathLike

from .bulk.manifest import MANIFEST_NAME
from .cluster import open_client
from .errors import ConfigError, DcbulkError, OutputDirError, one_line
from .nofollow import make_dir

__all__ = ["LOG_DIRNAME", "dask_setup", "log_dir_for", "logged_client", "run_log",
           "terminal_warnings"]

#: directory inside the output directory that holds the run logs
LOG_DIRNAME = "dcbulk-logs"
_ENV = "DCBULK_WORKER_LOG"
_QUIET_LOGGERS = ("distributed", "tornado", "bokeh", "asyncio")


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return "dcbulk: " + one_line(record.getMessage(), 1 << 16)


class _Once(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "per_file", False) or not getattr(record, "terminal", True):
            return False  # per-file failures: in the summary; terminal=False: told otherwise
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


@contextlib.contextmanager
def terminal_warnings(stream=None) -> Iterator[None]:
    """dcbulk's warnings to ``stream`` (default stderr) for the block: one line each, each
    message once, per-file failures left to the summary."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine())
    handler.addFilter(_Once())
    ours = logging.getLogger("dcbulk")
    ours.addHandler(handler)
    try:
        yield
    finally:
        ours.removeHandler(handler)


def log_dir_for(path: str | PathLike) -> str:
    """Where the log of a run on ``path`` goes: a directory's ``dcbulk-logs``; for a file,
    that of the nearest enclosing output directory (one with a manifest), else beside it."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return os.path.join(path, LOG_DIRNAME)
    here = os.path.dirname(path)
    while True:
        if os.path.isfile(os.path.join(here, MANIFEST_NAME)):
            return os.path.join(here, LOG_DIRNAME)
        parent = os.path.dirname(here)
        if parent == here:
            return os.path.join(os.path.dirname(path), LOG_DIRNAME)
        here = parent


class _RunLogFile(logging.FileHandler):
    """The run's log file, on the output's device: a record that cannot be written there
    (e.g. the disk is full) is dropped instead of printing a traceback to the terminal,
    where the run reports the full disk in one line per file."""

    def _open(self):
        """A new file of this name only: never appended to through a link."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o644)
        return open(fd, "w", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def _new_log_file(directory: str, kind: str) -> logging.FileHandler:
    """A handler on a new file ``<kind>-<UTC time>-<pid>[-k].log`` in ``directory``: two
    runs of one process within a second (the Python API, the tests) get two files."""
    make_dir(directory)  # a dcbulk-logs that is a link is refused
    stem = f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    for k in range(1, 100):
        name = f"{stem}.log" if k == 1 else f"{stem}-{k}.log"
        try:  # O_EXCL: an existing name (also a link of that name) is never opened
            return _RunLogFile(os.path.join(os.path.abspath(directory), name),
                               encoding="utf-8", errors="backslashreplace")
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free log file name for {stem}")


def _log_file(directory: str | PathLike, kind: str,
              fallback: bool = False) -> logging.FileHandler:
    try:
        return _new_log_file(os.fspath(directory), kind)
    except OSError as exc:
        if not fallback:  # a job's directory is its output directory: it must be writable
            raise OutputDirError(f"{os.fspath(directory)}: cannot create the log directory "
                                 f"or a log file in it ({exc.strerror or exc})") from exc
        # e.g. verifying a read-only archive: the log goes to the temporary directory
        return _new_log_file(os.path.join(tempfile.gettempdir(), LOG_DIRNAME), kind)


@contextlib.contextmanager
def run_log(directory: str | PathLike, *, kind: str = "convert",
            fallback: bool = False, cluster: bool = True) -> Iterator[str]:
    """Send this run's logs to a new file ``<kind>-<UTC time>-<pid>.log`` in ``directory``;
    yield its path.

    ``kind`` is the job's name (``convert``, ``process``, ...) or ``verify``. With
    ``fallback`` (``verify``: it reads, the archive may be read-only) the log goes to the
    temporary directory's ``dcbulk-logs`` when ``directory`` cannot be written. Neither the
    directory nor the file is ever a symbolic link (:mod:`dcbulk.nofollow`: refused).
    With ``cluster`` (the run starts or joins one) distributed is imported first, so that
    the handlers its import sets up are replaced too; a run made in dcbulk's own process
    does without it.
    """
    import dask
    to_file = _log_file(directory, kind, fallback)
    path = to_file.baseFilename
    to_file.setFormatter(logging.Formatter(
        "%(asctime)s %(processName)s %(name)s %(levelname)s: %(message)s"))
    if cluster:
        import distributed  # noqa: F401  (sets up its loggers first: replaced here)
    saved = []
    names = set(_QUIET_LOGGERS) | {
        name for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.handlers
        and name.split(".")[0] in _QUIET_LOGGERS}
    for name in sorted(names):
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.propagate))
        lg.handlers[:] = [to_file]
        lg.propagate = False
    ours = logging.getLogger("dcbulk")
    ours.addHandler(to_file)
    old_level = ours.level
    ours.setLevel(logging.INFO)
    preload = list(dask.config.get("distributed.worker.preload", []) or [])
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ[_ENV] = path
    try:
        with dask.config.set({"distributed.worker.preload": [*preload, __name__],
                              "distributed.nanny.pre-spawn-environ": environ}):
            yield path
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers[:] = handlers
            lg.propagate = propagate
        ours.removeHandler(to_file)
        ours.setLevel(old_level)
        to_file.close()


@contextlib.contextmanager
def logged_client(log_path: str, **client_args) -> Iterator[tuple]:
    """:func:`dcbulk.cluster.open_client` inside :func:`run_log`: a cluster that fails while
    it starts (e.g. "Nanny failed to start") becomes one line naming ``log_path``, where its
    traceback goes.

    Raises
    ------
    ConfigError
        For any failure while the client opens that is not a dcbulk error already.
    """
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_client(**client_args))
        except DcbulkError:  # one line already (bad configuration, unreachable scheduler)
            raise
        except Exception as exc:
            logging.getLogger(__name__).error("the cluster failed to start", exc_info=True,
                                              extra={"terminal": False})
            raise ConfigError(f"the cluster failed to start ({type(exc).__name__}: "
                              f"{one_line(exc, 300)}); details in {log_path}") from exc
        yield opened


def dask_setup(worker) -> None:
    """Preload hook run by each worker process of :func:`run_log` (see the module text)."""
    path = os.environ.get(_ENV)
    if not path:
        return
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave it
        pass
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
