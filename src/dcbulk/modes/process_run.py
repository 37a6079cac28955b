"""Running one dcnum job for a dask worker: in a child process of its own, watched, killable.

A dcnum job (``DCNumJobRunner``) that hangs cannot be stopped inside the thread that runs
it. So each attempt runs in a child process that dcbulk starts
(``python .../process_child.py``, :mod:`.process_child`) in its own session: the
worker's thread only watches it, and ends the whole process tree (the child, dcnum's
processes, their resource tracker) with one ``killpg`` when

- the job makes **no progress** for ``stall_timeout`` seconds (progress: dcnum's state or
  its progress fraction, which the child reports twice a second, or the size of dcnum's
  temporary files; each moves while a healthy job works, however long the file), or
- the file's time limit (``--timeout-per-file``, :func:`~dcbulk.partials.current_deadline`)
  runs out: the job is ended and an output it renamed into place after the limit removed.

A stalled job, a job dcnum halted (its worker processes started too late on a loaded node)
and a child that died without an answer are run again, up to ``attempts`` times in all,
then the file fails with one line; an error of the pipeline itself (e.g. a segmenter not
applicable) fails it at once. The temporary files and the log of every ended attempt are
removed.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from ..errors import FileTimeoutError, ProcessJobError, UsageError, one_line
from ..partials import current_deadline
from . import process_child

__all__ = ["ATTEMPTS", "STALL_TIMEOUT", "check_stall_timeout", "remove_files", "run_job"]

#: default seconds without progress after which a dcnum job is ended (``--stall-timeout``)
STALL_TIMEOUT = 300.0
#: attempts of a job that stalls, is halted by dcnum or dies
ATTEMPTS = 3
#: seconds between two looks at the child
_POLL = 0.25

logger = logging.getLogger(__name__)


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


def check_stall_timeout(value) -> float:
    """``value`` as seconds (> 0, finite); else a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value < float("inf"):
        raise UsageError(f"stall timeout: expected seconds > 0, got {value!r}")
    return float(value)


def temporary_files(output: str, suffix: str) -> list[str]:
    """dcnum's temporary files and log of the job writing ``output`` with ``tmp_suffix``."""
    out = Path(output)
    return [str(out.with_name(f"{out.stem}_output_{suffix}.rtdc~")),
            str(out.with_name(f"{out.stem}_input_bb_{suffix}.rtdc~")),
            str(out.with_suffix(".log"))]


class _Reader(threading.Thread):
    """Reads the child's JSON lines: its last status and its outcome."""

    def __init__(self, stream):
        super().__init__(daemon=True, name="dcbulk-dcnum-reader")
        self.stream, self.status, self.outcome = stream, None, None

    def run(self) -> None:
        for line in self.stream:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if "result" in doc:
                self.outcome = doc
            else:
                self.status = (doc.get("state"), doc.get("progress"))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (its session) and whatever descends from it."""
    import psutil
    try:
        procs = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        procs = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:  # one that left the group
        try:
            p.kill()
        except psutil.Error:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    psutil.wait_procs(procs, timeout=5)


def _attempt(recipe: dict, stall_timeout: float, deadline: float | None) -> dict:
    """Run one attempt in a child; return its outcome (``result``: done, error, halted,
    stalled, died or timeout, with ``error`` for all but done)."""
    temp = temporary_files(recipe["path_out"], recipe["tmp_suffix"])[:2]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, process_child.__file__],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                start_new_session=True)
        reader = _Reader(proc.stdout)
        reader.start()
        try:
            try:
                proc.stdin.write(pickle.dumps(recipe))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            last, changed = None, time.monotonic()
            while True:
                try:
                    proc.wait(timeout=_POLL)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                seen = (reader.status, *map(_size, temp))
                if seen != last:
                    last, changed = seen, now
                if deadline is not None and time.time() > deadline:
                    return {"result": "timeout", "error": "the file's time limit ran out"}
                if now - changed > stall_timeout:
                    state, progress = reader.status or ("starting", 0.0)
                    return {"result": "stalled", "error": (
                        f"the dcnum job made no progress for {stall_timeout:g} s (state "
                        f"'{state}', {progress or 0:.0%} done; --stall-timeout); ended")}
            reader.join(timeout=5)
            if reader.outcome is not None:
                return reader.outcome
            errors.seek(0)
            tail = [ln for ln in errors.read().decode(errors="replace").splitlines()
                    if ln.strip()][-1:]
            return {"result": "died", "error": f"the dcnum job's process ended with status "
                    f"{proc.returncode} without an answer" + (f": {tail[0]}" if tail else "")}
        finally:
            _kill_tree(proc)  # also a finished job's stragglers (dcnum's halted workers)
            reader.join(timeout=5)
            proc.stdout.close()


def run_job(source: str, output: str, *, num_procs: int, job_kwargs: dict,
            attempts: int = ATTEMPTS, stall_timeout: float = STALL_TIMEOUT,
            hook: str | None = None) -> None:
    """Run the dcnum job of ``source`` into ``output`` in a child process (module text).

    ``output`` must not exist (an output found there after a time-out is the job's and is
    removed). ``hook`` (test-only): ``"module:function"`` the child calls with its recipe
    before the job.

    Raises
    ------
    ProcessJobError
        The job failed, or stalled, was halted or died ``attempts`` times (one line).
    FileTimeoutError
        The file's time limit ran out; the job was ended, nothing of it kept.
    """
    deadline = current_deadline()
    reason = ""
    for attempt in range(1, attempts + 1):
        suffix = f"dcbulk-{uuid.uuid4().hex[:12]}"
        recipe = {"path_in": str(source), "path_out": str(output), "num_procs": num_procs,
                  "job_kwargs": job_kwargs, "tmp_suffix": suffix, "sys_path": list(sys.path),
                  "hook": hook}
        try:
            outcome = _attempt(recipe, stall_timeout, deadline)
        finally:
            remove_files(temporary_files(output, suffix))
        result, reason = outcome["result"], one_line(outcome.get("error", ""))
        late = deadline is not None and time.time() > deadline
        if result == "timeout" or late:
            remove_files([output])  # renamed into place after the limit: not kept
            raise FileTimeoutError(f"{output}: the dcnum job was ended, the file's time "
                                   f"limit ran out")
        if result == "done":
            return
        if result == "error":
            raise ProcessJobError(reason)
        logger.warning("%s: dcnum job attempt %d of %d ended: %s", source, attempt, attempts,
                       reason)
    raise ProcessJobError(f"{reason} (gave up after {attempts} attempts)")
