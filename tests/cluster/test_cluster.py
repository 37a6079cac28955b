"""Tests of dcbulk.cluster: clusters from dask's configuration, and cluster_configs/*.yaml.

No SLURM is needed: job scripts are rendered without submitting, and the batch path of
``open_client`` runs against a fake ``sbatch``/``scancel`` pair that starts the job script as
a local process (or holds it, or fails like ``sbatch`` while ``slurmctld`` is down).
dask's configuration of the tests is their own (``conftest.py``: ``$DASK_CONFIG`` in a
temporary directory); the site files of the "plain dask-jobqueue" test live in ``tmp_path``.
"""
from __future__ import annotations

import contextlib
import operator
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import pytest
import yaml

from dcbulk.cli import EXIT_ERROR, EXIT_USAGE, main
from dcbulk.cluster import (DEFAULTS, KINDS, check_client, job_script, open_client, setting,
                            use_config_file)
from dcbulk.engine.client import WORKER_ENVIRON
from dcbulk.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "cluster_configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def shipped() -> dict[str, Path]:
    if not CONFIG_DIR.is_dir():
        pytest.skip(f"{CONFIG_DIR} is absent")
    return {kind: CONFIG_DIR / f"{kind}.yaml" for kind in ("local", "slurm", "pbs")}


def _no_batch_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH with nothing on it: no sbatch, no qsub."""
    empty = tmp_path / "bin-empty"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# -- the shipped files are dask configuration ----------------------------------------------
def test_shipped_files_are_dask_configuration(shipped: dict[str, Path]):
    for kind, path in shipped.items():
        doc = yaml.safe_load(path.read_text())
        assert doc["dcbulk"]["cluster"] == kind
        with use_config_file(path):
            assert setting("cluster") == kind
            if kind != "local":
                section = dask.config.get(f"jobqueue.{kind}")
                for key in ("queue", "account", "walltime", "memory"):
                    assert isinstance(section[key], str), (kind, key)
                # a few threads per process: the codecs run outside HDF5's lock
                assert section["cores"] % section["processes"] == 0
                assert section["cores"] // section["processes"] == 4
                assert section["worker-extra-args"][:1] == ["--lifetime"]
                assert setting("maximum-jobs") >= setting("minimum-jobs")
        assert setting("cluster") == "local"  # merged for the block only


def test_local_yaml_holds_the_builtin_defaults(shipped: dict[str, Path]):
    doc = yaml.safe_load(shipped["local"].read_text())
    assert doc["dcbulk"] == {"cluster": "local", "local": DEFAULTS["local"]}


def test_a_file_merges_over_dask_configuration(tmp_path: Path):
    path = _write(tmp_path / "c.yaml", """\
        jobqueue: {slurm: {queue: fromfile}}
        dcbulk: {jobs: 3}
        temporary-directory: /scratch/spill
        """)
    with dask.config.set({"jobqueue.slurm.account": "fromenv", "jobqueue.slurm.queue": "env"}):
        with use_config_file(path):
            assert dask.config.get("jobqueue.slurm.queue") == "fromfile"
            assert dask.config.get("jobqueue.slurm.account") == "fromenv"  # kept
            assert setting("jobs") == 3 and setting("local.threads-per-worker") is None
            assert dask.config.get("temporary-directory") == "/scratch/spill"
        assert dask.config.get("jobqueue.slurm.queue") == "env"
    assert setting("jobs") is None


@pytest.mark.parametrize("text, match", [
    ("dcbulk: [", "invalid YAML"),
    ("- 1", "expected dask configuration"),
    ("jobqueue: [slurm]", "expected dask configuration"),
    ("dcbulk: {local: 4}", r"dcbulk\.local must be a mapping"),
    ("dcbulk-cluster: {kind: slurm}", "no longer read"),
    ("dcbulk: {jbos: 2}", r"unknown setting dcbulk\.jbos \(did you mean jobs\?\)"),
    ("dcbulk: {local: {n_wokers: 2}}", r"dcbulk\.local\.n_wokers \(did you mean n-workers\?\)"),
    ("dcbulk: {cluster: slurmm}", "unknown cluster kind 'slurmm'"),
    ("jobqueue: {slurm: {qeue: debug}}",
     r"unknown setting jobqueue\.slurm\.qeue \(did you mean queue\?\)"),
    ("jobqueue:\n  slurm:\n    walltime: 12:00:00",
     r"jobqueue\.slurm\.walltime must be quoted.*43200"),
    ("jobqueue: {slurm: {interface: nosuch0}}",
     r"jobqueue\.slurm\.interface is 'nosuch0', which this machine does not have"),
    ("jobqueue: {slurm: {scheduler-options: {interface: nosuch1}}}",
     r"scheduler-options\.interface is 'nosuch1'"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, match: str):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=match) as info:
        job_script(cluster="slurm" if "cluster:" not in text else None, cluster_config=path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path)) or "cluster kind" in str(info.value)


def test_a_worker_interface_elsewhere_is_not_checked_here(tmp_path: Path):
    path = _write(tmp_path / "c.yaml", """\
        jobqueue: {slurm: {cores: 1, memory: 1GiB, interface: ib9,
                           scheduler-options: {interface: lo}}}
        """)
    assert "--interface ib9" in job_script(cluster="slurm", cluster_config=path)


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        job_script(cluster_config=tmp_path / "nope.yaml")


# -- job scripts ---------------------------------------------------------------------------
def test_slurm_job_script_and_overrides(shipped, tmp_path, monkeypatch):
    _no_batch_commands(monkeypatch, tmp_path)  # rendering needs no sbatch
    with dask.config.set({"jobqueue.slurm.queue": "debug", "jobqueue.slurm.account": "proj42",
                          "jobqueue.slurm.cores": 2, "jobqueue.slurm.memory": "4GiB"}):
        script = job_script(cluster="slurm")  # no file: dask's configuration alone
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    assert "#SBATCH -p debug" in lines and "#SBATCH -A proj42" in lines
    for key, value in WORKER_ENVIRON.items():
        assert f"export {key}={value}" in lines

    lines = job_script(cluster_config=shipped["slurm"]).splitlines()
    for expected in ("#SBATCH -p normal", "#SBATCH -A my-project", "#SBATCH -t 02:00:00",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G"):
        assert expected in lines, expected
    worker = lines[-1]
    assert worker.startswith(sys.executable)  # python: null -> this interpreter
    assert "--lifetime 110m --lifetime-stagger 4m" in worker
    assert "--nworkers 2" in worker and "--nthreads 4" in worker

    # the command line's per-worker sizing becomes the job's
    lines = job_script(cluster_config=shipped["slurm"], memory_limit="2GiB",
                       threads_per_worker=2).splitlines()
    assert "#SBATCH --mem=8G" in lines  # 4 workers x 2 GiB
    assert "--nworkers 4" in lines[-1] and "--nthreads 2" in lines[-1]
    with pytest.raises(ConfigError, match="must divide"):
        job_script(cluster_config=shipped["slurm"], threads_per_worker=3)
    with pytest.raises(ConfigError, match="--memory-limit 'lots' is not a size"):
        job_script(cluster_config=shipped["slurm"], memory_limit="lots")


def test_pbs_job_script(shipped, tmp_path, monkeypatch):
    _no_batch_commands(monkeypatch, tmp_path)
    with dask.config.set({"jobqueue.pbs.queue": "short"}):  # the file wins over dask's
        lines = job_script(cluster_config=shipped["pbs"]).splitlines()
    for expected in ("#PBS -q workq", "#PBS -A my-project", "#PBS -l walltime=02:00:00",
                     "#PBS -l select=1:ncpus=8:mem=32GB", "#PBS -j oe"):
        assert expected in lines, expected
    assert "--lifetime 110m" in lines[-1]
    assert f"export MALLOC_MMAP_THRESHOLD_={WORKER_ENVIRON['MALLOC_MMAP_THRESHOLD_']}" in lines


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("local", "slurm", "pbs")])
def test_other_batch_systems_render(kind: str):
    with dask.config.set({f"jobqueue.{kind}.cores": 2, "jobqueue.htcondor.disk": "1GB"}):
        script = job_script(cluster=kind, threads_per_worker=1, memory_limit="1GiB")
    assert "--nworkers 2" in script
    assert "distributed.cli.dask_worker" in script and "MALLOC_MMAP_THRESHOLD_" in script


def test_local_job_script_describes_the_cluster(shipped):
    text = job_script(cluster_config=shipped["local"], n_workers=3, threads_per_worker=1)
    assert "3 worker process(es), 1 thread(s) each" in text and "MALLOC_" in text
    cores = os.cpu_count() or 1  # the default: a process per core, one thread each
    assert f"{cores} worker process(es), 1 thread(s) each" in job_script(
        cluster_config=shipped["local"])
    assert f"2 worker process(es), {max(1, cores // 2)} thread(s) each" in job_script(
        cluster_config=shipped["local"], n_workers=2)


def test_dry_run_creates_no_log_directory(shipped, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = job_script(cluster_config=shipped["slurm"])
    assert "#SBATCH -o dcbulk-worker-logs/dask-worker-%J.out" in script
    assert list(tmp_path.iterdir()) == []


_PLAIN_SITE = """\
jobqueue:
  slurm:
    queue: batch
    account: lab42
    cores: 4
    processes: 2
    memory: 16GiB
    walltime: '01:00:00'
    job-extra-directives: ['--qos=long']
    job-script-prologue: ['module load python/3.11']
    worker-extra-args: ['--lifetime', '50m']
    local-directory: /tmp/scratch
"""


def test_a_plain_dask_jobqueue_file_works_unchanged(tmp_path):
    """The site's jobqueue.yaml in $DASK_CONFIG: dcbulk renders what SLURMCluster renders,
    plus only its worker environment before the site's prologue."""
    site = tmp_path / "dask"
    site.mkdir()
    (site / "jobqueue.yaml").write_text(_PLAIN_SITE)
    env = {**os.environ, "DASK_CONFIG": str(site), "HOME": str(tmp_path)}
    plain = subprocess.run(
        [sys.executable, "-c", "from dask_jobqueue import SLURMCluster; "
         "print(SLURMCluster(scheduler_options={'dashboard_address': ':0'}).job_script())"],
        env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    src = tmp_path / "src"
    src.mkdir()
    ours = subprocess.run(
        [sys.executable, "-m", "dcbulk.cli", "convert", str(src), "-o", str(tmp_path / "out"),
         "--cluster", "slurm", "--dry-run"],
        env=env, capture_output=True, text=True, timeout=120)
    assert ours.returncode == 0, ours.stderr
    exports = [f"export {k}={v}" for k, v in WORKER_ENVIRON.items()]
    ours_lines = [ln for ln in ours.stdout.splitlines() if ln not in exports]
    assert len(ours.stdout.splitlines()) - len(ours_lines) == len(exports)
    plain_lines = plain.splitlines()
    assert [ln for ln in ours_lines if "dask_worker" not in ln] == \
        [ln for ln in plain_lines if "dask_worker" not in ln]
    worker = lambda lines: next(ln for ln in lines if "dask_worker" in ln).split()  # noqa: E731
    ours_w, plain_w = worker(ours_lines), worker(plain_lines)
    assert ours_w[:3] + ours_w[4:] == plain_w[:3] + plain_w[4:]  # but the scheduler address
    for expected in ("#SBATCH -p batch", "#SBATCH -A lab42", "#SBATCH --qos=long",
                     "module load python/3.11"):
        assert expected in plain_lines
    everything = ours.stdout.splitlines()
    assert everything.index(exports[-1]) < everything.index("module load python/3.11")
    assert not (tmp_path / ".config").exists()


# -- connecting ----------------------------------------------------------------------------
def test_open_client_argument_errors(tmp_path: Path, monkeypatch):
    with pytest.raises(ConfigError, match="cluster_config cannot be combined"):
        with open_client(scheduler="tcp://127.0.0.1:1", cluster_config="x.yaml"):
            pass
    with pytest.raises(ConfigError, match="n_workers cannot be combined with a running"):
        with open_client(scheduler="tcp://127.0.0.1:1", n_workers=2):
            pass
    with pytest.raises(ConfigError, match="scheduler file does not exist"):
        with open_client(scheduler_file=tmp_path / "scheduler.json"):
            pass
    with pytest.raises(ConfigError, match="--jobs applies to batch clusters"):
        with open_client(cluster="local", jobs=2):
            pass
    _no_batch_commands(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="'sbatch', which is not on PATH"):
        with open_client(cluster="slurm"):
            pass
    with pytest.raises(ConfigError, match="'qsub', which is not on PATH"):
        with open_client(cluster="pbs"):
            pass


def test_unreachable_scheduler_waits_as_configured(tmp_path, capsys):
    """Defect 10.5: an unreachable --scheduler waited a fixed 60 s."""
    src = tmp_path / "src"
    src.mkdir()
    from dcbulk.synth import make_rtdc
    make_rtdc(src / "a.rtdc", 20, seed=1)
    t0 = time.monotonic()
    status = main(["convert", str(src), "-o", str(tmp_path / "out"), "--scheduler",
                   "tcp://127.0.0.1:9", "--timeout", "1s"])
    assert status == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot connect to the dask scheduler within 1 s" in err[0], err
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # dask's own setting
        with pytest.raises(ConfigError, match="within 1 s"):
            with open_client(scheduler="tcp://127.0.0.1:9"):
                pass
    assert time.monotonic() - t0 < 30  # two waits of 1 s each, not 60 s


def _plus_one(x: int) -> int:
    return x + 1


def test_open_client_starts_a_local_cluster_and_connects_to_it():
    with dask.config.set({"dcbulk.local.threads-per-worker": 1}):
        with open_client(n_workers=1) as (client, cluster):
            assert cluster is not None
            assert list(client.nthreads().values()) == [1]
            assert client.submit(_plus_one, 41).result(timeout=30) == 42
            env = client.run(os.environ.get, "MALLOC_MMAP_THRESHOLD_")
            assert list(env.values()) == [WORKER_ENVIRON["MALLOC_MMAP_THRESHOLD_"]]
            address = cluster.scheduler_address
            with open_client(scheduler=address) as (client2, none):
                assert none is None
                assert client2.submit(_plus_one, 1, pure=False).result(timeout=30) == 2
            assert client.submit(_plus_one, 2, pure=False).result(timeout=30) == 3
    assert client.status == "closed" and cluster.status.name == "closed"


# -- a fake SLURM: sbatch starts the job script as a local process -----------------------
_FAKE_SBATCH = """\
#!/bin/bash
# fake sbatch for dcbulk tests: keep the script, start it in its own session unless held
set -e
if [ -n "$FAKE_SLURM_DOWN" ]; then
  echo "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2
  exit 1
fi
id=$$
cp "$1" "$FAKE_SLURM_DIR/job-$id.sh"
if [ -n "$FAKE_SLURM_HOLD" ]; then
  : > "$FAKE_SLURM_DIR/job-$id.held"
else
  setsid bash "$FAKE_SLURM_DIR/job-$id.sh" > "$FAKE_SLURM_DIR/job-$id.log" 2>&1 < /dev/null &
  echo $! > "$FAKE_SLURM_DIR/job-$id.pid"
fi
echo "Submitted batch job $id"
"""
_FAKE_SCANCEL = """\
#!/bin/bash
# fake scancel for dcbulk tests: end the process group the fake sbatch started
for id in "$@"; do
  echo "$id" >> "$FAKE_SLURM_DIR/cancelled"
  if [ -f "$FAKE_SLURM_DIR/job-$id.pid" ]; then
    kill -TERM -- "-$(cat "$FAKE_SLURM_DIR/job-$id.pid")" 2>/dev/null || true
  fi
done
"""


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A directory of fake SLURM commands on PATH; ends the jobs it started at teardown."""
    bindir, state = tmp_path / "fake-bin", tmp_path / "fake-slurm"
    bindir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", _FAKE_SBATCH), ("scancel", _FAKE_SCANCEL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    for name in ("FAKE_SLURM_HOLD", "FAKE_SLURM_DOWN"):
        monkeypatch.delenv(name, raising=False)
    config = _write(tmp_path / "slurm-test.yaml", f"""\
        jobqueue:
          slurm:
            queue: testq
            cores: 1
            processes: 1
            memory: 1GiB
            walltime: "00:10:00"
            death-timeout: 20
            local-directory: {tmp_path / "worker-space"}
            worker-extra-args: ["--lifetime", "5m"]
            scheduler-options: {{dashboard_address: ":0"}}
        dcbulk:
          cluster: slurm
          jobs: 1
        """)
    yield config, state
    for pidfile in state.glob("job-*.pid"):  # only the process groups started here
        pgid = int(pidfile.read_text())
        if _alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def _wait_until_dead(pgids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pgids):
        time.sleep(0.2)
    return [p for p in pgids if _alive(p)]


def test_open_client_with_a_batch_cluster(fake_slurm):
    config, state = fake_slurm
    with open_client(cluster_config=config, timeout="60s") as (client, cluster):
        assert type(cluster).__name__ == "SLURMCluster"
        # the job's worker cannot import this test module: submit an importable function
        assert client.submit(operator.add, 1, 1).result(timeout=30) == 2
        env = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        assert list(env.values()) == [WORKER_ENVIRON["MALLOC_TRIM_THRESHOLD_"]]
        scripts = list(state.glob("job-*.sh"))
        assert len(scripts) == 1
        text = scripts[0].read_text()
        assert "#SBATCH -p testq" in text and "--lifetime 5m" in text
        assert cluster.scheduler_address.split(":")[-1] in text
    pgids = [int(p.read_text()) for p in state.glob("job-*.pid")]
    assert len(pgids) == 1
    assert (state / "cancelled").read_text().split() == [scripts[0].stem[4:]]
    assert _wait_until_dead(pgids) == [], "the worker job survived scancel"


def test_open_client_times_out_with_advice(fake_slurm, monkeypatch):
    config, state = fake_slurm
    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")
    with pytest.raises(ConfigError) as info:
        with open_client(cluster_config=config, timeout="1s"):
            pytest.fail("must not get a client without workers")
    message = str(info.value)
    assert "no dask worker joined within 1 s" in message
    assert "testq" in message and "squeue -u $USER" in message
    held = [p.stem[4:] for p in state.glob("job-*.held")]
    assert len(held) == 1 and (state / "cancelled").read_text().split() == held


def test_failed_submission_is_one_line_at_once(fake_slurm, monkeypatch, tmp_path, capsys):
    """Defect 10.5: sbatch while slurmctld is down gave a WorkerStartTimeoutError traceback
    after the full worker timeout."""
    config, state = fake_slurm
    monkeypatch.setenv("FAKE_SLURM_DOWN", "1")
    src = tmp_path / "src"
    src.mkdir()
    from dcbulk.synth import make_rtdc
    make_rtdc(src / "a.rtdc", 20, seed=1)
    t0 = time.monotonic()
    status = main(["convert", str(src), "-o", str(tmp_path / "out"), "--cluster-config",
                   str(config)])
    assert time.monotonic() - t0 < 60  # not after the worker timeout (10 minutes)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == EXIT_ERROR, err
    assert err == [f"dcbulk: error: {config}: slurm job submission failed: sbatch: error: "
                   f"Batch job submission failed: Unable to contact slurm controller "
                   f"(connect failure)"]
    assert not list(state.glob("job-*"))


def test_adaptive_scale_and_workers_override(fake_slurm, tmp_path):
    config, state = fake_slurm
    adaptive = tmp_path / "adaptive.yaml"
    adaptive.write_text(config.read_text().replace("jobs: 1", "minimum-jobs: 1\n  maximum-jobs: 2"))
    with open_client(cluster_config=adaptive, timeout="60s") as (client, cluster):
        assert cluster._adaptive is not None  # dask-jobqueue's adapt(minimum_jobs, maximum_jobs)
        assert (cluster._adaptive.minimum, cluster._adaptive.maximum) == (1, 2)
        assert client.submit(operator.add, 2, 2).result(timeout=30) == 4
    assert len(list(state.glob("job-*.sh"))) >= 1
    adaptive.write_text(config.read_text().replace("jobs: 1", "minimum-jobs: 3\n  maximum-jobs: 2"))
    with pytest.raises(ConfigError, match=r"dcbulk\.minimum-jobs \(3\) exceeds maximum-jobs"):
        with open_client(cluster_config=adaptive):
            pass
    with open_client(cluster_config=config, n_workers=2) as (client, cluster):  # not jobs: 1
        assert len(cluster.worker_spec) == 2


def test_cli_cluster_choices_are_the_kinds():
    from dcbulk.cli import _parser
    convert = _parser()._subparsers._group_actions[0].choices["convert"]
    action = next(a for a in convert._actions if "--cluster" in a.option_strings)
    assert tuple(action.choices) == tuple(KINDS)


@pytest.mark.parametrize("workers, threads, cores, expected", [
    (None, None, 2, (2, 1)), (None, None, 8, (8, 1)), (2, None, 8, (2, 4)),
    (3, None, 2, (3, 1)), (None, 4, 8, (2, 4)), (None, 3, 2, (1, 3)), (2, 1, 8, (2, 1))])
def test_local_shape_a_process_per_core(workers, threads, cores, expected):
    from dcbulk.engine.client import local_shape
    assert local_shape(workers, threads, cores) == expected


def test_default_local_cluster_is_a_process_per_core():
    with open_client() as (client, cluster):
        assert list(client.nthreads().values()) == [1] * (os.cpu_count() or 1)


@pytest.mark.parametrize("text", ["dcbulk: {local: {n-workers: -3}}",
                                  "dcbulk: {local: {threads-per-worker: 0}}",
                                  "dcbulk: {local: {n-workers: many}}"])
def test_a_count_that_is_no_whole_number_is_one_line(tmp_path: Path, text: str, capsys,
                                                     shared_data_dir):
    """``n-workers: -3`` started a local cluster of no workers: the run waited for ever,
    also with --timeout; 0 threads or a word was a ZeroDivisionError or TypeError."""
    from dcbulk.cli import main
    path = _write(tmp_path / "c.yaml", text)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.rtdc").write_bytes(
        (shared_data_dir / "cytoshot-test-data.rtdc").read_bytes())
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q",
                 "--cluster", "local", "--cluster-config", str(path), "--timeout", "5"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a whole number of at least 1" in err, err


@pytest.mark.parametrize("says, words", [
    (None, "did not answer as a dask scheduler within 2 s"),
    (b"HTTP/1.0 400 Bad Request\r\n\r\n", "answers, but not with dask's protocol")])
def test_a_scheduler_address_that_is_no_dask_scheduler_is_one_line(tmp_path: Path, says,
                                                                   words, capsys,
                                                                   shared_data_dir):
    """An address that accepts connections and then says nothing (or HTTP: the dashboard's
    port given for the scheduler's) made the run wait for ever, whatever --timeout said;
    a scheduler file that is no JSON was distributed's empty AssertionError."""
    import socket
    import threading

    from dcbulk.cli import main
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                held.append(conn)
                if says:
                    conn.sendall(says)
    threading.Thread(target=serve, daemon=True).start()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.rtdc").write_bytes(
        (shared_data_dir / "cytoshot-test-data.rtdc").read_bytes())
    t0 = time.monotonic()
    try:
        status = main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q",
                       "--scheduler", f"tcp://127.0.0.1:{server.getsockname()[1]}",
                       "--timeout", "2"])
    finally:
        server.close()
        for conn in held:
            conn.close()
    err = capsys.readouterr().err
    assert status == 3 and err.count("\n") == 1 and words in err, err
    assert time.monotonic() - t0 < 30
    bad = _write(tmp_path / "scheduler.json", "not json")
    assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q",
                 "--scheduler-file", str(bad), "--timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a dask scheduler file" in err, err


def test_a_worker_memory_threshold_that_is_no_fraction_is_one_line(tmp_path: Path, capsys,
                                                                  shared_data_dir):
    """``distributed.worker.memory.target: abc`` (e.g. from DASK_DISTRIBUTED__...) made every
    nanny fail with a MemoryError traceback: 22 lines before the run's own."""
    import dask

    from dcbulk.cli import main
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.rtdc").write_bytes(
        (shared_data_dir / "cytoshot-test-data.rtdc").read_bytes())
    with dask.config.set({"distributed.worker.memory.target": "abc"}):
        assert main(["convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "-q",
                     "--workers", "2"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "distributed.worker.memory.target must be a fraction" \
        in err, err


#: cluster settings a run cannot start with, as ``(case, extra argv)``; each is one line
UNUSABLE = {
    "a count below 1": ("dcbulk: {local: {n-workers: -3}}", "must be a whole number of at "
                        "least 1"),
    "an unknown kind": ("dcbulk: {cluster: nope}", "unknown cluster kind 'nope'"),
    "a memory threshold": (None, "distributed.worker.memory.target must be a fraction"),
    "no sbatch": (None, "'sbatch', which is not on PATH"),
    "a scheduler file": (None, "not a dask scheduler file"),
    "no scheduler": (None, "cannot connect to the dask scheduler within 1 s"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
@pytest.mark.parametrize("existing", [False, True])
def test_a_cluster_that_cannot_be_set_up_leaves_no_trace_in_the_output(
        tmp_path: Path, case: str, existing: bool, capsys, monkeypatch, shared_data_dir):
    """A bad cluster setting (``dcbulk.local.n-workers: -3``, an unknown kind, ...) was found
    when the cluster started, after the output directory, its lock, manifest and run log
    were made; now it is found first: one line, exit 3, nothing made in the output
    location (a new one is not created, an existing one is left as it was)."""
    text, words = UNUSABLE[case]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.rtdc").write_bytes(
        (shared_data_dir / "cytoshot-test-data.rtdc").read_bytes())
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "kept.txt").write_text("mine\n")
    argv = ["convert", str(tmp_path / "src"), "-o", str(out), "-q", "--timeout", "1"]
    if text is not None:
        argv += ["--cluster-config", str(_write(tmp_path / "c.yaml", text))]
    elif case == "a memory threshold":
        argv += ["--workers", "2"]
    elif case == "no sbatch":
        _no_batch_commands(monkeypatch, tmp_path)
        argv += ["--cluster", "slurm"]
    elif case == "a scheduler file":
        argv += ["--scheduler-file", str(_write(tmp_path / "scheduler.json", "not json"))]
    else:
        argv += ["--scheduler", "tcp://127.0.0.1:9"]
    with dask.config.set({"distributed.worker.memory.target": "abc"}
                         if case == "a memory threshold" else {}):
        status = main(argv)
    err = capsys.readouterr().err
    assert status == EXIT_ERROR and err.count("\n") == 1 and words in err, err
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]
    else:
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))


# -- a file's distributed: section -----------------------------------------------------------
_FRESH_MERGE = """
import sys, dask
from dcbulk.cluster import use_config_file
for _ in range(2):  # a second run in the same process: distributed's defaults still there
    with use_config_file(sys.argv[1]):
        print(dask.config.get("distributed.worker.memory.target"),
              dask.config.get("distributed.comm.timeouts.connect"),
              dask.config.get("distributed.dashboard.export-tool"))
    print(dask.config.get("distributed.worker.memory.target"),
          dask.config.get("distributed.dashboard.export-tool"))
"""


def test_a_distributed_section_merges_into_distributed_defaults(tmp_path):
    """A file's ``distributed:`` replaced the whole section when distributed was not yet
    imported (and the block's end removed the defaults distributed registered inside): every
    command with such a file ended in ``KeyError: 'dashboard'``. Now it is merged into
    distributed's defaults, for the block only. A fresh interpreter: this one has imported
    distributed."""
    path = _write(tmp_path / "c.yaml", """\
        distributed:
          worker:
            memory:
              target: 0.55
        """)
    proc = subprocess.run([sys.executable, "-c", _FRESH_MERGE, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # inside: the file's value beside distributed's defaults; after: the default (0.6)
    assert proc.stdout.splitlines() == ["0.55 30s False", "0.6 False"] * 2, proc.stdout


@pytest.mark.parametrize("text, key, value", [
    ("distributed: 5", "distributed", "5"),
    ("distributed:", "distributed", "None"),
    ("distributed: {dashboard: null}", "distributed.dashboard", "None"),
    ("distributed: {worker: {memory: 0.6}}", "distributed.worker.memory", "0.6"),
])
def test_a_distributed_setting_that_is_no_mapping_is_one_line(tmp_path, capsys, text, key,
                                                               value, shared_data_dir):
    """``distributed: 5`` or ``dashboard: null`` replaced a section distributed reads
    (a traceback); now one line naming the file and the setting, exit 3, nothing made."""
    path = tmp_path / "c.yaml"
    assert _config_refused(tmp_path, capsys, text, shared_data_dir) == (
        f"dcbulk: error: {path}: {key} must be a mapping of settings (as dask's default is), "
        f"got {value}\n")


def _config_refused(tmp_path, capsys, text: str, shared_data_dir) -> str:
    """The stderr of a convert given the cluster config ``text`` (as ``tmp_path/c.yaml``),
    which it must refuse with exit 3 before making anything."""
    path = _write(tmp_path / "c.yaml", text + "\n")
    out = tmp_path / "out"
    status = main(["convert", str(shared_data_dir / "cytoshot-test-data.rtdc"), "-o", str(out),
                   "-q", "--cluster-config", str(path)])
    err = capsys.readouterr().err
    assert status == EXIT_ERROR and not out.exists(), err
    return err


def test_convert_with_a_distributed_section_runs(tmp_path, shared_data_dir):
    """The report's case, whole: ``dcbulk convert S -o cw --cluster-config c.yaml`` with
    ``distributed.worker.memory.target: 0.6`` was a traceback (exit 1); now it converts."""
    path = _write(tmp_path / "c.yaml", "distributed: {worker: {memory: {target: 0.6}}}\n")
    out = tmp_path / "cw"
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", "convert",
                           str(shared_data_dir / "cytoshot-test-data.rtdc"), "-o", str(out),
                           "-q", "--cluster-config", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("dcbulk: 1 converted, 0 skipped (finished before), "
                                  "0 failed"), proc.stdout
    assert (out / "cytoshot-test-data.rtdc").is_file()


@pytest.mark.parametrize("text, words", [
    # the cluster's start failed on int(infinity) after the output directory was made
    ("dcbulk: {local: {memory-limit: 1e400}}", "got '1e400'"),
    ("dcbulk: {local: {memory-limit: .inf}}", "got inf"),
    ("dcbulk: {local: {memory-limit: .nan}}", "got nan"),
])
def test_a_memory_limit_of_the_config_that_is_no_size_is_one_line(tmp_path, capsys, text,
                                                                  words, shared_data_dir):
    assert _config_refused(tmp_path, capsys, text, shared_data_dir) == (
        "dcbulk: error: dcbulk.local.memory-limit must be a size such as 4GiB, a fraction of "
        f"the machine's memory such as 0.5, or auto, {words}\n")


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e400", "abc", "-5", "0"])
@pytest.mark.parametrize("where", [["--scheduler", "tcp://127.0.0.1:9"], []],
                         ids=["scheduler", "local"])
def test_a_timeout_that_is_no_duration_is_a_usage_error(timeout, where, capsys, tmp_path):
    """``--timeout 1e400`` (infinity) with a scheduler waited for ever; ``abc``, ``-5`` or
    ``nan`` were taken without a word by a local run, which does not use them."""
    status = main(["convert", str(tmp_path), "-o", str(tmp_path / "out"), "-q", *where,
                   "--timeout", timeout])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and err == (
        f"dcbulk convert: usage error: argument --timeout: not a duration such as '30s' or "
        f"'10 minutes': '{timeout}' (see dcbulk convert --help)\n"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("timeout", ["nan", "1e400"])
def test_a_timeout_of_the_api_that_never_ends_is_one_line(timeout):
    """The Python API's ``timeout=`` with a scheduler: one line, not a wait for ever."""
    with pytest.raises(ConfigError, match=rf"tcp://127\.0\.0\.1:9: timeout '{timeout}' is "
                       r"not a duration such as '30s' or '10 minutes'"):
        check_client(scheduler="tcp://127.0.0.1:9", timeout=timeout)


@pytest.mark.parametrize("argv, name, what, why", [
    (["--workers", "100000"], "--workers", "worker processes",
     "each worker process needs a few hundred MB"),
    (["--threads-per-worker", "100000"], "--threads-per-worker", "threads per worker",
     "more only wait for the cores"),
    (["--cluster-config", "n.yaml"], "dcbulk.local.n-workers", "worker processes",
     "each worker process needs a few hundred MB"),
])
def test_a_local_cluster_beyond_the_machine_is_one_line(tmp_path, capsys, monkeypatch, argv,
                                                        name, what, why, shared_data_dir):
    """``--workers 100000`` started 100000 worker processes, silently for minutes (SIGTERM
    then gave a traceback); now one line naming the bound (4 per core), nothing started or
    made."""
    _write(tmp_path / "n.yaml", "dcbulk: {local: {n-workers: 100000}}\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    status = main(["convert", str(shared_data_dir / "cytoshot-test-data.rtdc"), "-o", str(out),
                   "-q", *argv])
    err = capsys.readouterr().err
    cores = max(1, os.cpu_count() or 1)
    assert status == EXIT_ERROR and err == (
        f"dcbulk: error: {name} 100000: a local cluster takes at most {4 * cores} {what} here "
        f"(4 per core, {cores} cores; {why})\n"), err
    assert not out.exists() and time.perf_counter() - t0 < 30
