"""Small runs made by threads of dcbulk's own process (dcbulk.bulk.inprocess)."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.bulk import inprocess
from dcbulk.bulk.filetask import ConvertJob
from dcbulk.bulk.inprocess import MARKER_NAME, THREADED_FILE_BYTES, THREADED_RUN_BYTES, \
    THREADED_RUN_FILES, runs_in_process
from dcbulk.cli import EXIT_OK, main
from fixtures import small_rtdc
from helpers import assert_features_equal


def _markers(directory) -> list[str]:
    """The in-process runs' markers in ``directory`` (one per run)."""
    return sorted(str(p) for p in directory.glob(MARKER_NAME + "*"))


def _small_archive(root, n: int = 3):
    kinds = ["none", "zstd:5", "gzip:4"]  # encoded, copied as stored, decoded and encoded
    return [small_rtdc(root / f"m{k}.rtdc", 20 + 7 * k, seed=k, with_traces=True,
                       compression=kinds[k % len(kinds)], with_contour=k == 0)
            for k in range(n)]


def test_a_small_run_is_made_in_process_without_a_cluster(tmp_path, monkeypatch):
    import dcbulk.bulk.executor as executor
    monkeypatch.setattr(executor, "client_context",
                        lambda *a, **k: pytest.fail("a cluster was started for a small run"))
    paths = _small_archive(tmp_path / "src")
    dst = tmp_path / "dst"
    report = dcbulk.convert_archive(tmp_path / "src", dst)
    assert report.ok and report.count("done") == len(paths) and report.dashboard is None
    for path in paths:
        assert_features_equal(path, dst / path.name)
    assert not _markers(dst)
    assert not list(dst.rglob("*.partial"))
    again = dcbulk.convert_archive(tmp_path / "src", dst)
    assert again.count("skipped") == len(paths)


@pytest.mark.parametrize("ancillary", [False, True])
def test_a_small_condense_is_made_in_process_as_on_a_cluster(tmp_path, monkeypatch, client,
                                                            ancillary):
    """condense of a few small files starts no cluster (it did: 4 small files 8.6 s instead
    of 3.0 s); its outputs' stored chunks are those a cluster run writes, and verify."""
    import dcbulk.bulk.executor as executor
    paths = _small_archive(tmp_path / "src")
    on_cluster = dcbulk.modes.condense(tmp_path / "src", tmp_path / "c", client=client,
                                       ancillary=ancillary)
    monkeypatch.setattr(executor, "client_context",
                        lambda *a, **k: pytest.fail("a cluster was started for a small run"))
    report = dcbulk.modes.condense(tmp_path / "src", tmp_path / "dst", ancillary=ancillary)
    assert on_cluster.ok and report.ok and report.dashboard is None
    assert report.count("done") == len(paths)
    for path in paths:
        with h5py.File(tmp_path / "c" / path.name) as want, \
                h5py.File(tmp_path / "dst" / path.name) as got:
            assert sorted(got["events"]) == sorted(want["events"])
            for name, dset in want["events"].items():
                n = dset.id.get_num_chunks()
                assert n and [got["events"][name].id.read_direct_chunk(
                    got["events"][name].id.get_chunk_info(i).chunk_offset) for i in range(n)] \
                    == [dset.id.read_direct_chunk(dset.id.get_chunk_info(i).chunk_offset)
                        for i in range(n)], name
    assert dcbulk.verify(tmp_path / "dst").ok
    assert not _markers(tmp_path / "dst")


def test_an_in_process_condense_imports_no_distributed(tmp_path):
    """condense computes its dask arrays in the file's thread with dask's synchronous
    scheduler, given as the function: given as "sync", dask imported distributed to look
    for a default client (0.3 s of a small command)."""
    src = small_rtdc(tmp_path / "s" / "a.rtdc", 30, seed=2, with_traces=True)
    code = ("import sys; from dcbulk.cli import main; "
            f"rc = main(['condense', {str(src.parent)!r}, '-o', {str(tmp_path / 'o')!r}, "
            "'--ancillary', '-q']); "
            "print(rc, sorted(m for m in ('distributed', 'tornado', 'bokeh') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split("\n")[-2] == "0 []", run.stdout + run.stderr
    assert dcbulk.verify(tmp_path / "o").ok


def test_a_time_limit_gets_a_cluster(tmp_path):
    """A thread past its time limit cannot be stopped (and would keep the process from
    exiting): a run with one is made on a cluster, whose workers end with it."""
    _small_archive(tmp_path / "src", 1)
    report = dcbulk.convert_archive(tmp_path / "src", tmp_path / "dst", timeout=600)
    assert report.ok and report.dashboard is not None


def test_cli_uses_a_cluster_when_one_is_asked_for(tmp_path, capsys):
    _small_archive(tmp_path / "src", 2)
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "a")]) == EXIT_OK
    cap = capsys.readouterr()
    assert "made by threads of this process" in cap.err and "; page:" not in cap.out
    assert f"dcbulk {dcbulk.__version__}: 2 files, " in cap.err, cap.err
    _small_archive(tmp_path / "one", 1)
    assert main(["convert", str(tmp_path / "one"), "-o", str(tmp_path / "c")]) == EXIT_OK
    assert f"dcbulk {dcbulk.__version__}: 1 file, " in capsys.readouterr().err  # not "1 files"
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "b"),
                 "--workers", "1"]) == EXIT_OK
    cap = capsys.readouterr()
    assert "made by threads of this process" not in cap.err and "; page: http" in cap.out


def test_the_decision(tmp_path, caplog):
    job = ConvertJob()
    assert runs_in_process(job, str(tmp_path), [1, 2, 3])
    few, big = THREADED_RUN_FILES, THREADED_FILE_BYTES
    assert runs_in_process(job, str(tmp_path), [1] * few)
    assert not runs_in_process(job, str(tmp_path), [1] * (few + 1))  # many small files
    # many files, large on average (threads scale), up to a short run's size
    assert runs_in_process(job, str(tmp_path), [2 * big] + [big - 1] * few)
    assert not runs_in_process(job, str(tmp_path), [big + 1] + [big - 1] * few)
    assert runs_in_process(job, str(tmp_path), [THREADED_RUN_BYTES])
    assert not runs_in_process(job, str(tmp_path), [THREADED_RUN_BYTES, 1])
    assert not runs_in_process(job, str(tmp_path), [])
    assert not runs_in_process(job, str(tmp_path), [1], timeout=60)

    class Other(ConvertJob):
        in_process = False
    assert not runs_in_process(Other(), str(tmp_path), [1])
    (tmp_path / MARKER_NAME).write_text("a run that died\n")
    with caplog.at_level(logging.WARNING, logger=inprocess.__name__):
        assert not runs_in_process(job, str(tmp_path), [1])
    assert "ended abruptly" in caplog.text


_HOLD_MARKER = """\
import sys
from dcbulk.bulk.inprocess import in_process_run
with in_process_run(sys.argv[1]):
    print("marked", flush=True)
    sys.stdin.read()  # until the test closes it
"""


def test_a_marker_of_pid_0_or_of_a_pid_used_again_is_a_dead_runs(tmp_path):
    """pid 0 is os.kill's own process group, always there: such a marker was a live run's
    for ever (verify: "a run that did not end", every time). A marker older than the live
    process of its pid was written by an earlier process of that pid: dead too."""
    host = socket.gethostname()
    zero = tmp_path / f"{MARKER_NAME}-{host}-0"
    zero.write_text("x")
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        used_again = tmp_path / f"{MARKER_NAME}-{host}-{later.pid}"
        used_again.write_text("x")
        os.utime(used_again, (time.time() - 3600,) * 2)  # written an hour before it started
        mine = tmp_path / f"{MARKER_NAME}-{host}-{os.getpid()}"
        mine.write_text("x")  # this process, started before it: a live run's
        assert not runs_in_process(ConvertJob(), str(tmp_path), [1])
        inprocess.clear_marker(str(tmp_path))
        assert _markers(tmp_path) == [str(mine)]
    finally:
        later.kill()
        later.wait()


def test_a_run_going_on_in_the_same_directory_is_not_taken_for_a_dead_one(tmp_path, capsys,
                                                                         caplog):
    """Two joins writing into one directory shared one marker: the second warned that "an
    earlier run ... ended abruptly", used a cluster, and removed the first's marker. Each
    run has its own marker now; one of a live process is left alone, one of a dead
    process still sends the next run to a cluster."""
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = small_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = small_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:time": "10:00:09"})
    dst = tmp_path / "dst"
    src_dir = os.path.dirname(os.path.dirname(dcbulk.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    other = subprocess.Popen([sys.executable, "-c", _HOLD_MARKER, str(dst)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:  # another run, made in its process, going on in dst
        assert other.stdout.readline() == "marked\n"
        (theirs,) = _markers(dst)
        with caplog.at_level(logging.WARNING):
            assert main(["join", str(a), str(b), "-o", str(dst / "j.rtdc")]) == EXIT_OK
        err = capsys.readouterr().err
        assert "ended abruptly" not in err + caplog.text, err
        assert "made by threads of this process" in err, err
        assert _markers(dst) == [theirs]  # left to its run
        other.stdin.close()
        assert other.wait(timeout=60) == 0
        assert not _markers(dst)
    finally:
        other.kill()
        other.wait()
    killed = subprocess.Popen([sys.executable, "-c", _HOLD_MARKER, str(dst)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline() == "marked\n"
    finally:
        killed.kill()
        killed.wait()
    (dead,) = _markers(dst)
    with caplog.at_level(logging.WARNING, logger=inprocess.__name__):
        assert not runs_in_process(dcbulk.modes.JoinJob(), str(dst), [1])
    assert "ended abruptly" in caplog.text and dead in caplog.text
    inprocess.clear_marker(str(dst))
    assert not _markers(dst)


def test_a_killed_in_process_run_is_made_again_on_a_cluster(tmp_path):
    """SIGKILL in the middle of an in-process run leaves its marker; the next run makes the
    files on a cluster (where a file that kills its process fails alone), completes every
    output, and removes the marker and the dead run's partial files."""
    src = tmp_path / "src"
    paths = [small_rtdc(src / f"f{k:02d}.rtdc", 120, seed=k, compression="gzip:1",
                        with_traces=True) for k in range(THREADED_RUN_FILES)]
    assert len(paths) <= THREADED_RUN_FILES
    dst = tmp_path / "dst"
    exe = os.path.join(os.path.dirname(sys.executable), "dcbulk")
    proc = subprocess.Popen([exe, "convert", str(src), "-o", str(dst), "-q"],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(dst.glob("f*.rtdc")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run ended before it could be killed")
    assert _markers(dst)
    report = dcbulk.convert_archive(src, dst)
    assert report.ok and report.dashboard is not None  # made on a (local) cluster
    for path in paths:
        assert_features_equal(path, dst / path.name)
    assert not _markers(dst)
    assert not list(dst.rglob("*.partial"))


def test_ctrl_c_of_an_in_process_run_ends_its_threads_and_leaves_nothing(tmp_path, monkeypatch):
    """Ctrl-C while a file's blocks wait in the block pool: the command returns 130, every
    thread of the run ends (a writer used to wait forever for the blocks the stopped pool
    dropped, so the process never exited), and no partial or marker is left."""
    import threading

    from dcbulk.bulk import filetask
    from dcbulk.cli import EXIT_INTERRUPTED
    from dcbulk.engine import arrays
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 400, seed=5, with_traces=True)
    monkeypatch.setattr(filetask, "DEFAULT_TASK_BYTES", 32 * 1024)  # many blocks
    real, started = arrays.encode_rows, threading.Event()

    def slow(*args, **kwargs):  # blocks pile up in the pool's queue
        if not started.is_set():
            started.set()
            threading.Timer(0.2, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT)).start()
        time.sleep(0.05)
        return real(*args, **kwargs)
    monkeypatch.setattr(arrays, "encode_rows", slow)
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == EXIT_INTERRUPTED
    assert started.is_set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            t.name.startswith(("dcbulk-file", "dcbulk-block")) for t in threading.enumerate()):
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith(("dcbulk-file", "dcbulk-block"))]
    assert not list(dst.rglob("*.partial")) and not _markers(dst)
    assert not (dst / "a.rtdc").exists()


@pytest.mark.parametrize("command", ["convert", "split", "join"])
def test_an_in_process_run_imports_neither_distributed_nor_dask_array(tmp_path, command):
    """The fixed cost of a small command: a run without a cluster never imports
    distributed (0.3 s of a 0.6 s command on 2 cores) nor dask.array (with scipy, 0.3-0.6 s
    of a join's planning), and its output is complete."""
    src = small_rtdc(tmp_path / "a.rtdc", 30, seed=2, with_traces=True, compression="gzip:1")
    other = small_rtdc(tmp_path / "b.rtdc", 20, seed=3, with_traces=True)
    out = tmp_path / "o"
    args = {"convert": [str(src), "-o", str(out)],
            "split": [str(src), "-o", str(out), "--events-per-file", "10"],
            "join": [str(src), str(other), "-o", str(out / "j.rtdc")]}[command]
    code = ("import sys; from dcbulk.cli import main; "
            f"rc = main([{command!r}, *{args!r}, '-q']); "
            "print(rc, sorted(m for m in ('distributed', 'tornado', 'bokeh', 'dask.array')"
            " if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.stdout.split("\n")[-2] == "0 []", run.stdout + run.stderr
    if command == "convert":
        assert_features_equal(src, out / "a.rtdc")
    elif command == "split":
        assert sorted(p.name for p in out.glob("*.rtdc")) == [f"a_000{k}.rtdc" for k in (1, 2, 3)]
    else:
        with h5py.File(out / "j.rtdc") as h5, h5py.File(src) as a, h5py.File(other) as b:
            for name in ("image", "trace/fl1_raw", "deform"):
                np.testing.assert_array_equal(h5["events"][name][:], np.concatenate(
                    [a["events"][name][:], b["events"][name][:]]))


def test_verify_is_made_in_process_writes_nothing_and_finds_a_difference(tmp_path,
                                                                          monkeypatch):
    """A small verify needs no cluster (a 1.6 GB file: 6.4 s here vs 10.4 s with one); its
    checks, split into row tasks, run on the block pool; nothing enters the checked tree."""
    import dcbulk.bulk.executor as executor
    from dcbulk.verify import checks
    _small_archive(tmp_path / "src")
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive(tmp_path / "src", dst).ok
    monkeypatch.setattr(executor, "client_context",
                        lambda *a, **k: pytest.fail("a cluster was started for a small verify"))
    monkeypatch.setattr(checks, "FILE_TASK_BYTES", 0)  # every output: sub-tasks of rows
    monkeypatch.setattr(checks, "TASK_BYTES", 1024)
    tree = sorted((p.relative_to(dst), p.stat().st_mtime_ns) for p in dst.rglob("*"))
    report = dcbulk.verify(dst)
    assert report.ok and report.count("done") == 3 and report.dashboard is None
    assert sorted((p.relative_to(dst), p.stat().st_mtime_ns) for p in dst.rglob("*")) == tree
    with h5py.File(dst / "m1.rtdc", "a") as h5:
        h5["events/deform"][3] += 1
    problems = dcbulk.verify(dst).problems
    assert any("feature 'deform'" in p and "event 3" in p for p in problems), problems


def test_verify_decides_by_what_it_reads_output_and_source(tmp_path, monkeypatch):
    """A verify reads each output and its source: a run whose outputs are small on disk but
    whose sources are large is made in dcbulk's process, as the conversion was."""
    import dcbulk.bulk.executor as executor
    import dcbulk.bulk.inprocess as inprocess
    _small_archive(tmp_path / "src")
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive(tmp_path / "src", dst).ok
    outputs = sorted(dst.glob("*.rtdc"))
    sources = [tmp_path / "src" / p.name for p in outputs]
    out_avg = sum(p.stat().st_size for p in outputs) / len(outputs)
    read_avg = out_avg + sum(p.stat().st_size for p in sources) / len(sources)
    assert len(outputs) == 3 and read_avg > out_avg + 1
    monkeypatch.setattr(inprocess, "THREADED_RUN_FILES", 2)  # 3 files: too many ...
    monkeypatch.setattr(inprocess, "THREADED_FILE_BYTES", int(out_avg) + 1)  # ... unless large
    monkeypatch.setattr(executor, "client_context",
                        lambda *a, **k: pytest.fail("a cluster was started for a verify "
                                                    "that reads large files"))
    report = dcbulk.verify(dst)
    assert report.ok and report.count("done") == 3 and report.dashboard is None
    assert sorted(r.bytes_in for r in report.files) == sorted(
        o.stat().st_size + s.stat().st_size for o, s in zip(outputs, sources))
