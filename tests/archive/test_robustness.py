"""One focused test per defect of issue 10 (archive robustness); the fault-injection suite with
real kills and full disks is tests/test_faults.py."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcbulk.bulk import convert_archive, discover_sources
from dcbulk.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from dcbulk.errors import SourceNotFoundError, SourceError

from fixtures import small_rtdc, small_sources
from helpers import assert_features_equal


@pytest.fixture
def two(tmp_path):
    src = tmp_path / "src"
    return src, small_sources(src, ["m0.rtdc", "m1.rtdc"], step=10, with_traces=True)


def _hold_lock(directory) -> subprocess.Popen:
    code = ("import sys, time\nfrom dcbulk.bulk.lock import output_lock\n"
            f"with output_lock({str(directory)!r}):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# -- defect 1: one run per output directory (a live second run: tests/faults) --------------
def test_a_lock_left_by_a_killed_run_blocks_nobody(two, tmp_path, capsys, client):
    src, files = two
    dst = tmp_path / "dst"
    holder = _hold_lock(dst)
    try:
        assert main(["convert", str(src), "-o", str(dst), "-q"]) == EXIT_ERROR
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert not list(dst.rglob("*.rtdc"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the dead run's lock: the next run goes ahead
    report = convert_archive([src], dst, client=client)
    assert report.ok and report.count("done") == 2


# -- defect 2: no orphan .partial after a run --------------------------------------------
def test_a_rerun_with_nothing_to_do_removes_orphan_partials(two, tmp_path, client):
    src, files = two
    dst = tmp_path / "dst"
    assert convert_archive([src], dst, client=client).ok
    orphan = dst / "m0.rtdc.0123456789ab.partial"  # what a killed writer worker leaves
    orphan.write_bytes(b"half a file")
    again = convert_archive([src], dst, client=client)
    assert again.count("skipped") == 2
    assert not list(dst.rglob("*.partial"))


# -- defect 4: --no-resume without --force never overwrites --------------------------------
def test_no_resume_without_force_does_not_overwrite(two, tmp_path, capsys, client):
    src, files = two
    dst = tmp_path / "dst"
    assert convert_archive([src], dst, client=client).ok
    before = {p: p.read_bytes() for p in dst.glob("*.rtdc")}
    status = main(["convert", str(src), "-o", str(dst), "--no-resume", "-q"])
    err = capsys.readouterr().err
    assert status == EXIT_ERROR and "--force" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in dst.glob("*.rtdc")} == before
    assert main(["convert", str(src), "-o", str(dst), "--no-resume", "--force", "-q"]) == EXIT_OK
    capsys.readouterr()
    for f in files:
        assert_features_equal(f, dst / f.name)


# -- defect 5: wrong usage found at once, one line, exit 2 (or 3) ------------------------
@pytest.mark.parametrize("args, exit_status, words", [
    (["--filter", "nosuchfeat < 1"], EXIT_USAGE, "'nosuchfeat' is not a dclab feature"),
    (["--features", "deform,nosuch"], EXIT_USAGE, "'nosuch' is not a dclab feature"),
    (["--memory-limit", "lots"], EXIT_USAGE, "--memory-limit lots"),
    (["--memory-limit", "1B"], EXIT_USAGE, "too small for a dask worker"),
    # dask's parse_bytes: int(infinity), an OverflowError traceback
    (["--memory-limit", "1e400"], EXIT_USAGE, "dcbulk: usage error: --memory-limit 1e400: "
     "not a size (use e.g. 4GB, 4GiB, 0.5 for half the memory, or auto)"),
    (["--memory-limit", "1e400GB"], EXIT_USAGE, "--memory-limit 1e400GB: not a size"),
    (["--compression", "zstd:99"], EXIT_USAGE, "invalid compression 'zstd:99'"),
    (["--filter", "deform << 1"], EXIT_USAGE, "'LShift' is not allowed"),
    # each file failed: "ValueError: input operand has more dimensions than allowed ..."
    (["--filter", "image > 0"], EXIT_USAGE, "'image' is not a scalar feature"),
    # argparse's errors printed the whole usage (12 lines) first
    (["--features", ","], EXIT_USAGE, "argument --features: no name in ','"),
    (["--workers", "0"], EXIT_USAGE, "argument --workers: must be at least 1, got 0"),
])
def test_usage_errors_before_any_cluster(two, tmp_path, capsys, args, exit_status, words):
    src, files = two
    dst = tmp_path / "dst"
    t0 = time.perf_counter()
    assert main(["convert", str(src), "-o", str(dst), *args]) == exit_status
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert "dashboard" not in err and "Traceback" not in err
    assert not dst.exists()


@pytest.mark.parametrize("option", ["--workers", "--threads-per-worker", "--max-open-outputs",
                                    "--jobs"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_counts_below_one_are_usage_errors(two, tmp_path, capsys, option, value):
    src, files = two
    assert main(["convert", str(src), "-o", str(tmp_path / "dst"), option, value]) == EXIT_USAGE
    assert f"{option}: must be at least 1, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "dst").exists()


def test_a_valid_feature_missing_from_one_file_stays_a_per_file_error(two, tmp_path, client):
    src, files = two
    with h5py.File(files[1], "a") as h5:
        del h5["events/area_um"]
    report = convert_archive([src], tmp_path / "dst", filter="area_um > 0", client=client)
    assert report.count("done") == 1 and report.count("failed") == 1
    assert "area_um" in report.failed[0].error


def test_an_output_directory_inside_a_source_is_a_usage_error(two, capsys):
    src, files = two
    assert main(["convert", str(src), "-o", str(src / "converted"), "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "inside the source" in err and len(err.strip().splitlines()) == 1
    assert not (src / "converted").exists()


def test_an_output_directory_that_cannot_be_created_is_one_line_exit_3(two, tmp_path, capsys):
    src, files = two
    (tmp_path / "plain-file").write_bytes(b"")
    assert main(["convert", str(src), "-o", str(tmp_path / "plain-file" / "dst"), "-q"]) \
        == EXIT_ERROR
    err = capsys.readouterr().err
    assert "cannot create" in err and len(err.strip().splitlines()) == 1, err
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert main(["convert", str(src), "-o", str(ro / "dst"), "-q"]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "Permission denied" in err and len(err.strip().splitlines()) == 1


# -- defect 6: one line per error ---------------------------------------------------------
def test_quiet_prints_no_banner_and_logs_go_to_a_named_file(two, tmp_path):
    src, files = two
    dst = tmp_path / "dst"
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", "convert", str(src), "-o",
                           str(dst), "--workers", "1", "-q"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stderr == ""  # no banner, no dask chatter
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 1 and "log: " in summary[0]
    log = Path(summary[0].split("log: ")[1])
    assert log.is_file() and log.parent == dst / "dcbulk-logs"


def test_the_unequal_length_error_is_short(tmp_path, client):
    path = small_rtdc(tmp_path / "u.rtdc", 50, seed=1, with_traces=True)
    with h5py.File(path, "a") as h5:
        data = h5["events/deform"][:-1]
        del h5["events/deform"]
        h5["events/deform"] = data
        for i in range(60):  # many features: the message must not list them all
            h5[f"events/userdef{i % 10}" if i < 10 else f"events/ml_score_{i:03d}"] = \
                np.zeros(50)
    report = convert_archive([path], tmp_path / "dst", client=client)
    message = report.failed[0].error
    assert "differ in length" in message and "deform" in message and "49" in message
    assert len(message) < 400, message


# -- defect 7: symbolic link loops and directories named x.rtdc ----------------------------
def test_symlink_loops_are_reported_and_a_glob_of_loops_only_is_an_error(tmp_path, caplog):
    root = tmp_path / "arch"
    (root / "sub").mkdir(parents=True)
    small_rtdc(root / "sub" / "good.rtdc", 20, seed=1, with_traces=True)
    os.symlink("self.rtdc", root / "self.rtdc")
    os.symlink("..", root / "sub" / "up")
    (root / "odd.rtdc").mkdir()
    with caplog.at_level(logging.WARNING, logger="dcbulk"):
        entries = discover_sources([root])
    assert [e.relpath for e in entries] == ["sub/good.rtdc"]
    text = caplog.text
    assert "self.rtdc: symbolic link loop" in text
    assert f"{root / 'sub' / 'up'}" in text and "walked already" in text
    assert "odd.rtdc is a directory" in text
    with pytest.raises(SourceNotFoundError, match="symbolic link loops"):
        discover_sources([str(root / "s*.rtdc")])


def test_a_directory_of_symlink_loops_only_is_an_error_naming_each_loop(tmp_path, capsys):
    loops = tmp_path / "loops"
    loops.mkdir()
    os.symlink("b.rtdc", loops / "a.rtdc")
    os.symlink("a.rtdc", loops / "b.rtdc")
    os.symlink(".", loops / "here")
    with pytest.raises(SourceNotFoundError, match="symbolic link loops") as exc:
        discover_sources([loops])
    assert str(loops) in str(exc.value)
    dst = tmp_path / "dst"
    assert main(["convert", str(loops), "-o", str(dst), "-q"]) == EXIT_ERROR
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 4, err
    assert err[0].endswith("a.rtdc: symbolic link loop") and err[1].endswith(
        "b.rtdc: symbolic link loop") and "here" in err[2] and "walked already" in err[2], err
    assert err[3].startswith("dcbulk: error: ") and str(loops) in err[3], err
    # beside a usable source, too: a source that gives nothing is a mistake worth stopping for
    good = tmp_path / "good"
    good.mkdir()
    small_rtdc(good / "g.rtdc", 10, seed=1, with_traces=True)
    with pytest.raises(SourceNotFoundError, match=str(loops)):
        discover_sources([good, loops])
    # an empty directory is not an error (nothing to convert yet)
    (tmp_path / "empty").mkdir()
    assert discover_sources([tmp_path / "empty"]) == []


def _failing_worker_preload(tmp_path: Path) -> dict:
    """The environment of a dcbulk process whose local workers die while they start."""
    preload = tmp_path / "die_on_start.py"
    preload.write_text("import os\n\ndef dask_setup(worker):\n    os._exit(1)\n")
    return {**os.environ, "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(preload)])}


@pytest.mark.parametrize("command", ["convert", "verify"])
def test_a_local_cluster_that_fails_to_start_is_one_line(two, tmp_path, command):
    src, _files = two
    dst = tmp_path / "dst"
    if command == "verify":
        assert main(["convert", str(src), "-o", str(dst), "-q", "--workers", "1"]) == EXIT_OK
        argv = ["verify", str(dst), "--workers", "1"]
    else:
        argv = ["convert", str(src), "-o", str(dst), "-q", "--workers", "1"]
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", *argv], capture_output=True,
                          text=True, timeout=180, env=_failing_worker_preload(tmp_path))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_ERROR and len(err) == 1, proc.stderr
    assert err[0].startswith("dcbulk: error: ") and "failed to start" in err[0], err
    log = err[0].rsplit("details in ", 1)[-1]
    assert log.startswith(str(dst / "dcbulk-logs")) and os.path.isfile(log), err
    assert "Nanny failed to start" in Path(log).read_text()


def test_without_working_locks_a_live_run_of_this_host_is_still_refused(tmp_path, monkeypatch,
                                                                       caplog):
    import errno
    import fcntl

    from dcbulk.bulk import lock as lockmod
    from dcbulk.errors import OutputLockedError

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    dst = tmp_path / "dst"
    dst.mkdir()
    monkeypatch.setattr(fcntl, "flock", no_locks)
    (dst / lockmod.LOCK_NAME).write_text(f"host {socket.gethostname()} pid 1 since x\n")
    with pytest.raises(OutputLockedError, match="pid 1"):  # pid 1 is alive
        with lockmod.output_lock(dst):
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (dst / lockmod.LOCK_NAME).write_text(f"host {socket.gethostname()} pid {dead} since x\n")
    with caplog.at_level(logging.WARNING, logger="dcbulk"):
        with lockmod.output_lock(dst):
            assert f"pid {os.getpid()}" in lockmod.lock_holder(dst)
    assert "does not support locks" in caplog.text


def test_a_writer_retried_after_committing_its_output_is_not_a_failure(two, tmp_path):
    """A writer worker killed between committing its output and reporting back: the retried
    task finds the output there (OutputExistsError); it is this task's own, so it is done."""
    from dcbulk.bulk import ConvertJob, Manifest, Target, make_options, run_target
    from dcbulk.bulk.executor import planned, settle_task
    from dcbulk.bulk.sources import discover_sources, output_path
    from dcbulk.errors import OutputExistsError

    src, files = two
    dst = tmp_path / "dst"
    entry = discover_sources([files[0]])[0]
    out = output_path(entry, dst)
    os.makedirs(dst)
    options, job = make_options(), ConvertJob()
    with planned(job, [files[0]], dst, options) as plan:  # the run decides: make it
        [step] = plan.steps
        target = Target(out, entry, 0)
        _, first = run_target(job, target, options, overwrite=False)  # the attempt that died
        assert first.error is None
        _, retry = run_target(job, target, options, overwrite=False)
        assert retry.error_type is OutputExistsError
        st = os.stat(entry.path)

        class Done:
            def result(self):
                return (st.st_size, st.st_mtime_ns, None, None), retry

        result = settle_task(Done(), step, plan)
    assert result.status == "done", result
    assert Manifest.load(dst).records[entry.relpath].status == "done"
    assert_features_equal(files[0], out)


def test_run_log_on_a_full_disk_prints_no_traceback(tmp_path, capsys):
    """A log record the run's log file cannot take (ENOSPC) is dropped, not a traceback on
    the terminal (seen as a flaky fault-suite failure when the disk filled mid-run)."""
    import errno

    from dcbulk.runlog import _log_file

    handler = _log_file(tmp_path, "convert")

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    handler.stream.close()
    handler.stream = FullDisk()
    logger = logging.getLogger("dcbulk.test-full-disk")
    logger.addHandler(handler)
    try:
        logger.error("a line for the run log")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err


def test_two_runs_of_one_process_in_one_second_get_two_log_files(tmp_path, monkeypatch):
    """The log file is created with O_EXCL (never through a link): a second run of the same
    process within the same second (the Python API, the tests) takes the next free name
    instead of failing with FileExistsError."""
    from dcbulk import runlog
    monkeypatch.setattr(runlog.time, "strftime", lambda fmt, t=None: "20260101T000000Z")
    first = runlog._log_file(tmp_path, "verify")
    second = runlog._log_file(tmp_path, "verify")
    try:
        assert first.baseFilename != second.baseFilename
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            f"verify-20260101T000000Z-{os.getpid()}-2.log",
            f"verify-20260101T000000Z-{os.getpid()}.log"]
    finally:
        first.close()
        second.close()


# -- Ctrl-C on a cluster dcbulk does not own (issue 20) -----------------------------------
def test_ctrl_c_on_a_running_scheduler_cancels_the_run_and_leaves_the_cluster(
        tmp_path, client, monkeypatch, capsys):
    """With ``--scheduler`` the cluster is not dcbulk's: Ctrl-C cancels the run's tasks, says
    so in one line, and neither stops the cluster nor removes a partial file a task of that
    cluster may still be writing (the next run does)."""
    import dcbulk.bulk.executor as executor
    from dcbulk.cli import EXIT_INTERRUPTED
    src = tmp_path / "src"
    small_sources(src, [f"m{k}.rtdc" for k in range(4)], events=30, step=5)
    dst = tmp_path / "dst"
    late = dst / "m9.rtdc.0123abcd.partial"
    real = executor.settle_task

    def interrupted(fut, step, plan):  # Ctrl-C once the first file settled
        real(fut, step, plan)
        late.write_bytes(b"being written by a task of the running cluster")
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "settle_task", interrupted)
    address = client.scheduler.address
    argv = ["convert", str(src), "-o", str(dst), "--scheduler", address, "-q",
            "--max-open-outputs", "2"]
    assert main(argv) == EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and address in err[0] and "keeps running" in err[0], err
    assert late.is_file()  # not removed under a writer that may still run
    assert client.submit(sum, [1, 2], pure=False).result() == 3  # the cluster still works

    def run_tasks(dask_scheduler):
        return [k for k in dask_scheduler.tasks if str(k).startswith("dcbulk-file-")]

    deadline = time.monotonic() + 30
    while client.run_on_scheduler(run_tasks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(run_tasks) == []  # the run's tasks were cancelled
    monkeypatch.setattr(executor, "settle_task", real)
    assert main(argv) == EXIT_OK  # re-run: resumes, and its end removes the leftover
    assert not late.exists() and len(list(dst.glob("m*.rtdc"))) == 4


def _contours(h5, names) -> None:
    group = h5.create_group("events/contour")
    for i, name in enumerate(names):
        group[name] = np.array([[1, 2], [3, 4 + i]], dtype=np.int16)


@pytest.mark.parametrize("defect, line", [
    ("zero-padded names", "'events/contour' holds '00', not an event's"),
    ("a member too many", "'events/contour' holds '20', not an event's"),
    ("a member missing", "'events/contour' lacks '5'"),
    ("a member that is a group", "'events/contour/5' is not a dataset"),
    ("a feature of one value", "'events/userdef1' holds a single value (shape ())"),
    ("a feature of strings", "'events/userdef1' holds variable-length items"),
    ("a contour dataset", "'events/contour' is a dataset, not a group"),
    ("logs as a dataset", "'logs' is a dataset, not a group of logs"),
    ("a group among the logs", "'logs/sub' is a group, not a log"),
    ("a group among the tables", "'tables/sub' is a group, not a table"),
])
def test_a_malformed_source_fails_its_file_alone_in_one_line(tmp_path, defect, line):
    """Contours named other than 0..n-1 (as dclab reads them) were left out of the output
    without a word (convert exit 0, only verify noticed); a 0-d feature was an IndexError, a
    group among the logs an AttributeError (and tracebacks in join). Now the file fails
    alone, in one line that says why, and leaves no output; join: one line, exit 3."""
    bad, good = (small_rtdc(tmp_path / "src" / f"{n}.rtdc", 20, seed=k)
                 for k, n in enumerate(("bad", "good")))
    with h5py.File(bad, "a") as h5:
        if defect == "zero-padded names":
            _contours(h5, [f"{i:02d}" for i in range(20)])
        elif defect == "a member too many":
            _contours(h5, [str(i) for i in range(21)])
        elif defect == "a member missing":
            _contours(h5, [str(i) for i in range(20) if i != 5])
        elif defect == "a member that is a group":
            _contours(h5, [str(i) for i in range(20) if i != 5])
            h5["events/contour"].create_group("5")
        elif defect == "a contour dataset":  # convert exit 0, then its verify rejected it
            h5["events/contour"] = np.ones((20, 5, 2))
        elif defect == "logs as a dataset":
            del h5["logs"]
            h5["logs"] = [1]
        elif defect == "a feature of one value":
            h5["events/userdef1"] = 3.0
        elif defect == "a feature of strings":  # no feature named before
            h5.create_dataset("events/userdef1", data=["x"] * 20, dtype=h5py.string_dtype())
        else:  # a group in logs/tables: an AttributeError ('Group' has no 'size') before
            h5[f"{defect.split()[-1]}/sub/x"] = [b"a line"]
    report = convert_archive([bad.parent], tmp_path / "dst")
    assert [f.source for f in report.failed] == [str(bad)] and len(report.files) == 2
    assert line in report.failed[0].error and "\n" not in report.failed[0].error
    assert sorted(p.name for p in (tmp_path / "dst").glob("*.rtdc")) == ["good.rtdc"]
    if defect == "a member that is a group":  # refused before split writes any piece
        assert main(["split", str(bad), "-o", str(tmp_path / "pieces"), "--events-per-file",
                     "5", "-q"]) == 1  # the file failed (alone)
        assert not list((tmp_path / "pieces").glob("*.rtdc"))
    if defect.startswith(("a group among", "a feature", "logs")):  # join ignores contours
        assert main(["join", str(good), str(bad), "-o", str(tmp_path / "j.rtdc"), "-q"]) == 3
        assert not (tmp_path / "j.rtdc").exists()


def test_a_damaged_log_chunk_is_named(shared_data_dir, tmp_path):
    """A log whose stored chunk fails its checksum failed the file with HDF5's bare 'Can't
    synchronously read data', naming no log."""
    src = tmp_path / "src" / "s.rtdc"
    src.parent.mkdir()
    src.write_bytes((shared_data_dir / "dcnum_thresh_example.rtdc").read_bytes())
    with h5py.File(src, "r") as h5:
        offset = h5["logs/cytoshot-acquisition"].id.get_chunk_info(0).byte_offset
    with open(src, "r+b") as fh:
        fh.seek(offset + 5)
        fh.write(b"\xff\x00\xff")
    report = convert_archive([src.parent], tmp_path / "dst")
    assert "logs/cytoshot-acquisition of " in report.failed[0].error, report.failed[0].error
    assert not list((tmp_path / "dst").glob("*.rtdc"))


def test_ctrl_c_after_its_cluster_closed_leaves_the_callers_logging_alone(tmp_path, capsys,
                                                                         monkeypatch):
    """An in-process ``main()`` interrupted after its own local cluster was closed (by its
    context) set the caller's ``distributed`` and ``asyncio`` loggers to CRITICAL; only a
    cluster caught while it started calls for that."""
    import dcbulk.bulk.executor as executor
    from dcbulk.cli import EXIT_INTERRUPTED
    src = tmp_path / "src"
    small_sources(src, [f"m{k}.rtdc" for k in range(3)], events=30, step=5)
    real = executor.settle_task

    def interrupted(fut, step, plan):  # Ctrl-C once the first file settled
        real(fut, step, plan)
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "settle_task", interrupted)
    assert logging.CRITICAL not in {logging.getLogger(n).level for n in ("distributed",
                                                                         "asyncio")}
    assert main(["convert", str(src), "-o", str(tmp_path / "dst"), "-q", "--workers", "1",
                 "--max-open-outputs", "1"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines() == [
        "dcbulk: interrupted; re-run the same command to resume"]
    assert logging.CRITICAL not in {logging.getLogger(n).level for n in ("distributed",
                                                                         "asyncio")}


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_writes_its_json_report_too(tmp_path, client, monkeypatch, capsys,
                                                       signal_name):
    """Ctrl-C or SIGTERM during a run wrote ``--html-report`` but not ``--report FILE.json``;
    now both, the JSON with what settled before the interrupt and ``outcome``
    ``interrupted`` (also for ``verify``)."""
    import dcbulk.bulk.executor as executor
    from dcbulk.cli import EXIT_INTERRUPTED, EXIT_TERMINATED
    from dcbulk.interrupts import Terminated
    src, dst = tmp_path / "src", tmp_path / "dst"
    small_sources(src, [f"m{k}.rtdc" for k in range(4)], events=30, step=5)
    real, seen = executor.settle_task, []
    stop = KeyboardInterrupt if signal_name == "SIGINT" else Terminated

    def interrupted(fut, step, plan):  # the signal as the second file settles
        seen.append(Path(step.target.source.path).name)
        if len(seen) == 2:
            raise stop
        return real(fut, step, plan)

    monkeypatch.setattr(executor, "settle_task", interrupted)
    report, html = tmp_path / "r.json", tmp_path / "r.html"
    cluster = ["--scheduler", client.scheduler.address, "-q"]
    status = main(["convert", str(src), "-o", str(dst), *cluster, "--max-open-outputs", "1",
                   "--report", str(report), "--html-report", str(html)])
    assert status == (EXIT_INTERRUPTED if stop is KeyboardInterrupt else EXIT_TERMINATED)
    capsys.readouterr()
    assert html.is_file()
    doc = json.loads(report.read_text())
    assert doc["outcome"] == "interrupted"
    assert doc["counts"] == {"done": 1, "skipped": 0, "failed": 0, "planned": 0}
    assert [Path(f["source"]).name for f in doc["files"]] == seen[:1]
    monkeypatch.setattr(executor, "settle_task", real)
    assert main(["convert", str(src), "-o", str(dst), *cluster]) == EXIT_OK
    seen.clear()
    monkeypatch.setattr(executor, "settle_task", interrupted)
    status = main(["verify", str(dst), *cluster, "--report", str(report)])
    assert status in (EXIT_INTERRUPTED, EXIT_TERMINATED)
    doc = json.loads(report.read_text())
    assert doc["outcome"] == "interrupted" and doc["counts"]["files"] == 1, doc


def test_an_interrupted_split_says_how_to_make_its_pieces_again(tmp_path, capsys, monkeypatch):
    """An interrupted split said 're-run the same command to resume'; split keeps no
    manifest, so that re-run failed every piece already written ('exists and is not a
    finished output of this archive'). The line now says they are complete and how to make
    them all again; that command does."""
    import dcbulk.bulk.executor as executor
    from dcbulk.cli import EXIT_INTERRUPTED
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 60, seed=3)
    real = executor.settle_task

    def interrupted(fut, step, plan):  # Ctrl-C once the first piece settled
        real(fut, step, plan)
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "settle_task", interrupted)
    dst = tmp_path / "dst"
    assert main(["split", str(src), "-o", str(dst), "-q", "--events-per-file", "20",
                 "--max-open-outputs", "1"]) == EXIT_INTERRUPTED
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dcbulk: interrupted; its outputs written are complete") \
        and line.endswith("re-run with --force to make them all"), line
    monkeypatch.setattr(executor, "settle_task", real)
    assert main(["split", str(src), "-o", str(dst), "-q", "--events-per-file", "20"]) == 1
    assert main(["split", str(src), "-o", str(dst), "-q", "--events-per-file", "20",
                 "--force"]) == 0
    assert len(list(dst.glob("s_*.rtdc"))) == 3
