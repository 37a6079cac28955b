"""Fault injection: real faults in real archive runs on LocalClusters, checked on the data.

Each test injects faults (SIGKILL of encoder and writer workers, of a whole ``dcbulk convert``
process group, SIGINT to the process and to its group, damaged sources, a full output file
system, a concurrent run, a source rewritten with its mtime restored), lets the run end (or
re-runs it, as a user would), and compares every output with a clean conversion of the same
sources, decoded, bit for bit. The module prints one summary line at its end:

    fault suite: F faults injected, R runs completed, 0 outputs lost, 0 outputs differing
    from a clean run, 0 partial files left, H hostile inputs tried

(H: the tests marked ``hostile`` that ran in the session, counted by ``tests/conftest.py``;
the line is printed when the session ends, so it counts those after this module too.)
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import h5py
import numpy as np
import pytest

from dcbulk.bulk import MANIFEST_NAME, Manifest, convert_archive
from dcbulk.read.identifier import get_measurement_identifier
from dcbulk.synth import make_rtdc

from fixtures import synthetic_archive
from helpers import dataset_names

STATS = collections.Counter()


@pytest.fixture(scope="session", autouse=True)
def summary(request, hostile_tried):
    """Print the suite's summary line when the session ends."""
    yield
    line = (f"fault suite: {STATS['faults']} faults injected, {STATS['runs']} runs completed, "
            f"{STATS['lost']} outputs lost, {STATS['differing']} outputs differing from a clean "
            f"run, {STATS['partials']} partial files left, {hostile_tried()} hostile inputs "
            f"tried")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", flush=True)


def _archive_and_clean(base: Path, client, n_files: int, events: tuple[int, int], seed: int):
    root, good = synthetic_archive(base / "archive", n_files, events=events, seed=seed,
                                   image_shape=(60, 120))
    clean = base / "clean"
    report = convert_archive([root], clean, client=client)
    assert report.ok and report.count("done") == len(good)
    return root, good, clean


@pytest.fixture(scope="module")
def archive(tmp_path_factory, client):
    """Seven good sources and their clean conversion (the reference for every fault)."""
    return _archive_and_clean(tmp_path_factory.mktemp("faults"), client, 7, (150, 600), 21)


def _event_data(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as h5:
        return {name: h5["events"][name][:] for name in dataset_names(h5["events"])}


def check_outputs(dst: Path, root: Path, good: list[Path], clean: Path, *,
                  only: list[Path] | None = None) -> None:
    """Count and assert: every good source has an output equal to the clean one, no partials."""
    partials = list(dst.rglob("*.partial"))
    STATS["partials"] += len(partials)
    lost, differing = [], []
    for src in only or good:
        rel = src.relative_to(root)
        out, ref = dst / rel, clean / rel
        if not out.is_file():
            lost.append(rel)
            continue
        got, want = _event_data(out), _event_data(ref)
        if sorted(got) != sorted(want) or any(
                got[k].dtype != want[k].dtype or not np.array_equal(got[k], want[k])
                for k in want):
            differing.append(rel)
    STATS["lost"] += len(lost)
    STATS["differing"] += len(differing)
    assert not partials, partials
    assert not lost, f"outputs lost: {lost}"
    assert not differing, f"outputs differing from the clean run: {differing}"


def completed(report) -> None:
    STATS["runs"] += 1
    assert report.ok, [(f.source, f.error) for f in report.failed]


@contextlib.contextmanager
def own_cluster(n_workers: int = 2):
    """A LocalCluster whose workers may be killed (tasks survive up to 20 worker deaths)."""
    from distributed import Client

    from dcbulk.engine.client import make_local_cluster
    with dask.config.set({"distributed.scheduler.allowed-failures": 20}):
        cluster = make_local_cluster(n_workers=n_workers, threads_per_worker=1,
                                     dashboard_address=":0")
    try:
        with Client(cluster) as cl:
            yield cl
    finally:
        cluster.close()


def kill_workers(client, role: str, times: int, stop: threading.Event) -> list[int]:
    """SIGKILL ``times`` workers while they run a task of ``role`` ("writer" or "encoder")."""
    killed: list[int] = []
    while len(killed) < times and not stop.is_set():
        target = None
        for addr, keys in client.processing().items():
            names = [str(k) for k in keys]
            writes = any("dcbulk-file" in k for k in names)
            encodes = any("dcbulk-encode" in k for k in names)
            if (role == "writer" and writes) or (role == "encoder" and encodes and not writes):
                target = addr
                break
        if target is None:
            time.sleep(0.05)
            continue
        try:
            pid = client.run(os.getpid, workers=[target])[target]
        except Exception:  # the worker just went away
            continue
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        STATS["faults"] += 1
        time.sleep(0.5)  # let the work move on (the nanny restarts the worker)
    return killed


@pytest.fixture(scope="module")
def large(tmp_path_factory, client):
    """Three larger sources (encoded by encode tasks, not inline) and their clean conversion."""
    return _archive_and_clean(tmp_path_factory.mktemp("faults-large"), client, 3, (2000, 2400),
                              22)


@pytest.mark.parametrize("role", ["encoder", "writer"])
def test_workers_killed_during_a_run(archive, large, tmp_path, role):
    # a file task encodes small files itself while other files keep the threads busy: the
    # encoder kills need files large enough to be split into encode tasks
    root, good, clean = large if role == "encoder" else archive
    dst = tmp_path / "dst"
    stop = threading.Event()
    with own_cluster() as cl:
        killed: list[int] = []
        killer = threading.Thread(target=lambda: killed.extend(kill_workers(cl, role, 3, stop)))
        killer.start()
        try:
            report = convert_archive([root], dst, client=cl, inline_bytes=0,
                                     max_open_outputs=1)
        finally:
            stop.set()
            killer.join()
    assert len(killed) >= 2, f"only {len(killed)} {role} kill(s): the run ended first"
    completed(report)
    check_outputs(dst, root, good, clean)
    assert len(Manifest.load(dst)) == len(good)


def _cli(root: Path, dst: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dcbulk.cli", "convert", str(root), "-o", str(dst),
            "--workers", "2", "-q", *extra]


def _wait_for_outputs(proc, dst: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (len(list(dst.rglob("*.rtdc"))) < n and time.monotonic() < deadline
           and proc.poll() is None):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the fault could be injected"


def test_process_group_sigkilled_then_rerun(archive, tmp_path):
    root, good, clean = archive
    dst = tmp_path / "dst"
    proc = subprocess.Popen(_cli(root, dst, "--max-open-outputs", "1"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_outputs(proc, dst, 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    STATS["faults"] += 1
    first = {p: p.read_bytes() for p in dst.rglob("*.rtdc")}
    assert 2 <= len(first) < len(good)
    rerun = subprocess.run(_cli(root, dst, "--report", str(tmp_path / "r.json")),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    STATS["runs"] += 1
    check_outputs(dst, root, good, clean)
    for p, data in first.items():
        assert p.read_bytes() == data  # finished outputs were kept, not redone
    counts = json.loads((tmp_path / "r.json").read_text())["counts"]
    assert (counts["skipped"], counts["done"]) == (len(first), len(good) - len(first))


def _worker_pids(parent: int) -> list[int]:
    """The dask worker processes started by ``parent`` (not multiprocessing's helpers)."""
    pids = []
    for pid in subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                              text=True).stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(pid))
    return pids


def test_a_worker_killed_under_the_cli_costs_no_terminal_line(archive, tmp_path):
    root, good, clean = archive
    if shutil.which("pgrep") is None or not Path("/proc").is_dir():
        pytest.skip("needs pgrep and /proc to find the worker processes")
    dst = tmp_path / "dst"
    proc = subprocess.Popen(_cli(root, dst, "--max-open-outputs", "1"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_outputs(proc, dst, 1)
        workers = _worker_pids(proc.pid)
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)
        STATS["faults"] += 1
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out + err
    assert err == ""  # the nanny's restart and the worker's death are in the run log only
    STATS["runs"] += 1
    log = Path(out.strip().split("log: ")[1])
    assert "Restarting worker" in log.read_text() or "killed" in log.read_text()
    check_outputs(dst, root, good, clean)


@pytest.mark.parametrize("target", ["process", "group", "jobqueue-config", "sigterm"])
def test_sigint_stops_with_one_line_and_the_rerun_completes(archive, tmp_path, target):
    """Ctrl-C: status 130 and one line. "jobqueue-config": a --cluster-config file with a
    jobqueue section imports dask-jobqueue, whose import replaced Python's SIGINT handler
    with sys.exit() (an interrupted run ended with status 0, as if it had finished).
    "sigterm" (kill, timeout, scancel): ended the process at once, without a line and with
    partial files left; now as Ctrl-C, status 143."""
    root, good, clean = archive
    dst = tmp_path / "dst"
    extra = ["--max-open-outputs", "1"]
    if target == "jobqueue-config":
        config = tmp_path / "cluster.yaml"
        config.write_text("jobqueue:\n  slurm:\n    cores: 1\n    memory: 1GB\n")
        extra += ["--cluster-config", str(config)]
    proc = subprocess.Popen(_cli(root, dst, *extra), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_outputs(proc, dst, 1)
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM if target == "sigterm" else signal.SIGINT)
        STATS["faults"] += 1
        out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    word, status = (("terminated (SIGTERM)", 143) if target == "sigterm"
                    else ("interrupted", 130))
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [f"dcbulk: {word}; re-run the same command to "
                                        f"resume"], err
    partials = list(dst.rglob("*.partial"))
    STATS["partials"] += len(partials)
    assert not partials  # the local cluster is closed first, then its leftovers removed
    rerun = subprocess.run(_cli(root, dst), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    STATS["runs"] += 1
    check_outputs(dst, root, good, clean)


def test_sigint_while_the_cluster_starts_is_one_line(archive, tmp_path):
    """Ctrl-C while the local cluster started (its worker processes spawned, not running):
    distributed's exit hook closed the half-made cluster with an AssertionError traceback,
    dask's INFO lines and asyncio's "Task exception was never retrieved" (22-35 lines)."""
    import psutil
    root, _good, _clean = archive
    proc = subprocess.Popen(_cli(root, tmp_path / "dst"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60

        def workers() -> bool:  # a worker process, not h5py's import's 'uname -p'
            with contextlib.suppress(psutil.Error):
                return any("spawn" in " ".join(child.cmdline())
                           for child in psutil.Process(proc.pid).children())
            return False
        while not workers() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGINT)
        STATS["faults"] += 1
        _out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["dcbulk: interrupted; re-run the same command to "
                                        "resume"], err


def _corrupt_chunk(path: Path, feature: str) -> None:
    with h5py.File(path) as h5:
        info = h5["events"][feature].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes(64))


def _damaged_sources(bad: Path, good_file: Path) -> dict[str, Path]:
    bad.mkdir()
    files = {}
    files["not_hdf5"] = bad / "not_hdf5.rtdc"
    files["not_hdf5"].write_bytes(b"not an HDF5 file\n" * 100)
    files["zero_bytes"] = bad / "zero_bytes.rtdc"
    files["zero_bytes"].write_bytes(b"")
    files["truncated"] = bad / "truncated.rtdc"
    data = good_file.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["no_events"] = bad / "no_events.rtdc"
    with h5py.File(files["no_events"], "w") as h5:
        h5.attrs["experiment:event count"] = 10
    files["unequal_lengths"] = bad / "unequal_lengths.rtdc"
    make_rtdc(files["unequal_lengths"], 60, seed=5, compression="none", image_shape=(40, 60))
    with h5py.File(files["unequal_lengths"], "a") as h5:
        short = h5["events/deform"][:-3]
        del h5["events/deform"]
        h5["events/deform"] = short
    # zstd:1 is below the archival floor: re-encoded, so the corrupt chunk is decoded
    files["corrupt_compressed"] = bad / "corrupt_compressed.rtdc"
    make_rtdc(files["corrupt_compressed"], 60, seed=6, compression="zstd:1",
              image_shape=(40, 60))
    _corrupt_chunk(files["corrupt_compressed"], "image")
    return files


def test_damaged_sources_fail_alone_with_one_line_each(archive, tmp_path, client):
    root, good, clean = archive
    mixed = tmp_path / "mixed"
    shutil.copytree(root, mixed / "good")
    damaged = _damaged_sources(mixed / "bad", good[0])
    dst = tmp_path / "dst"
    report = convert_archive([mixed], dst, client=client)
    STATS["faults"] += len(damaged)
    STATS["runs"] += 1
    results = {Path(f.source).name: f for f in report.files}
    good_in_mixed = sorted((mixed / "good").rglob("*.rtdc"))
    assert all(results[p.name].status == "done" for p in good_in_mixed)
    # the good files equal the clean run (same relative places below "good/")
    check_outputs(dst / "good", root, good, clean)
    for kind, path in damaged.items():
        result = results[path.name]
        assert result.status == "failed", (kind, result)
        assert result.error and "\n" not in result.error and len(result.error) < 500, result.error
        assert not (dst / "bad" / path.name).exists(), kind
    assert not list(dst.rglob("*.partial"))


def test_a_corrupt_chunk_in_a_raw_copied_feature_fails_its_file(archive, tmp_path, client):
    root, good, clean = archive
    src = tmp_path / "src"
    src.mkdir()
    ok = make_rtdc(src / "ok.rtdc", 60, seed=9, compression="zstd:5", image_shape=(40, 60))
    bad = make_rtdc(src / "corrupt_raw_copied.rtdc", 60, seed=7, compression="zstd:5",
                    image_shape=(40, 60))
    _corrupt_chunk(bad, "image")  # zstd:5 is copied as stored chunks: they must be proven sound
    dst = tmp_path / "dst"
    report = convert_archive([src], dst, client=client)
    STATS["faults"] += 1
    STATS["runs"] += 1
    results = {Path(f.source).name: f for f in report.files}
    assert results[ok.name].status == "done"
    assert not list(dst.rglob("*.partial"))
    assert results[bad.name].status == "failed", results[bad.name]
    assert "\n" not in results[bad.name].error
    assert not (dst / bad.name).exists()


def test_a_missing_basin_file_is_one_clear_outcome(archive, tmp_path, client):
    root, good, clean = archive
    src = tmp_path / "src"
    src.mkdir()
    path = make_rtdc(src / "with_basin.rtdc", 50, seed=8, compression="none",
                     image_shape=(40, 60))
    from dcbulk.write import HDF5Writer
    with HDF5Writer(path, mode="a") as hw:
        hw.store_basin("raw", paths=[str(tmp_path / "gone" / "raw.rtdc")],
                       features=["userdef1"])
    dst = tmp_path / "dst"
    report = convert_archive([src], dst, client=client)
    STATS["faults"] += 1
    STATS["runs"] += 1
    [result] = report.files
    assert not list(dst.rglob("*.partial"))
    if result.status == "failed":
        assert "\n" not in result.error and "with_basin.rtdc" in result.error
        assert not (dst / "with_basin.rtdc").exists()
    else:  # the file's own features are converted; the unreachable basin stays a reference
        assert result.status == "done"
        own = _event_data(path)
        got = _event_data(dst / "with_basin.rtdc")
        for name, values in own.items():
            assert np.array_equal(got[name], values), name
        assert "userdef1" not in got


@pytest.fixture
def tmpfs(tmp_path):
    """A 40 MiB tmpfs (needs root and mount); skipped elsewhere."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full file system is simulated with a small tmpfs, which needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("where", ["cluster", "in-process"])
def test_a_full_output_file_system(archive, tmpfs, client, where):
    """In dcbulk's own process a full disk crashed the run at exit (SIGSEGV, h5py's
    tracebacks for every object freed): HDF5 kept each failed file open."""
    root, good, clean = archive
    dst = tmpfs / "dst"
    command = _cli(root, dst, "--compression", "none")
    if where == "in-process":
        command.remove("--workers")
        command.remove("2")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    STATS["faults"] += 1
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode == 1:  # the files that did not fit failed, one line each
        failed = [line for line in proc.stdout.splitlines() if line.startswith("  FAILED")]
        assert failed and all("no space left" in line for line in failed), proc.stdout
        assert proc.stderr == ""
    else:  # or the manifest's own line found the disk full first: the run stops, one line
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "No space left" in proc.stderr
    partials = list(dst.rglob("*.partial"))
    STATS["partials"] += len(partials)
    assert not partials
    finished = [p for p in good if (dst / p.relative_to(root)).exists()]
    if finished:
        check_outputs(dst, root, good, clean, only=finished)
    # more space (as after cleaning up), same command: the rest is converted
    subprocess.run(["mount", "-o", "remount,size=400m", str(tmpfs)], check=True)
    rerun = subprocess.run(_cli(root, dst, "--compression", "none"), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    STATS["runs"] += 1
    reference = tmpfs / "clean-none"
    completed(convert_archive([root], reference, compression="none", client=client))
    check_outputs(dst, root, good, reference)


def test_two_concurrent_runs(archive, tmp_path):
    root, good, clean = archive
    dst = tmp_path / "dst"
    first = subprocess.Popen(_cli(root, dst, "--max-open-outputs", "1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = dst / ".dcbulk.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before the second started"
    first.send_signal(signal.SIGSTOP)  # hold the first run (and its lock) whatever the speed
    try:
        second = subprocess.run(_cli(root, dst), capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    STATS["faults"] += 1
    assert second.returncode == 3, second.stdout + second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert f"pid {first.pid}" in second.stderr
    assert f"host {socket.gethostname()}" in second.stderr
    assert "dashboard" not in second.stderr  # refused before any cluster started
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    STATS["runs"] += 1
    check_outputs(dst, root, good, clean)
    assert all(r.status == "done" for r in Manifest.load(dst).records.values())


def test_a_source_rewritten_with_its_mtime_restored(archive, tmp_path, client):
    root, good, clean = archive
    src = tmp_path / "src"
    shutil.copytree(root, src)
    dst = tmp_path / "dst"
    completed(convert_archive([src], dst, client=client))
    victim = src / good[0].relative_to(root)
    st = victim.stat()
    with h5py.File(victim) as h5:
        n = h5["events/deform"].shape[0]
        was = get_measurement_identifier(h5, compat="dclab")
    replacement = make_rtdc(tmp_path / "replacement.rtdc", n, seed=77, compression="none",
                            image_shape=(60, 120))
    if replacement.stat().st_size != st.st_size:
        pytest.fail("the replacement must have the source's size for this fault")
    with h5py.File(replacement) as h5:
        now = get_measurement_identifier(h5, compat="dclab")
    assert now != was
    shutil.copyfile(replacement, victim)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    STATS["faults"] += 1
    out = dst / victim.relative_to(src)
    before = out.read_bytes()
    # its finished output is kept: the file fails, the others are skipped
    report = convert_archive([src], dst, client=client)
    assert report.count("failed") == 1 and report.count("skipped") == len(good) - 1
    assert report.failed[0].error == (
        f"{out}: its source has changed since the output was made (measurement identifier "
        f"{was} -> {now}); the output is kept, --force makes it again")
    assert out.read_bytes() == before
    report = convert_archive([src], dst, client=client, force=True)
    completed(report)
    assert report.count("done") == len(good)
    fresh = tmp_path / "fresh"
    completed(convert_archive([replacement], fresh, client=client))
    got = _event_data(dst / victim.relative_to(src))
    want = _event_data(fresh / replacement.name)
    same = sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    STATS["differing"] += not same
    assert same
    check_outputs(dst, root, good[1:], clean, only=good[1:])
