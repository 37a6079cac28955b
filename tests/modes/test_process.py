"""dcbulk process: dcnum's pipeline on every measurement of an archive, on dask workers.

Kept small (each dcnum job spawns its own processes): one module-wide archive of two
synthetic measurements (cells the ``thresh`` segmenter finds), one real sample file and one
damaged file, processed once on a real LocalCluster of one non-daemonic worker; the tests
compare its outputs with the same dcnum jobs run directly in this process.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (zstd for reading dcnum's outputs)
import numpy as np
import pytest

pytest.importorskip("dcnum")

import dcbulk  # noqa: E402
from dcbulk.bulk.manifest import MANIFEST_NAME  # noqa: E402
from dcbulk.cli import main  # noqa: E402
from dcbulk.errors import ConfigError, ManifestError, UsageError  # noqa: E402
from dcbulk.modes.process import (ProcessJob, check_workers, cluster_settings,  # noqa: E402
                                  output_relpath)
from dcbulk.modes.process_options import PipelineOptions, parse_kwargs  # noqa: E402
from dcbulk.synth import make_rtdc  # noqa: E402
from dcbulk.verify.processed import check_processed  # noqa: E402

SAMPLE = "cytoshot-test-data.rtdc"  # 40 events with images; dcnum processes it
TAP = {"basin_strategy": "tap"}


@pytest.fixture(scope="module")
def pclient():
    """A LocalCluster as ``dcbulk process`` starts it: one non-daemonic worker, 2 threads,
    offering the ``dcnum`` resource (and a ``GPU`` one, to test resources).

    The settings are held while the cluster lives, as a run of ``dcbulk process`` holds them
    around its own cluster: distributed's nanny reads ``distributed.worker.daemon`` again
    when it restarts a worker that died, which otherwise comes back daemonic (CI saw that:
    every later test of this module was refused by the worker check)."""
    import dask
    from distributed import Client

    from dcbulk.engine.client import make_local_cluster
    with dask.config.set(cluster_settings(resources={"dcnum": 1, "GPU": 1})):
        cluster = make_local_cluster(n_workers=1, threads_per_worker=2, dashboard_address=":0")
        with Client(cluster) as client:
            yield client
        cluster.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data_dir):
    root = tmp_path_factory.mktemp("process-src")
    for sub in ("day1", "day2"):
        (root / sub).mkdir()
    make_rtdc(root / "day1" / "A.rtdc", 70, seed=11)
    make_rtdc(root / "day2" / "B.rtdc", 90, seed=12)
    shutil.copy(shared_data_dir / SAMPLE, root / SAMPLE)
    (root / "day2" / "broken.rtdc").write_bytes(b"not an HDF5 file" * 64)
    return root


@pytest.fixture(scope="module")
def processed(archive, tmp_path_factory, pclient):
    dst = tmp_path_factory.mktemp("process-dst")
    report = dcbulk.process([archive], dst, client=pclient, **TAP)
    return dst, report


def _good(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.rtdc") if p.name != "broken.rtdc")


def _out(archive: Path, dst: Path, src: Path) -> Path:
    return dst / output_relpath(src.relative_to(archive).as_posix())


_DIRECT = """
import json, sys
from dcnum.logic import DCNumJobRunner, DCNumPipelineJob
from dcbulk.modes.process_options import PipelineOptions
src, out, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
job = DCNumPipelineJob(path_in=src, path_out=out, num_procs=2,
                       **PipelineOptions(**options).job_kwargs())
with DCNumJobRunner(job) as runner:
    runner.run()
sys.exit(0 if runner.state == "done" else 1)
"""


def _direct(src: Path, out: Path, **job) -> Path:
    """The same dcnum job run directly by dcnum (num_procs=2), in a child process: dcnum's
    own runner can hang when its writer process dies as it starts (issue 19), so a run that
    takes over two minutes is ended and made again (at most three times)."""
    for _ in range(3):
        out.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", _DIRECT, str(src), str(out),
                                 json.dumps(job)], start_new_session=True)
        try:
            assert proc.wait(timeout=120) == 0, "dcnum's job failed"
            return out
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    pytest.fail(f"dcnum's own job on {src} hung three times")


def _features(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r", locking=False) as h5:
        return {name: ds[:] for name, ds in h5["events"].items()}


def _pipeline_attrs(path: Path) -> dict:
    with h5py.File(path, "r", locking=False) as h5:
        return {k: v for k, v in h5.attrs.items() if k.startswith("pipeline:")}


def _assert_equals_direct_job(src, out, tmp_path) -> tuple[dict, Path]:
    """``out`` has the features and pipeline attributes of the same dcnum job run directly
    on ``src`` (tap); returns the output's features and the direct job's output."""
    ref = _direct(src, tmp_path / out.name, **TAP)
    got, want = _features(out), _features(ref)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{src}: {name}")
    assert _pipeline_attrs(out) == _pipeline_attrs(ref)
    return got, ref


def _leftovers(dst: Path) -> list[Path]:
    return sorted(p for p in dst.rglob("*") if p.name.endswith(("~", ".partial"))
                  or p.name.endswith("_dcn.log"))


# -- options (no dcnum job) ----------------------------------------------------------------
def test_options_parse_as_chipstream_and_identify_the_pipeline():
    seg = parse_kwargs("segmenter", "thresh", ["thresh=-8", "clear_border=False"])
    assert seg == {"thresh": -8.0, "kwargs_mask": {"clear_border": False}}
    assert parse_kwargs("feature", "legacy", ["haralick=False"]) == {"haralick": False}
    with pytest.raises(UsageError, match="invalid keyword 'tresh'.*allowed: .*thresh"):
        parse_kwargs("segmenter", "thresh", ["tresh=-8"])
    with pytest.raises(UsageError, match="unknown segmenter method 'nope'"):
        PipelineOptions(segmenter_code="nope").check()
    with pytest.raises(UsageError, match="zstd-1"):
        PipelineOptions(compression="zstd:5").check()
    default, changed = PipelineOptions(), PipelineOptions(segmenter_kwargs=seg)
    assert default.identity()["pipeline"]["seg_id"] == "thresh:t=-6:cle=1^f=1^clo=2"
    assert changed.identity()["pipeline"]["seg_id"] == "thresh:t=-8:cle=0^f=1^clo=2"
    assert default.identity()["pipeline"]["bg_id"] == changed.identity()["pipeline"]["bg_id"]
    job = pickle.loads(pickle.dumps(ProcessJob(changed)))
    assert job.fingerprint == changed.identity() and job.pipeline == changed
    assert output_relpath("a/b/M001_data.rtdc") == "a/b/M001_data_dcn.rtdc"


def test_cli_usage_errors_before_any_cluster(tmp_path, capsys):
    assert main(["process", str(tmp_path), "-o", str(tmp_path / "o"), "-ks", "x=1"]) == 2
    assert "invalid keyword 'x' for the segmenter method 'thresh'" in capsys.readouterr().err
    assert main(["process", str(tmp_path), "-o", str(tmp_path / "o"), "-b", "median"]) == 2
    assert "unknown background method 'median'" in capsys.readouterr().err
    # a value dcnum cannot convert was a traceback; a pixel size of -1 or NaN and an empty
    # --limit-events range were taken (outputs of NaN areas; each file an empty
    # 'AssertionError:')
    for args, words in [(["-ks", "thresh=abc"], "segmenter keyword thresh='abc': not a value"),
                        (["-kf", "haralick=maybe"], "feature keyword haralick='maybe'"),
                        (["-p", "-1"], "expected a pixel size in um > 0"),
                        (["-p", "nan"], "expected a pixel size in um > 0"),
                        (["--limit-events", "5-2"], "A-B needs A < B"),
                        # dcnum's pipeline identifier takes int() of each number: an
                        # OverflowError or ValueError traceback (exit 1)
                        (["-ks", "thresh=1e400"], "dcbulk: usage error: segmenter keyword "
                         "thresh='1e400': not a finite number"),
                        (["-ks", "thresh=nan"], "segmenter keyword thresh='nan': not a "
                         "finite number"),
                        (["-kb", "thresh_cleansing=inf"], "background keyword "
                         "thresh_cleansing='inf': not a finite number"),
                        (["-kb", "frac_cleansing=-inf"], "background keyword "
                         "frac_cleansing='-inf': not a finite number"),
                        (["--memory-limit", "1e400"], "--memory-limit 1e400: not a size")]:
        assert main(["process", str(tmp_path), "-o", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, (args, err)
    assert not (tmp_path / "o").exists()
    # the Python API: the same line, before anything is identified or started
    for kwargs in ({"segmenter_kwargs": {"thresh": float("inf")}},
                   {"segmenter_kwargs": {"kwargs_mask": {"clear_border": float("nan")}}}):
        with pytest.raises(UsageError, match="not a finite number"):
            dcbulk.process([tmp_path], tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_batch_workers_get_non_daemonic_setting_and_resources(tmp_path):
    import dask

    from dcbulk.cluster import job_script
    conf = tmp_path / "slurm.yaml"
    conf.write_text("jobqueue:\n  slurm:\n    cores: 4\n    processes: 1\n    memory: 8GiB\n"
                    "    walltime: '01:00:00'\n")
    plain = job_script(cluster="slurm", cluster_config=conf)
    with dask.config.set(cluster_settings()):
        script = job_script(cluster="slurm", cluster_config=conf)
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in script
    assert "--resources dcnum=1" in script
    assert "DAEMON" not in plain and "--resources" not in plain


def test_cli_dry_run_names_outputs_and_shows_the_batch_script(tmp_path, capsys):
    src = tmp_path / "src" / "day1"
    src.mkdir(parents=True)
    make_rtdc(src / "M001_data.rtdc", 20, seed=1)
    conf = tmp_path / "slurm.yaml"
    conf.write_text("jobqueue:\n  slurm:\n    cores: 4\n    processes: 1\n    memory: 8GiB\n"
                    "    walltime: '01:00:00'\n")
    dst = tmp_path / "dst"
    assert main(["process", str(tmp_path / "src"), "-o", str(dst), "--dry-run",
                 "--cluster", "slurm", "--cluster-config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert f"planned  {src / 'M001_data.rtdc'} -> {dst / 'day1' / 'M001_data_dcn.rtdc'}" in out
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in out and "--resources dcnum=1" in out
    assert not dst.exists()


def test_workers_that_cannot_run_dcnum_are_one_line(archive, tmp_path, client):
    """The shared test cluster's workers are daemonic and offer no 'dcnum' resource."""
    with pytest.raises(ConfigError) as err:
        dcbulk.process([archive / "day1"], tmp_path / "dst", client=client)
    assert ("offer the resources dcnum=1 (start them with DASK_DISTRIBUTED__WORKER__DAEMON=False"
            " and --resources dcnum=1)" in str(err.value))
    assert "\n" not in str(err.value)


# -- one run over the archive ----------------------------------------------------------------
def test_outputs_equal_the_same_dcnum_job_run_directly(archive, processed, tmp_path):
    dst, report = processed
    good = _good(archive)
    done = {Path(f.source): f for f in report.files if f.status == "done"}
    assert set(done) == set(good)
    for src in good:
        out = _out(archive, dst, src)
        assert done[src].output == str(out) and out.is_file()
        got, ref = _assert_equals_direct_job(src, out, tmp_path)
        with h5py.File(out, "r", locking=False) as h5, h5py.File(src, "r", locking=False) as h5src:
            n_src = h5src.attrs["experiment:event count"]
            assert done[src].events == h5.attrs["experiment:event count"] == len(got["deform"])
            if src.name != SAMPLE:  # synthetic: thresh finds every cell, one per image
                assert done[src].events == n_src
            logs = sorted(h5["logs"])
            assert any(n.startswith("dcnum-job-") for n in logs)
            assert any(n.startswith("dcnum-log-") for n in logs)
            job_log = json.loads("\n".join(
                x.decode() for x in h5["logs"][next(n for n in logs if "dcnum-job" in n)][:]))
            assert job_log["job"]["path_in"] == str(src)
            assert job_log["job"]["path_out"] == str(out)
            assert job_log["job"]["num_procs"] == 2  # the worker's threads
        assert "image" not in got  # tap: images stay in the source, reached by a basin
        from dcnum.read import HDF5Data
        last = len(got["deform"]) - 1
        with h5py.File(src, "r", locking=False) as h5src:
            want_image = h5src["events/image"][int(got["basinmap0"][last])]
        with HDF5Data(out) as hd:  # dcnum resolves the basin to the source
            assert np.array_equal(hd.image[last], want_image)
        import dclab
        with dclab.new_dataset(out) as ds, dclab.new_dataset(ref) as ds_ref:
            assert sorted(ds.features) == sorted(ds_ref.features)
    assert not _leftovers(dst)


def test_a_damaged_file_fails_alone_in_one_line(archive, processed):
    _dst, report = processed
    failed = report.failed
    assert [Path(f.source).name for f in failed] == ["broken.rtdc"]
    assert "\n" not in failed[0].error and failed[0].error
    assert report.count("done") == len(_good(archive))


def test_a_source_without_images_fails_alone_in_one_line(tmp_path, pclient):
    """dcnum failed such a file with "AttributeError: 'NoneType' object has no attribute
    'h5ds'"; it is one line saying what is missing."""
    src = tmp_path / "src"
    src.mkdir()
    make_rtdc(src / "noimage.rtdc", 20, seed=3)
    with h5py.File(src / "noimage.rtdc", "a") as h5:
        for name in ("image", "image_bg", "mask", "bg_off"):
            if name in h5["events"]:
                del h5["events"][name]
    report = dcbulk.process([src], tmp_path / "dst", client=pclient, **TAP)
    (failed,) = report.failed
    assert failed.error.endswith("has no 'image' feature (own or from a basin); dcnum's "
                                 "pipeline segments images"), failed.error
    assert not list((tmp_path / "dst").rglob("*.rtdc"))
    # a bare assert of dcnum's (here: its background kernel) was "AssertionError:" alone
    (tmp_path / "src2").mkdir()
    make_rtdc(tmp_path / "src2" / "kernel.rtdc", 20, seed=3)
    report = dcbulk.process([tmp_path / "src2"], tmp_path / "dst2", client=pclient, **TAP,
                            background_kwargs={"kernel_size": -5})
    (failed,) = report.failed
    assert re.search(r"AssertionError: \(no message\) at \w+\.py:\d+: assert kernel_size",
                     failed.error), failed.error


def _emptied(path: Path) -> Path:
    """``path`` with every feature of ``events`` cut to 0 events (contours gone)."""
    with h5py.File(path, "a") as h5:
        events = h5["events"]
        for name in list(events):
            item = events[name]
            if isinstance(item, h5py.Dataset):
                dtype, shape, attrs = item.dtype, item.shape, dict(item.attrs)
                del events[name]
                events.create_dataset(name, shape=(0, *shape[1:]), dtype=dtype)
                events[name].attrs.update(attrs)
            else:
                del events[name]
        h5.attrs["experiment:event count"] = 0
    return path


def test_a_source_dcnum_cannot_read_fails_alone_in_one_line(tmp_path, pclient):
    """A source of 0 events failed with dcnum's "IndexError: Index (0) out of range for
    empty dimension", an HDF5 file of images without an .rtdc file's attributes with its
    "KeyError: ... can't locate attribute: 'experiment:event count'"; each is now one line
    naming the file and what it lacks (an HDF5 file without 'events': convert's line)."""
    src = tmp_path / "src"
    src.mkdir()
    _emptied(make_rtdc(src / "empty.rtdc", 20, seed=3))
    make_rtdc(tmp_path / "full.rtdc", 20, seed=3)
    with h5py.File(tmp_path / "full.rtdc") as full, h5py.File(src / "images.rtdc", "w") as h5:
        h5["events/image"] = full["events/image"][:]
    with h5py.File(src / "plain.rtdc", "w") as h5:
        h5["data"] = np.arange(5)
    report = dcbulk.process([src], tmp_path / "dst", client=pclient, **TAP)
    errors = {Path(f.source).name: f.error for f in report.failed}
    assert sorted(errors) == ["empty.rtdc", "images.rtdc", "plain.rtdc"], report.files
    for name, error in errors.items():
        assert "\n" not in error and str(src / name) in error, error
    assert errors["empty.rtdc"].endswith("holds no events; dcnum's pipeline has none to "
                                         "process"), errors["empty.rtdc"]
    assert errors["images.rtdc"].startswith("NotRtdcError: ") and errors["images.rtdc"].endswith(
        "has no 'experiment:event count' attribute, which dcnum reads as its number of "
        "events (an .rtdc file has it)"), errors["images.rtdc"]
    assert errors["plain.rtdc"].startswith("NotRtdcError: ") and "without an 'events' group" \
        in errors["plain.rtdc"], errors["plain.rtdc"]
    assert not list((tmp_path / "dst").rglob("*.rtdc"))


def test_verify_checks_processed_outputs_without_their_sources(archive, processed, pclient,
                                                              tmp_path, capsys):
    dst, _report = processed
    result = dcbulk.verify(dst, client=pclient)
    assert len(result.files) == len(_good(archive)) + 1  # the broken source's: no output
    verdicts = {Path(f.output).name: f.problems for f in result.files}
    assert verdicts.pop(output_relpath(SAMPLE)) == []
    assert verdicts.pop("broken.rtdc") == [
        f"{archive / 'day2' / 'broken.rtdc'}: has no output here: it failed (NotHDF5Error: "
        f"Source file '{archive / 'day2' / 'broken.rtdc'}' is not a readable HDF5 file: "
        f"Unable to synchronously open file (file signature not found))"]
    for problems in verdicts.values():
        # dcnum 0.31 stores the background images' map as (1, N) when every frame gave one
        # event (as in the synthetic files): dclab then cannot index image_bg
        assert len(problems) == 1 and "dclab cannot read 'image_bg'" in problems[0], problems
    one = _out(archive, dst, archive / SAMPLE)
    report = dcbulk.verify(one, inline=True)
    # sound, but compared with nothing: not counted (nor summed up) as 'equal'
    assert report.ok and report.alone == 1 and report.to_dict()["counts"]["equal"] == 0
    from dcbulk.cli import main
    assert main(["verify", "-q", str(one)]) == 0  # one small file: in this process
    assert ("1 file, 0 equal, 0 differ, 1 sound but compared with nothing (dcnum pipeline "
            "output" in capsys.readouterr().out)
    bad = tmp_path / one.name
    shutil.copy(one, bad)
    with h5py.File(bad, "r", locking=False) as h5:
        offset = h5["events/deform"].id.get_chunk_info(0).byte_offset
    with open(bad, "r+b") as fh:  # corrupt the first chunk of a feature
        fh.seek(offset + 8)
        fh.write(b"\xff\x00\xff\x00")
    problems = check_processed(bad)
    assert len(problems) == 1 and "events/deform" in problems[0], problems


def test_rerun_skips_all_and_a_source_carrying_the_pipeline_is_reported(
        archive, processed, pclient, tmp_path):
    dst, _report = processed
    again = dcbulk.process([archive], dst, client=pclient, **TAP)
    assert again.count("skipped") == len(_good(archive)) and again.count("done") == 0
    assert [Path(f.source).name for f in again.failed] == ["broken.rtdc"]
    # the outputs themselves carry this pipeline: reported, not processed again
    outs = tmp_path / "outs"
    outs.mkdir()
    for src in _good(archive):
        shutil.copy(_out(archive, dst, src), outs / src.name)
    report = dcbulk.process([outs], tmp_path / "again", client=pclient, **TAP)
    assert report.count("skipped") == len(_good(archive)), report.to_dict()
    assert all("already carries this pipeline" in f.reason for f in report.files)
    assert not list((tmp_path / "again").rglob("*.rtdc"))


def test_finished_output_without_a_record_is_adopted(archive, processed, pclient, tmp_path):
    """As after a kill between dcnum's rename and the manifest line: found, not redone."""
    dst, _report = processed
    copy = tmp_path / "copy"
    shutil.copytree(dst, copy)
    (copy / MANIFEST_NAME).unlink()
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*_dcn.rtdc")}
    report = dcbulk.process([archive], copy, client=pclient, **TAP)
    adopted = [f for f in report.files if f.status == "skipped"]
    assert len(adopted) == len(_good(archive))
    assert all("provenance" in f.reason for f in adopted)
    assert before == {p: p.stat().st_mtime_ns for p in copy.rglob("*_dcn.rtdc")}


def test_a_changed_source_keeps_its_processed_output(archive, processed, pclient, tmp_path):
    """A source replaced since its output was made: that file fails in one line and its
    output is kept (it was replaced, without a word)."""
    dst, _report = processed
    src, copy = tmp_path / "src", tmp_path / "copy"
    shutil.copytree(archive, src)  # with the sources' mtimes: recorded, by relative path
    shutil.copytree(dst, copy)
    victim = src / "day1" / "A.rtdc"
    victim.unlink()
    make_rtdc(victim, 71, seed=99)
    out = _out(src, copy, victim)
    before = out.read_bytes()
    report = dcbulk.process([src], copy, client=pclient, **TAP)
    assert report.count("skipped") == len(_good(archive)) - 1, report.to_dict()
    assert sorted(f.error for f in report.failed if "broken" not in f.source) == [
        f"{out}: its source has changed since the output was made (size "
        f"{(archive / 'day1' / 'A.rtdc').stat().st_size} -> {victim.stat().st_size} bytes, "
        f"measurement identifier {_identifier(archive / 'day1' / 'A.rtdc')} -> "
        f"{_identifier(victim)}); the output is kept, --force makes it again"]
    assert out.read_bytes() == before


def _identifier(path: Path) -> str:
    from dcbulk.read.identifier import get_measurement_identifier
    with h5py.File(path, "r") as h5:
        return get_measurement_identifier(h5)


def test_changed_segmenter_setting_is_refused_then_redoes_all_with_force(
        archive, processed, pclient, tmp_path):
    dst, _report = processed
    copy = tmp_path / "copy"
    shutil.copytree(dst, copy)
    changed = {**TAP, "segmenter_kwargs": {"thresh": -5}}
    with pytest.raises(ManifestError, match="seg_id"):
        dcbulk.process([archive], copy, client=pclient, **changed)
    # GPU segmenters take {"GPU": 1} (one job per GPU); the test workers offer one
    report = dcbulk.process([archive], copy, client=pclient, force=True,
                            resources={"GPU": 1}, **changed)
    assert report.count("done") == len(_good(archive)), report.to_dict()
    for src in _good(archive):
        out = _out(archive, copy, src)
        assert _pipeline_attrs(out)["pipeline:dcnum segmenter"].startswith("thresh:t=-5:")
        assert _pipeline_attrs(out)["pipeline:dcnum hash"] != _pipeline_attrs(
            _out(archive, dst, src))["pipeline:dcnum hash"]
    assert not _leftovers(copy)


# -- a killed run ----------------------------------------------------------------------------
def test_sigkill_mid_run_then_rerun_completes_without_leftovers(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for k in range(3):
        make_rtdc(root / f"M{k}.rtdc", 60 + 10 * k, seed=20 + k)
    dst = tmp_path / "dst"
    cmd = [sys.executable, "-m", "dcbulk.cli", "process", str(root), "-o", str(dst),
           "--basin-strategy", "tap", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while (not list(dst.rglob("*.rtdc~")) and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(1.0)  # inside dcnum's job: its temporary files exist
        import psutil
        children = [p for p in psutil.Process(proc.pid).children(recursive=True)
                    if "process_child.py" in " ".join(p.cmdline())]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(dst.rglob("*.rtdc~")) or list(dst.rglob("*_dcn.log"))
    # the job's child has a session of its own (killpg did not reach it): it sees its
    # worker gone and ends its process group
    assert children, "no dcnum job child process was running"
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for k in range(3):
        out = dst / f"M{k}_dcn.rtdc"
        # sound but for dcnum's (1, N) image_bg map of one-event-per-frame files
        assert all("'image_bg'" in p for p in check_processed(out))
        with h5py.File(out, "r", locking=False) as h5:
            assert h5.attrs["experiment:event count"] == 60 + 10 * k
    assert not _leftovers(dst)


# -- a dcnum job that hangs ------------------------------------------------------------------
def _worker_children(client) -> list[str]:
    """Processes the cluster's workers have left running (their resource trackers aside)."""
    def children():
        import psutil
        out = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and \
                        "resource_tracker" not in " ".join(proc.cmdline()):
                    out.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.Error:
                continue
        return out
    return [c for found in client.run(children).values() for c in found]


def _alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stalling_job(stall_timeout: float) -> ProcessJob:
    job = ProcessJob(PipelineOptions(**TAP), stall_timeout=stall_timeout)
    job.child_hook = "process_hooks:writer_dies"  # tests/modes/process_hooks.py
    return job


def _pids(src: Path) -> list[int]:
    path = Path(str(src) + ".pids")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_a_stalled_dcnum_job_is_ended_retried_and_fails_alone(tmp_path, pclient):
    """dcnum's writer dies as it starts (the CI hang: the runner waits forever): the job is
    killed with its process tree after the stall limit and run again; a file that stalls
    once then completes equals the direct dcnum job, one that always stalls (or whose
    child always dies) fails alone after 3 attempts in one line, the others complete;
    nothing is left behind."""
    from dcbulk.bulk import make_options, run_job
    root = tmp_path / "src"
    root.mkdir()
    make_rtdc(root / "A.rtdc", 60, seed=41)
    make_rtdc(root / "once.rtdc", 60, seed=42)
    make_rtdc(root / "stall.rtdc", 60, seed=43)
    make_rtdc(root / "die.rtdc", 30, seed=47)
    dst = tmp_path / "dst"
    # timeout: even a watch that never fired could not hang the suite
    report = run_job(_stalling_job(6), [root], dst, make_options(compression="zstd:5"),
                     client=pclient, timeout=300)
    status = {Path(f.source).name: f for f in report.files}
    assert status["A.rtdc"].status == "done" and status["once.rtdc"].status == "done", \
        report.to_dict()
    failed = status["stall.rtdc"]
    assert failed.status == "failed" and "\n" not in failed.error
    assert "no progress for 6 s" in failed.error and "state 'segmentation'" in failed.error
    assert failed.error.endswith("(gave up after 3 attempts)"), failed.error
    died = status["die.rtdc"]  # a child that dies without an answer: retried, then one line
    assert died.status == "failed" and died.error == (
        "the dcnum job's process ended with status 3 without an answer: child: dying on "
        "purpose (gave up after 3 attempts)"), died.error
    assert Path(str(root / "once.rtdc") + ".stalled").exists()  # it did stall once
    assert len(_pids(root / "stall.rtdc")) == 3 and len(_pids(root / "once.rtdc")) == 1
    for src in (root / "A.rtdc", root / "once.rtdc"):
        _assert_equals_direct_job(src, dst / f"{src.stem}_dcn.rtdc", tmp_path)
    assert not (dst / "stall_dcn.rtdc").exists() and not (dst / "die_dcn.rtdc").exists()
    assert not _leftovers(dst)
    assert not [p for p in _pids(root / "stall.rtdc") + _pids(root / "once.rtdc") if _alive(p)]
    assert not _worker_children(pclient)


def test_timeout_per_file_ends_the_dcnum_job(tmp_path, pclient):
    """``timeout`` (--timeout-per-file) ends a hanging dcnum job and its processes (not
    only its future): no output, no temporary file, no process left."""
    from dcbulk.bulk import make_options, run_job
    root = tmp_path / "src"
    root.mkdir()
    make_rtdc(root / "stall.rtdc", 60, seed=44)
    dst = tmp_path / "dst"
    report = run_job(_stalling_job(600), [root], dst, make_options(compression="zstd:5"),
                     client=pclient, timeout=8)
    [failed] = report.failed
    assert failed.error.startswith("FileTimeoutError: exceeded the time limit of 8 s"), \
        failed.error
    assert len(_pids(root / "stall.rtdc")) == 1
    # the abandoned task's thread ends the job at its deadline: wait for it (bounded)
    deadline = time.monotonic() + 60
    while (_worker_children(pclient) or list(dst.glob("*.rtdc~"))) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _worker_children(pclient)
    assert not _alive(_pids(root / "stall.rtdc")[0])
    assert not (dst / "stall_dcn.rtdc").exists() and not _leftovers(dst)
    # the worker is free again: the next job runs (with a stall limit, as a run has one: CI
    # once saw this job hang past its 120 s with none, dcnum's own hang of its writer that
    # the stall watch is there for)
    make_rtdc(root / "B.rtdc", 60, seed=45)
    again = run_job(_stalling_job(30), [root / "B.rtdc"], dst,
                    make_options(compression="zstd:5"), client=pclient, timeout=240)
    assert again.count("done") == 1, again.to_dict()


def test_stall_timeout_is_checked(tmp_path, capsys):
    with pytest.raises(UsageError, match="stall timeout: expected seconds > 0, got 0"):
        ProcessJob(PipelineOptions(), stall_timeout=0)
    assert main(["process", str(tmp_path), "-o", str(tmp_path / "o"),
                 "--stall-timeout", "-1"]) == 2
    assert "argument --stall-timeout: expected seconds > 0, got '-1'" in capsys.readouterr().err


def test_cli_summary_says_processed_and_names_the_log_process(tmp_path, pclient, capsys):
    root = tmp_path / "src"
    root.mkdir()
    make_rtdc(root / "A.rtdc", 40, seed=46)
    dst = tmp_path / "dst"
    assert main(["process", str(root), "-o", str(dst), "--basin-strategy", "tap", "-q",
                 "--scheduler", pclient.scheduler.address]) == 0
    assert "dcbulk: 1 processed, 0 skipped (finished before), 0 failed" in \
        capsys.readouterr().out
    assert [p.name.split("-")[0] for p in (dst / "dcbulk-logs").iterdir()] == ["process"]


def test_a_worker_its_nanny_restarts_can_still_run_dcnum_jobs(pclient):
    """A worker that died comes back from its nanny non-daemonic, with the job's resources,
    while the job's settings are held (as a run holds them around its own cluster): the
    nanny reads ``distributed.worker.daemon`` at every start. Last test of the module: it
    replaces the shared worker."""
    before = pclient.run(os.getpid)
    os.kill(next(iter(before.values())), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = pclient.scheduler_info()["workers"]
        if workers and set(workers) != set(before):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the nanny did not restart the killed worker within 60 s")
    check_workers(pclient, {"dcnum": 1, "GPU": 1})


def test_process_with_workers_runs_from_a_fresh_process(tmp_path, shared_data_dir):
    """``dcbulk process S -o pw --workers 1`` (the README's advice) always ended in
    ``KeyError: 'dashboard'`` (exit 1, a lock and "planned" entries left): the cluster
    check set ``distributed.worker.*`` before distributed was imported, and the end of that
    block removed distributed's defaults. A fresh interpreter (this one has distributed)."""
    out = tmp_path / "pw"
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", "process",
                           str(shared_data_dir / "dcnum_thresh_example.rtdc"), "-o", str(out),
                           "-q", "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("dcbulk: 1 processed, 0 skipped (finished before), "
                                  "0 failed"), proc.stdout
    assert (out / "dcnum_thresh_example_dcn.rtdc").is_file()
    lines = [json.loads(ln) for ln in (out / MANIFEST_NAME).read_text().splitlines()]
    assert lines[-1]["record"]["status"] == "done", lines
