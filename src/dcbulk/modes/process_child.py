"""The program of one dcnum job in a process of its own: ``python .../process_child.py``.

:mod:`.process_run` starts it by its path (its own session, so that the whole tree can be
killed) for each attempt of a measurement's dcnum job. Run as a file, it imports only the
standard library and dcnum (not dcbulk), and so do dcnum's spawned processes, which import
the program's ``__main__`` (this file) first; the recipe brings the worker's ``sys.path``.

It reads the job's recipe (a pickled dict) from stdin, runs ``DCNumJobRunner`` in its main
thread and writes JSON lines to stdout: every
:data:`BEAT` seconds a heartbeat with dcnum's state and progress (``get_status``), at the end
one line with the outcome (``done``, ``halted`` with dcnum's reason, or ``error`` with the
pipeline's error in one line). Anything else written to stdout goes to stderr. When the
process that started it dies, it kills its own process group (dcnum's processes with it).

It does nothing at import (dcnum's processes import it as ``__mp_main__``).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(
        os.path.realpath(__file__)):
    del sys.path[0]  # this package's directory: its modules must not shadow others

import importlib
import json
import pickle
import signal
import threading
import time
import traceback

__all__ = ["BEAT", "main"]

#: seconds between two heartbeats (and two checks that the parent is alive)
BEAT = 0.5


def _emit(out, lock: threading.Lock, doc: dict) -> None:
    with lock:
        out.write(json.dumps(doc) + "\n")
        out.flush()


def _heartbeat(runner, out, lock: threading.Lock, parent: int, stop: threading.Event) -> None:
    """Report dcnum's status every :data:`BEAT` s; end the process group when orphaned."""
    while not stop.wait(BEAT):
        if os.getppid() != parent:  # the worker that started this job is gone
            os.killpg(os.getpgid(0), signal.SIGKILL)
        try:
            status = runner.get_status()
            _emit(out, lock, {"state": str(status["state"]),
                              "progress": round(float(status["progress"]), 6)})
        except Exception:  # noqa: BLE001 (a status read racing dcnum's own updates)
            continue


def _last_error(log) -> str:
    """The last ERROR line of dcnum's job log, or ''."""
    try:
        with open(log, encoding="utf-8", errors="replace") as fh:
            lines = [ln for ln in fh if " ERROR " in ln]
    except OSError:
        return ""
    return lines[-1].split(": ", 1)[-1].strip() if lines else ""


def _describe(exc: BaseException) -> str:
    reasons = getattr(exc, "reasons_list", None)  # dcnum's SegmenterNotApplicableError
    text = "; ".join(map(str, reasons)) if reasons else str(exc)
    if not text.strip() and exc.__traceback__ is not None:  # e.g. a bare assert of dcnum's
        last = traceback.extract_tb(exc.__traceback__)[-1]
        text = (f"(no message) at {os.path.basename(last.filename)}:{last.lineno}: "
                f"{last.line or ''}")
    return f"{type(exc).__name__}: {' '.join(text.split())[:400]}"


def run(recipe: dict, out, lock: threading.Lock, parent: int) -> dict:
    """Run the job of ``recipe``; return its outcome (see the module text). ``parent``:
    the pid of the process that started this one (when it changes, that one died)."""
    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob
    job = DCNumPipelineJob(path_in=recipe["path_in"], path_out=recipe["path_out"],
                           num_procs=recipe["num_procs"], **recipe["job_kwargs"])
    runner = DCNumJobRunner(job, tmp_suffix=recipe["tmp_suffix"])
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(runner, out, lock, parent, stop),
                            daemon=True, name="dcbulk-heartbeat")
    beat.start()
    try:
        runner.run()  # not started as a thread: dcnum re-raises the pipeline's error
        if runner.state == "done":
            return {"result": "done"}
        reason = _last_error(runner.path_log)
        return {"result": "halted", "error": f"dcnum halted the job in state "
                f"'{runner.state}'" + (f": {reason}" if reason else "")}
    except Exception as exc:  # noqa: BLE001 (the job's error, reported in one line)
        return {"result": "error", "error": _describe(exc)}
    finally:
        stop.set()
        runner.close(delete_temporary_files=True)
        for path in (runner.path_temp_out, runner.path_temp_in, runner.path_log):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def main() -> None:
    """Read the recipe from stdin, run it, report on stdout (module text); never returns."""
    parent = os.getppid()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints of libraries go to stderr, not into the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()
    recipe = pickle.load(sys.stdin.buffer)
    _emit(out, lock, {"state": "started", "progress": 0.0})  # alive (dcnum not yet imported)
    sys.path[:0] = [p for p in recipe.get("sys_path", ()) if p not in sys.path]
    if recipe.get("hook"):  # test-only: "module:function", called with the recipe
        module, _, name = recipe["hook"].partition(":")
        getattr(importlib.import_module(module), name)(recipe)
    t0 = time.monotonic()
    outcome = run(recipe, out, lock, parent)
    outcome["seconds"] = round(time.monotonic() - t0, 3)
    _emit(out, lock, outcome)
    out.close()
    sys.stderr.flush()
    os._exit(0)  # no wait for threads dcnum may have left behind; the parent ends the group


if __name__ == "__main__":
    main()
