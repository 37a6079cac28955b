"""Tests of cluster configuration (dcbulk.cluster) and the shipped cluster_configs/*.yaml.

No SLURM is needed: job scripts are rendered without submitting, and the batch path of
``open_client`` runs against a fake ``sbatch``/``scancel`` pair that starts the job script as
a local process (or holds it, to test the timeout).
"""
from __future__ import annotations

import dataclasses
import operator
import os
import signal
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dcbulk.cluster import (ClusterConfig, default_cluster_config, job_script,
                            load_cluster_config, make_cluster, open_client)
from dcbulk.engine.client import WORKER_ENVIRON
from dcbulk.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "cluster_configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def configs() -> dict[str, ClusterConfig]:
    if not CONFIG_DIR.is_dir():
        pytest.skip(f"{CONFIG_DIR} is absent")
    return {kind: load_cluster_config(CONFIG_DIR / f"{kind}.yaml")
            for kind in ("local", "slurm", "pbs")}


def test_shipped_files_load(configs: dict[str, ClusterConfig]):
    for kind, config in configs.items():
        assert config.kind == kind and config.path.endswith(f"{kind}.yaml")
    for kind in ("slurm", "pbs"):
        cluster = configs[kind].cluster
        for key in ("queue", "account", "walltime", "memory"):
            assert isinstance(cluster[key], str), (kind, key)
        assert isinstance(cluster["cores"], int) and cluster["processes"] == cluster["cores"]
        assert cluster["worker_extra_args"][:1] == ["--lifetime"]
        assert configs[kind].scale["maximum_jobs"] >= configs[kind].scale["minimum_jobs"]


def test_local_yaml_matches_the_builtin_defaults(configs: dict[str, ClusterConfig]):
    builtin = default_cluster_config()
    assert dataclasses.replace(configs["local"], path=None) == builtin
    assert builtin.path is None and "built-in" in builtin.where


@pytest.mark.parametrize("text, match", [
    ("dcbulk-cluster: {kind: lsf}", r"dcbulk-cluster\.kind must be one of local, slurm, pbs"),
    ("dcbulk-cluster: {cluster: {}}", r"dcbulk-cluster\.kind is missing"),
    ("dcbulk-cluster: {kind: local}\nextra: 1", "unknown top-level key.*extra"),
    ("cluster: {kind: local}", "top-level 'dcbulk-cluster:'"),
    ("dcbulk-cluster: {kind: local, scaling: {}}", r"dcbulk-cluster\.scaling"),
    ("dcbulk-cluster: {kind: slurm, scale: {job: 2}}", r"scale\.job"),
    ("dcbulk-cluster: {kind: slurm, scale: {jobs: two}}", r"scale\.jobs must be"),
    ("dcbulk-cluster: {kind: slurm, scale: {jobs: 2, maximum_jobs: 3}}", "either jobs"),
    ("dcbulk-cluster: {kind: slurm, scale: {minimum_jobs: 3, maximum_jobs: 2}}",
     "minimum_jobs"),
    ("dcbulk-cluster: {kind: local, scale: {jobs: 2}}", "n_workers"),
    ("dcbulk-cluster:\n  kind: slurm\n  cluster:\n    walltime: 12:00:00",
     r"cluster\.walltime must be quoted.*43200"),
    ("dcbulk-cluster: {kind: slurm, cluster: {cores: '8'}}", r"cluster\.cores must be int"),
    ("dcbulk-cluster: {kind: slurm, cluster: {cores: 0}}", r"cluster\.cores must be at least"),
    ("dcbulk-cluster: {kind: slurm, cluster: {worker_extra_args: --lifetime 5m}}",
     r"cluster\.worker_extra_args must be a list of strings"),
    ("dcbulk-cluster: {kind: slurm, cluster: [1]}", r"dcbulk-cluster\.cluster must be a map"),
    ("dcbulk-cluster: {kind: local, cluster: {n_workers: true}}", r"cluster\.n_workers"),
    ("dcbulk-cluster: [", "invalid YAML"),
])
def test_bad_files_are_config_errors(tmp_path: Path, text: str, match: str):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=match) as info:
        load_cluster_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_cluster_config(tmp_path / "nope.yaml")


def test_unknown_cluster_options_are_named_with_a_hint(tmp_path: Path):
    path = _write(tmp_path / "c.yaml", """\
        dcbulk-cluster:
          kind: slurm
          cluster: {cores: 2, memory: 4GiB, walltme: "00:10:00"}
          scale: {jobs: 1}
        """)
    config = load_cluster_config(path)  # key names are checked against the cluster class
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown option cluster\.walltme for "
                                          r"SLURMCluster \(did you mean walltime\?\)"):
        job_script(config)
    local = ClusterConfig(kind="local", cluster={"n_wokers": 1}, path="l.yaml")
    with pytest.raises(ConfigError, match=r"l\.yaml: unknown option cluster\.n_wokers for "
                                          r"LocalCluster \(did you mean n_workers\?\)"):
        job_script(local)
    with pytest.raises(ConfigError, match="processes"):
        job_script(ClusterConfig(kind="local", cluster={"processes": False}))


def test_overrides(configs: dict[str, ClusterConfig]):
    local = configs["local"]
    assert local.with_overrides(n_workers=None, memory_limit=None) == local
    changed = local.with_overrides(n_workers=3, threads_per_worker=2, memory_limit="1GB")
    assert changed.cluster == {"n_workers": 3, "threads_per_worker": 2, "memory_limit": "1GB"}
    assert local.cluster["n_workers"] is None  # the original is untouched
    assert changed.path == local.path

    slurm = configs["slurm"]
    assert slurm.with_overrides(queue="debug", walltime="00:05:00").cluster["queue"] == "debug"
    assert slurm.with_overrides(n_workers=6).scale == {"workers": 6}
    assert slurm.with_overrides(jobs=2).scale == {"jobs": 2}
    assert slurm.with_overrides(maximum_jobs=9).scale == {
        "minimum_jobs": slurm.scale["minimum_jobs"], "maximum_jobs": 9}
    assert slurm.with_overrides(jobs=2).with_overrides(minimum_jobs=1).scale == {
        "minimum_jobs": 1}
    with pytest.raises(ConfigError, match="threads_per_worker only apply to local"):
        slurm.with_overrides(threads_per_worker=2)
    with pytest.raises(ConfigError, match=r"cluster\.cores must be int"):
        slurm.with_overrides(cores="many")
    with pytest.raises(ConfigError, match=r"scale\.jobs"):
        slurm.with_overrides(jobs=-1)


def _no_batch_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH with nothing but this Python's directory: no sbatch, no qsub."""
    empty = tmp_path / "bin-empty"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def test_slurm_job_script(configs: dict[str, ClusterConfig], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch):
    _no_batch_commands(monkeypatch, tmp_path)  # rendering needs no sbatch
    config = configs["slurm"].with_overrides(queue="debug", account="proj42",
                                             walltime="00:45:00")
    script = job_script(config)
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    for expected in ("#SBATCH -p debug", "#SBATCH -A proj42", "#SBATCH -t 00:45:00",
                     f"#SBATCH --cpus-per-task={config.cluster['cores']}",
                     "#SBATCH --mem=32G"):
        assert expected in lines, expected
    for key, value in WORKER_ENVIRON.items():
        assert f"export {key}={value}" in lines
    worker = lines[-1]
    assert "distributed.cli.dask_worker" in worker and "--lifetime 110m" in worker
    assert "--lifetime-stagger 4m" in worker and f"--nworkers {config.cluster['processes']}"\
        in worker and "--nthreads 1" in worker
    assert worker.startswith(sys.executable)  # python: null -> this interpreter
    assert job_script(configs["slurm"].with_overrides(interface="ib0")).count(
        "--interface ib0") == 1


def test_pbs_job_script(configs: dict[str, ClusterConfig], tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch):
    _no_batch_commands(monkeypatch, tmp_path)
    config = configs["pbs"].with_overrides(queue="short", account="proj7",
                                           walltime="01:30:00")
    lines = job_script(config).splitlines()
    for expected in ("#PBS -q short", "#PBS -A proj7", "#PBS -l walltime=01:30:00",
                     "#PBS -l select=1:ncpus=8:mem=32GB", "#PBS -j oe"):
        assert expected in lines, expected
    assert "--lifetime 110m" in lines[-1]
    assert f"export MALLOC_MMAP_THRESHOLD_={WORKER_ENVIRON['MALLOC_MMAP_THRESHOLD_']}" in lines


def test_local_job_script_describes_the_cluster(configs: dict[str, ClusterConfig]):
    text = job_script(configs["local"].with_overrides(n_workers=3))
    assert "3 worker process(es), 1 thread(s) each" in text and "MALLOC_" in text


def test_make_cluster_without_sbatch_is_a_config_error(configs, tmp_path, monkeypatch):
    _no_batch_commands(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="'sbatch', which is not on PATH"):
        make_cluster(configs["slurm"])
    with pytest.raises(ConfigError, match="'qsub', which is not on PATH"):
        make_cluster(configs["pbs"])
    with pytest.raises(ConfigError, match="scale is empty"):
        make_cluster(ClusterConfig(kind="slurm", cluster={"cores": 1, "memory": "1GiB"}))


def test_open_client_argument_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="at most one of"):
        with open_client(scheduler="tcp://127.0.0.1:1", cluster_config="x.yaml"):
            pass
    with pytest.raises(ConfigError, match="n_workers only apply to a cluster that dcbulk"):
        with open_client(scheduler="tcp://127.0.0.1:1", n_workers=2):
            pass
    with pytest.raises(ConfigError, match="scheduler file does not exist"):
        with open_client(scheduler_file=tmp_path / "scheduler.json"):
            pass
    with pytest.raises(ConfigError, match="cannot connect"):
        with open_client(scheduler="tcp://127.0.0.1:9", timeout="0.5s"):
            pass


def _plus_one(x: int) -> int:
    return x + 1


def test_open_client_starts_a_local_cluster_and_connects_to_it():
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
        assert client.submit(_plus_one, 2, pure=False).result(timeout=30) == 3  # still open
    assert client.status == "closed" and cluster.status.name == "closed"


# -- a fake SLURM: sbatch starts the job script as a local process -----------------------
_FAKE_SBATCH = """\
#!/bin/bash
# fake sbatch for dcbulk tests: keep the script, start it in its own session unless held
set -e
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
    monkeypatch.delenv("FAKE_SLURM_HOLD", raising=False)
    config = _write(tmp_path / "slurm-test.yaml", f"""\
        dcbulk-cluster:
          kind: slurm
          cluster:
            queue: testq
            cores: 1
            processes: 1
            memory: 1GiB
            walltime: "00:10:00"
            death_timeout: 20
            local_directory: {tmp_path / "worker-space"}
            worker_extra_args: ["--lifetime", "5m"]
            scheduler_options: {{dashboard_address: ":0"}}
          scale:
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
    assert "no dask worker joined within 1s" in message
    assert "testq" in message and "squeue -u $USER" in message
    held = [p.stem[4:] for p in state.glob("job-*.held")]
    assert len(held) == 1 and (state / "cancelled").read_text().split() == held


def test_job_script_dry_run_creates_no_log_directory(configs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = configs["slurm"]
    assert config.cluster.get("log_directory") == "dcbulk-worker-logs"
    script = job_script(config)
    assert "#SBATCH -o dcbulk-worker-logs/dask-worker-%J.out" in script
    assert list(tmp_path.iterdir()) == []
