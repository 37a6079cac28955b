"""Ctrl-C of ``dcbulk convert`` as a terminal sends it: SIGINT to the whole process group,
at a point the test knows (a hook holds the run there), never after a sleep for luck.

- :func:`dcbulk.interrupts.stopping`: the first signal stops, further ones change nothing.
- Two quick Ctrl-Cs (30 ms apart) while threads of dcbulk's own process make the files, and
  a third once the interruption's line is out: the first stops the run in order (its
  threads end at their next block and remove their partial files before the line comes),
  the others change nothing. Before, the command returned while its threads still wrote,
  and a second Ctrl-C broke the interpreter's wait for them ("Exception ignored in:
  threading._shutdown"), leaving ``*.partial`` files, or hung with two threads on h5py's
  lock.
- Ctrl-C while the local cluster's worker processes start (still importing distributed):
  they take no SIGINT from their birth on, so the one line of the command is all the
  terminal shows. Before, each printed a KeyboardInterrupt traceback (4 of 6 runs).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import dcbulk
from dcbulk.bulk.inprocess import MARKER_NAME
from dcbulk import interrupts
from dcbulk.cli import EXIT_INTERRUPTED, EXIT_OK, main
from dcbulk.interrupts import Terminated, stopping
from fixtures import small_rtdc

SRC = Path(dcbulk.__file__).resolve().parent.parent  # where the tests import dcbulk from
LINE = "dcbulk: interrupted; re-run the same command to resume"
HOLD = 1.0  # seconds the held block takes: the stop waits for it (a block is not cut short)

# the console command (dcbulk_entry), its first block held for HOLD seconds after it says so
IN_PROCESS = textwrap.dedent(f"""\
    import sys, threading, time
    from dcbulk.bulk import filetask
    from dcbulk.engine import arrays
    filetask.DEFAULT_TASK_BYTES = 32 * 1024  # many blocks a file
    real, held = arrays.encode_rows, threading.Event()
    def encode_rows(*args, **kwargs):
        if not held.is_set():
            held.set()
            print("holding", flush=True)
            time.sleep({HOLD})
        return real(*args, **kwargs)
    arrays.encode_rows = encode_rows
    from dcbulk_entry import main
    sys.argv[0] = "dcbulk"
    sys.exit(main())
    """)

# a worker process of the local cluster (multiprocessing's spawn) held where it imports
# distributed, after it said so in a file named by its pid
HOLD_WORKERS = textwrap.dedent("""\
    import os, sys, time
    class Hold:
        def find_spec(self, name, path=None, target=None):
            if name == "distributed":
                sys.meta_path.remove(self)
                open(os.path.join(os.environ["DCBULK_TEST_HOLD"], f"starting-{os.getpid()}"),
                     "w").close()
                time.sleep(60)
            return None
    if "--multiprocessing-fork" in sys.orig_argv and os.environ.get("DCBULK_TEST_HOLD"):
        sys.meta_path.insert(0, Hold())
    """)


def _env(*front: Path, **extra: str) -> dict:
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(
        [str(p) for p in front] + [str(SRC)]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _handlers() -> list:
    return [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]


def test_only_the_first_signal_stops(monkeypatch):
    before, taken = _handlers(), []
    with stopping():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:  # the stop: further signals, also nested blocks, ignored
            taken.append("SIGINT")
            signal.raise_signal(signal.SIGINT)
            with stopping():
                signal.raise_signal(signal.SIGTERM)
    assert taken == ["SIGINT"] and _handlers() == before
    with pytest.raises(Terminated), stopping():
        signal.raise_signal(signal.SIGTERM)
    assert _handlers() == before
    monkeypatch.setattr(interrupts, "FORCE_AFTER", 0.0)  # a stop that hangs: broken off
    with pytest.raises(KeyboardInterrupt), stopping():
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    try:  # the entry point's: once a signal was taken, ignored to the process's end
        with contextlib.suppress(KeyboardInterrupt), stopping(keep=True):
            signal.raise_signal(signal.SIGINT)
        assert _handlers() == [signal.SIG_IGN, signal.SIG_IGN]
    finally:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), before):
            signal.signal(sig, handler)


def test_ctrl_c_twice_stops_an_in_process_run_in_order(tmp_path, capsys):
    src = tmp_path / "src"
    for k in range(3):
        small_rtdc(src / f"m{k}.rtdc", 400, seed=k, with_traces=True)
    dst = tmp_path / "dst"
    proc = subprocess.Popen([sys.executable, "-c", IN_PROCESS, "convert", str(src), "-o",
                             str(dst), "-q"], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        assert proc.stdout.readline() == "holding\n", err
        assert list(dst.glob("*.partial")), "no file was being written"
        t0 = time.monotonic()
        _killpg(proc, signal.SIGINT)
        time.sleep(0.03)
        _killpg(proc, signal.SIGINT)  # during the stop
        deadline = time.monotonic() + 60
        while not err and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        left = list(dst.rglob("*.partial"))  # the line comes once the threads have ended
        _killpg(proc, signal.SIGINT)  # once the line is out: while the process ends
        status = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        _killpg(proc, signal.SIGKILL)
        proc.wait()
    reader.join(10)
    assert status == EXIT_INTERRUPTED, err
    assert [line.rstrip("\n") for line in err] == [LINE]
    assert took < HOLD + 5, took
    assert not left, left
    assert not list(dst.rglob("*.partial")) and not list(dst.glob(MARKER_NAME + "*"))

    # verify names each source not made as one a run set out to make, and nothing else
    capsys.readouterr()
    assert main(["verify", str(dst)]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems, summary = lines[:-1], lines[-1]
    assert problems and all("never recorded it" in line for line in problems), lines
    made = sorted(p.name for p in dst.glob("*.rtdc"))
    assert summary.startswith(f"dcbulk verify: {len(made) + len(problems)} file"), lines
    assert f", {len(made)} equal," in summary, lines
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == EXIT_OK
    assert main(["verify", str(dst)]) == EXIT_OK


def _sigint_taken(pid: int) -> bool:
    """Whether SIGINT would reach the process ``pid`` (neither blocked nor ignored)."""
    fields = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    bit = 1 << (signal.SIGINT - 1)
    return not (int(fields["SigBlk"], 16) & bit or int(fields["SigIgn"], 16) & bit)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc/<pid>/status")
def test_ctrl_c_while_the_workers_start_is_one_line(tmp_path):
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 40, seed=1)
    hooks, held = tmp_path / "hooks", tmp_path / "held"
    hooks.mkdir()
    held.mkdir()
    (hooks / "sitecustomize.py").write_text(HOLD_WORKERS)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dcbulk_entry import main; "
         "sys.argv[0] = 'dcbulk'; sys.exit(main())", "convert", str(src.parent), "-o",
         str(tmp_path / "dst"), "--workers", "2", "-q"], start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(hooks, DCBULK_TEST_HOLD=str(held)), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not list(held.iterdir()) and proc.poll() is None:
            assert time.monotonic() < deadline, "no worker process started"
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        starting = [int(p.name.split("-")[1]) for p in held.iterdir()]
        # a terminal's Ctrl-C reaches it too: from its start on, it must not take it
        assert not any(_sigint_taken(pid) for pid in starting)
        _killpg(proc, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        _killpg(proc, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.splitlines() == [LINE] and not out, err
