"""dcbulk on a real SLURM cluster: the local single-node one of ``scripts/slurm-local.sh``.

Tests A start the workers from dask's configuration: A1 with a plain dask-jobqueue
``jobqueue.yaml`` in ``$DASK_CONFIG`` and ``dcbulk convert --cluster slurm`` (a separate
process, as a user runs it), A2 with ``--cluster-config`` (a copy of
``cluster_configs/slurm.yaml`` with only the local knobs changed).  Test B connects to a
running scheduler through ``--scheduler-file`` whose workers are SLURM jobs submitted with
``sbatch --wrap``.  All compare every output with its source and check that the SLURM jobs
really ran and are gone.  Test C points the SLURM client tools at a controller that does not
answer (``slurmctld`` down) and expects one line and exit 3.  Test P runs ``dcbulk process``
(dcnum jobs in SLURM workers, bounded by ``--stall-timeout``) and compares its outputs with
the same dcnum jobs run directly.

Without a running SLURM cluster the tests are skipped; with ``CI`` set, ``conftest.py`` turns
that skip into a failure.  Timings (first worker, throughput vs a LocalCluster) are printed
(``pytest -s``) and recorded as user properties, never asserted.
"""
from __future__ import annotations

import copy
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from dcbulk.cli import EXIT_ERROR, EXIT_OK, main

from fixtures import synthetic_archive
from helpers import assert_features_equal

pytestmark = pytest.mark.slurm

REPO = pathlib.Path(__file__).resolve().parents[2]
SLURM_LOCAL = REPO / "scripts" / "slurm-local.sh"
SLURM_YAML = REPO / "cluster_configs" / "slurm.yaml"
#: what a dask worker logs once it has joined the scheduler
REGISTERED = "Registered to:"


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip (fail under CI, see conftest.py) unless the local SLURM cluster is up."""
    missing = [c for c in ("sinfo", "squeue", "sbatch", "scancel") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"SLURM client tools missing ({', '.join(missing)}); "
                    f"run 'bash scripts/slurm-local.sh start' as root")
    try:
        proc = subprocess.run(["bash", str(SLURM_LOCAL), "status"], capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("'scripts/slurm-local.sh status' timed out")
    if proc.returncode != 0:
        pytest.skip(f"the local SLURM cluster is not up (slurm-local.sh status exit "
                    f"{proc.returncode}); run 'bash scripts/slurm-local.sh start' as root")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[pathlib.Path, list[pathlib.Path]]:
    """Six synthetic uncompressed files of 50..400 events."""
    return synthetic_archive(tmp_path_factory.mktemp("slurm-archive"), 6, events=(50, 400),
                             seed=11)


def _job_ids() -> set[str]:
    """Ids of all jobs squeue lists (pending, running, completing)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _wait_jobs_gone(ids: set[str], seconds: float = 30) -> set[str]:
    """Poll squeue until none of ``ids`` is listed; return the ones still listed."""
    deadline = time.monotonic() + seconds
    left = ids & _job_ids()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = ids & _job_ids()
    return left


class _QueueWatcher:
    """Background thread: which SLURM jobs appear, and when the first worker registers.

    ``log_dir`` is scanned for worker logs containing ``Registered to:``.
    """

    def __init__(self, log_dir: pathlib.Path | None = None, interval: float = 0.2) -> None:
        self.log_dir, self.interval = log_dir, interval
        self.before = _job_ids()
        self.seen: set[str] = set()
        self.t_start = time.monotonic()
        self.t_first_job: float | None = None
        self.t_first_worker: float | None = None
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="squeue-watcher", daemon=True)

    def __enter__(self) -> _QueueWatcher:
        self.t_start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _registered(self) -> bool:
        if self.log_dir is None or not self.log_dir.is_dir():
            return False
        for path in self.log_dir.iterdir():
            try:
                if REGISTERED in path.read_text(errors="replace"):
                    return True
            except OSError:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                new = _job_ids() - self.before
            except (subprocess.SubprocessError, OSError) as exc:
                self.errors.append(str(exc))
                new = set()
            now = time.monotonic()
            if new and self.t_first_job is None:
                self.t_first_job = now
            self.seen |= new
            if self.t_first_worker is None and self._registered():
                self.t_first_worker = now
            self._stop.wait(self.interval)

    def since_start(self, t: float | None) -> str:
        return "never" if t is None else f"{t - self.t_start:.1f} s"


def _localized_config(path: pathlib.Path, log_dir: pathlib.Path, work_dir: pathlib.Path,
                      ) -> dict:
    """``cluster_configs/slurm.yaml`` with only the knobs of this machine changed."""
    doc = copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")))
    section = doc["jobqueue"]["slurm"]
    section.pop("account", None)  # no accounting on the local cluster
    section.update({
        "queue": "debug",
        "interface": "lo",  # the scheduler and workers must listen on loopback only
        "cores": 1,
        "processes": 1,
        "memory": "2GiB",
        "walltime": "00:10:00",
        "log-directory": str(log_dir),
        "local-directory": str(work_dir),
        "python": sys.executable,
        # site specifics (module loads, constraints, an --output into the cwd) do not apply
        "job-script-prologue": [],
        "job-extra-directives": [],
    })
    scheduler_options = dict(section.get("scheduler-options") or {})
    scheduler_options["dashboard_address"] = "127.0.0.1:0"
    section["scheduler-options"] = scheduler_options
    extra = [a for a in section.get("worker-extra-args") or [] if a != "--dashboard"]
    section["worker-extra-args"] = [*extra, "--no-dashboard"]
    if "dcbulk" in doc:
        doc["dcbulk"] = {"cluster": "slurm", "jobs": 2,
                         "worker-timeout": doc["dcbulk"].get("worker-timeout", "10 minutes")}
    return doc


def _mb(files: list[pathlib.Path]) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def _assert_outputs(root: pathlib.Path, files: list[pathlib.Path], dst: pathlib.Path) -> None:
    for src in files:
        out = dst / src.relative_to(root)
        assert out.is_file(), f"{out} missing"
        assert_features_equal(src, out)
    assert not list(dst.rglob("*.partial"))


def _local_throughput(root: pathlib.Path, dst: pathlib.Path) -> float:
    """Wall seconds of the same conversion on a 2-worker LocalCluster (for comparison)."""
    t0 = time.perf_counter()
    assert main(["convert", str(root), "-o", str(dst), "--workers", "2", "--quiet"]) == EXIT_OK
    return time.perf_counter() - t0


def _report(record_property, lines: dict[str, str]) -> None:
    print()
    for key, value in lines.items():
        record_property(key, value)
        print(f"[slurm timing] {key}: {value}")


# -- tests A: dcbulk starts the SLURM workers from dask's configuration -------------------
def _run_and_check(command, root, files, log_dir, record_property, label, env=None) -> None:
    """Run ``command`` (argv of main(), or a subprocess when ``env`` is given) under a queue
    watcher; check outputs and jobs; report the timings."""
    dst = pathlib.Path(command[command.index("-o") + 1])
    with _QueueWatcher(log_dir) as watcher:
        t0 = time.perf_counter()
        if env is None:
            status, stderr = main(command), ""
        else:
            proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", *command], env=env,
                                  capture_output=True, text=True, timeout=600)
            status, stderr = proc.returncode, proc.stderr
        wall = time.perf_counter() - t0
        t_end = time.monotonic()
    assert not watcher.errors, watcher.errors
    logs = {p.name: p.read_text(errors="replace")[-2000:] for p in log_dir.iterdir()}
    assert status == EXIT_OK, f"exit {status}: {stderr[-3000:]}; worker logs: {logs}"
    _assert_outputs(root, files, dst)
    # the workers were SLURM jobs of this run, and they are gone afterwards
    assert watcher.seen, "no SLURM job appeared in squeue while dcbulk ran"
    assert watcher.t_first_worker is not None, f"no worker log says {REGISTERED!r}: {logs}"
    left = _wait_jobs_gone(watcher.seen)
    assert not left, f"SLURM jobs {sorted(left)} still queued after the run"
    mb = _mb(files)
    working = t_end - watcher.t_first_worker
    _report(record_property, {
        f"{label} jobs seen": " ".join(sorted(watcher.seen)),
        f"{label} start to first job in squeue": watcher.since_start(watcher.t_first_job),
        f"{label} start to first worker registered": watcher.since_start(
            watcher.t_first_worker),
        f"{label} archive": f"{len(files)} files, {mb:.1f} MB",
        f"{label} SLURM wall / throughput": f"{wall:.1f} s, {mb / wall:.1f} MB/s "
                                           f"({mb / working:.1f} MB/s after the first worker)",
    })


def _dirs(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    log_dir, work_dir = tmp_path / "slurm-logs", tmp_path / "worker-space"
    log_dir.mkdir()
    work_dir.mkdir()
    return log_dir, work_dir


def test_site_jobqueue_yaml_and_cluster_slurm(slurm, archive, tmp_path, record_property):
    """A1: a plain dask-jobqueue jobqueue.yaml in $DASK_CONFIG, ``--cluster slurm``."""
    if not SLURM_YAML.is_file():
        pytest.skip(f"{SLURM_YAML} is absent")
    root, files = archive
    log_dir, work_dir = _dirs(tmp_path)
    site = tmp_path / "dask-config"
    site.mkdir()
    doc = _localized_config(SLURM_YAML, log_dir, work_dir)
    (site / "jobqueue.yaml").write_text(yaml.safe_dump({"jobqueue": doc["jobqueue"]}),
                                        encoding="utf-8")
    env = {**os.environ, "DASK_CONFIG": str(site), "HOME": str(tmp_path)}  # no user config
    _run_and_check(["convert", str(root), "-o", str(tmp_path / "out"), "--cluster", "slurm",
                    "--jobs", "2", "--quiet"], root, files, log_dir, record_property, "A1",
                   env=env)
    assert not (tmp_path / ".config").exists()


def test_convert_with_cluster_config_runs_on_slurm(slurm, archive, tmp_path, record_property):
    """A2: ``--cluster-config`` with a copy of cluster_configs/slurm.yaml; LocalCluster for
    comparison."""
    if not SLURM_YAML.is_file():
        pytest.skip(f"{SLURM_YAML} is absent")
    root, files = archive
    log_dir, work_dir = _dirs(tmp_path)
    cfg = tmp_path / "slurm-local.yaml"
    cfg.write_text(yaml.safe_dump(_localized_config(SLURM_YAML, log_dir, work_dir)),
                   encoding="utf-8")
    report = tmp_path / "report.json"
    _run_and_check(["convert", str(root), "-o", str(tmp_path / "out"), "--cluster-config",
                    str(cfg), "--quiet", "--report", str(report)], root, files, log_dir,
                   record_property, "A2")
    assert report.is_file()
    local_wall = _local_throughput(root, tmp_path / "out-local")
    mb = _mb(files)
    _report(record_property, {"A2 LocalCluster(2 workers) wall / throughput":
                              f"{local_wall:.1f} s, {mb / local_wall:.1f} MB/s"})


# -- test P: dcnum's pipeline (``dcbulk process``) in SLURM jobs -----------------------------
def test_process_runs_dcnum_jobs_in_slurm_workers(slurm, tmp_path, record_property):
    """P: ``dcbulk process --cluster-config``: the job script exports non-daemonic workers
    with the ``dcnum`` resource, each measurement's dcnum job runs in a SLURM job's worker,
    and every output equals the same dcnum job run directly in this process.

    Bounded: a dcnum job that makes no progress for 60 s is ended and run again (it hung
    here once, its writer process dead at start), and no file may take more than 10 min."""
    pytest.importorskip("dcnum")
    import h5py
    import numpy as np
    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob

    from dcbulk.modes.process_options import PipelineOptions
    from dcbulk.synth import make_rtdc
    root = tmp_path / "src"
    root.mkdir()
    files = [root / "A.rtdc", root / "B.rtdc"]
    for seed, path in enumerate(files, start=31):
        make_rtdc(path, 60, seed=seed)
    log_dir, work_dir = _dirs(tmp_path)
    cfg = tmp_path / "slurm-local.yaml"
    cfg.write_text(yaml.safe_dump(_localized_config(SLURM_YAML, log_dir, work_dir)),
                   encoding="utf-8")
    dst = tmp_path / "out"
    with _QueueWatcher(log_dir) as watcher:
        t0 = time.perf_counter()
        status = main(["process", str(root), "-o", str(dst), "--cluster-config", str(cfg),
                       "--basin-strategy", "tap", "--stall-timeout", "60",
                       "--timeout-per-file", "600", "--quiet"])
        wall = time.perf_counter() - t0
    logs = {p.name: p.read_text(errors="replace")[-2000:] for p in log_dir.iterdir()}
    assert status == EXIT_OK, f"exit {status}; worker logs: {logs}"
    assert watcher.seen, "no SLURM job appeared in squeue while dcbulk ran"
    assert watcher.t_first_worker is not None, f"no worker log says {REGISTERED!r}: {logs}"
    for src in files:
        out = dst / f"{src.stem}_dcn.rtdc"
        ref = tmp_path / f"direct-{src.stem}_dcn.rtdc"
        job = DCNumPipelineJob(path_in=src, path_out=ref, num_procs=1,
                               **PipelineOptions(basin_strategy="tap").job_kwargs())
        with DCNumJobRunner(job) as runner:
            runner.run()
        with h5py.File(out, "r", locking=False) as got, h5py.File(ref, "r", locking=False) as want:
            assert sorted(got["events"]) == sorted(want["events"])
            for name in want["events"]:
                np.testing.assert_array_equal(got["events"][name][:], want["events"][name][:],
                                              err_msg=f"{out}: {name}")
            assert got.attrs["pipeline:dcnum hash"] == want.attrs["pipeline:dcnum hash"]
    assert not [p for p in dst.rglob("*") if p.name.endswith(("~", ".partial"))]
    left = _wait_jobs_gone(watcher.seen)
    assert not left, f"SLURM jobs {sorted(left)} still queued after the run"
    _report(record_property, {"P process wall": f"{wall:.1f} s for {len(files)} measurements"})


# -- test C: slurmctld does not answer -----------------------------------------------------
def test_slurmctld_down_is_one_line(slurm, archive, tmp_path, record_property):
    """Defect 10.5: sbatch while slurmctld is down gave a WorkerStartTimeoutError traceback.

    The running controller is left alone: the client tools get a copy of slurm.conf whose
    SlurmctldPort nobody listens on, which is what they see when slurmctld is down."""
    conf = pathlib.Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text, n = re.subn(r"(?m)^SlurmctldPort=.*$", f"SlurmctldPort={port}", conf.read_text())
    if not n:
        text += f"\nSlurmctldPort={port}\n"
    down = tmp_path / "slurm-down.conf"
    down.write_text(text)
    root, _files = archive
    log_dir, work_dir = _dirs(tmp_path)
    cfg = tmp_path / "slurm-local.yaml"
    cfg.write_text(yaml.safe_dump(_localized_config(SLURM_YAML, log_dir, work_dir)))
    env = {**os.environ, "SLURM_CONF": str(down), "HOME": str(tmp_path),
           "DASK_CONFIG": str(tmp_path / "dask-config")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", "convert", str(root), "-o",
                           str(tmp_path / "out"), "--cluster-config", str(cfg), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_ERROR, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"dcbulk: error: {cfg}: slurm job submission failed: sbatch:")
    assert "Unable to contact slurm controller" in lines[0]
    assert not list(log_dir.iterdir())  # no job ran
    assert not list((tmp_path / "out").rglob("*.rtdc"))
    _report(record_property, {"C slurmctld down: time to the error": f"{wall:.1f} s"})


# -- test B: a running scheduler (scheduler file) with SLURM-job workers -----------------
def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_scheduler(sched_file: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    """``dask scheduler`` as a plain subprocess on loopback (it runs on the 'login node')."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler",
             "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0"], stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not sched_file.is_file() and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dask scheduler exited: {log.read_text(errors='replace')}")
        time.sleep(0.1)
    assert sched_file.is_file(), f"no scheduler file: {log.read_text(errors='replace')}"
    return proc


def _sbatch_worker(sched_file: pathlib.Path, log_dir: pathlib.Path, work_dir: pathlib.Path,
                   ) -> str:
    """Submit one ``dask worker`` as a SLURM job (environment passed on by sbatch)."""
    worker = " ".join([
        sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
        str(sched_file), "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
        "--memory-limit", "2GB", "--no-dashboard", "--local-directory", str(work_dir)])
    out = subprocess.run(
        ["sbatch", "--parsable", "--partition=debug", "--job-name=dcbulk-test-worker",
         "--ntasks=1", "--cpus-per-task=1", "--mem=2G", "--time=00:10:00",
         f"--output={log_dir}/worker-%j.log", f"--chdir={work_dir}", f"--wrap={worker}"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"sbatch failed: {out.stderr}"
    return out.stdout.strip().split(";")[0]


def test_convert_with_scheduler_file_and_sbatch_workers(slurm, archive, tmp_path,
                                                        record_property):
    from distributed import Client
    root, files = archive
    log_dir, work_dir = tmp_path / "slurm-logs", tmp_path / "worker-space"
    log_dir.mkdir()
    work_dir.mkdir()
    sched_file = tmp_path / "scheduler.json"
    dst = tmp_path / "out"
    before = _job_ids()
    scheduler = _start_scheduler(sched_file, tmp_path / "scheduler.log")
    jobs: list[str] = []
    try:
        t0 = time.perf_counter()
        jobs = [_sbatch_worker(sched_file, log_dir, work_dir) for _ in range(2)]
        assert not set(jobs) & before
        with Client(scheduler_file=str(sched_file), timeout=30) as client:
            try:
                client.wait_for_workers(1, timeout=90)
                first = time.perf_counter() - t0
                client.wait_for_workers(2, timeout=90)
                both = time.perf_counter() - t0
            except TimeoutError:
                logs = {p.name: p.read_text(errors="replace")[-1500:]
                        for p in log_dir.iterdir()}
                raise AssertionError(f"workers did not join; squeue: {_job_ids()}; "
                                     f"logs: {logs}") from None
            hosts = {w["host"] for w in client.scheduler_info()["workers"].values()}
        assert hosts == {"127.0.0.1"}
        assert set(jobs) <= _job_ids(), "the worker jobs are not in squeue"
        t1 = time.perf_counter()
        status = main(["convert", str(root), "-o", str(dst), "--scheduler-file",
                       str(sched_file), "--quiet"])
        wall = time.perf_counter() - t1
        assert status == EXIT_OK
        _assert_outputs(root, files, dst)
        # the scheduler saw tasks on both SLURM workers
        logs = "".join(p.read_text(errors="replace") for p in log_dir.iterdir())
        assert logs.count(REGISTERED) >= 2, logs[-3000:]
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
        _terminate(scheduler)
    left = _wait_jobs_gone(set(jobs))
    assert not left, f"SLURM jobs {sorted(left)} still queued after scancel"
    mb = _mb(files)
    _report(record_property, {
        "B jobs": " ".join(jobs),
        "B sbatch to first / second worker": f"{first:.1f} s / {both:.1f} s",
        "B convert wall / throughput (workers up)": f"{wall:.1f} s, {mb / wall:.1f} MB/s",
    })


def test_localized_config_changes_only_local_knobs(tmp_path):
    """The test's YAML rewrite keeps the site's other settings (no SLURM needed)."""
    src = tmp_path / "site.yaml"
    src.write_text(yaml.safe_dump({
        "jobqueue": {"slurm": {"queue": "normal", "account": "lab", "cores": 8,
                               "memory": "32GB", "walltime": "04:00:00", "death-timeout": 120,
                               "worker-extra-args": ["--lifetime", "3h"]}},
        "dcbulk": {"cluster": "slurm", "maximum-jobs": 10}}))
    doc = _localized_config(src, tmp_path / "logs", tmp_path / "work")
    section = doc["jobqueue"]["slurm"]
    assert "account" not in section and section["queue"] == "debug"
    assert section["interface"] == "lo" and section["cores"] == 1
    assert section["death-timeout"] == 120
    assert section["worker-extra-args"] == ["--lifetime", "3h", "--no-dashboard"]
    assert doc["dcbulk"] == {"cluster": "slurm", "jobs": 2, "worker-timeout": "10 minutes"}
    assert re.fullmatch(r"\d\d:\d\d:\d\d", section["walltime"])
