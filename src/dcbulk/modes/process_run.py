"""Running one dcnum job inside a dask worker: its processes, its retries, its leftovers.

dcnum (``DCNumJobRunner``) spawns processes; in a dask worker they would first import the
program that started the cluster, a job halted because its processes started too late on
a loaded node leaves some of them running, and its temporary files stay on error. This
module runs a job so that none of that outlives it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import types
import uuid
from collections.abc import Iterable, Iterator

__all__ = ["remove_files", "run_job"]


def remove_files(paths: Iterable[str]) -> int:
    """Delete the files that exist; return how many."""
    count = 0
    for path in paths:
        try:
            os.unlink(path)
            count += 1
        except FileNotFoundError:
            pass
    return count


def run_job(job, *, attempts: int = 3) -> None:
    """Run one dcnum job in this thread; its temporary files go whatever happens.

    dcnum halts a job whose worker processes do not start within its time limit (10 s per
    worker, which a heavily loaded node exceeds) without an error: such a job is run once
    more (twice), then fails with the reason from dcnum's log.
    """
    import psutil
    from dcnum.logic import DCNumJobRunner
    for attempt in range(1, attempts + 1):
        runner = DCNumJobRunner(job, tmp_suffix=f"dcbulk-{uuid.uuid4().hex[:12]}")
        halted = None
        before = {p.pid for p in psutil.Process().children()}
        try:
            with _plain_main():
                runner.run()  # not started as a thread: dcnum re-raises the pipeline's error
            if runner.state != "done":
                halted = (f"dcnum halted the job in state '{runner.state}'"
                          + (f": {reason}" if (reason := _last_error(runner.path_log)) else ""))
        finally:
            runner.close(delete_temporary_files=True)
            _reap(before)
            remove_files([str(runner.path_temp_out), str(runner.path_temp_in), str(runner.path_log)])
        if halted is None:
            return
        if attempt == attempts:
            raise RuntimeError(halted)


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """Hide this process's ``__main__`` while a dcnum job starts its processes.

    Spawned processes import the parent's ``__main__`` before anything else; in a dask
    worker that is the program that started the cluster (dcbulk's CLI, pytest, a notebook),
    which dcnum's processes do not need.
    The worker runs one dcnum job at a time (its ``dcnum`` resource); a task of another
    kind that unpickles a function of ``__main__`` meanwhile would not find it.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _reap(before: set[int], timeout: float = 5.0) -> None:
    """End the processes a dcnum job left running (a halted job does not stop the workers
    that started too late; they would hang on as orphans). multiprocessing's resource
    tracker, started once per worker process, stays."""
    import psutil
    left = []
    for proc in psutil.Process().children():
        try:
            if proc.pid in before or "resource_tracker" in " ".join(proc.cmdline()):
                continue
            proc.terminate()
            left.append(proc)
        except psutil.Error:
            continue
    _gone, alive = psutil.wait_procs(left, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _last_error(log) -> str:
    """The last ERROR line of dcnum's job log (before it is removed), or ''."""
    try:
        lines = [ln for ln in open(log, encoding="utf-8", errors="replace") if " ERROR " in ln]
    except OSError:
        return ""
    return lines[-1].split(": ", 1)[-1].strip() if lines else ""


