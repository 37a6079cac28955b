"""``dcbulk verify`` and ``convert --verify`` (issue 9): real faults must each be found."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest
from fixtures import small_rtdc

import dcbulk
from dcbulk.bulk import ConvertJob, Target, discover_sources, make_options, run_target
from dcbulk.cli import main
from dcbulk.codec import ChunkCodec
from dcbulk.modes.verify import verify_pairs


def _split_small_outputs(monkeypatch) -> None:
    """Outputs of any size are split into runs of rows where the executor lets a check
    split (its inline limit from 0: a target reading more than half a worker thread's
    share of what remains)."""
    from dcbulk.bulk.executor import execute
    checks = importlib.import_module("dcbulk.verify.checks")  # read where targets are made
    monkeypatch.setattr(checks, "FILE_TASK_BYTES", 0)
    monkeypatch.setattr(checks, "TASK_BYTES", 1024**2)
    for module in ("dcbulk.cli", "dcbulk.modes.verify"):
        monkeypatch.setattr(importlib.import_module(module), "execute",
                            functools.partial(execute, inline_bytes=0))


@pytest.fixture(autouse=True, params=["file-tasks", "chunk-run-tasks"])
def task_split(request, monkeypatch):
    """Run every test with one task per output and with outputs split into runs of rows."""
    if request.param == "chunk-run-tasks":
        _split_small_outputs(monkeypatch)
    return request.param


@pytest.fixture
def pair(client, shared_data_dir, tmp_path):
    src = shared_data_dir / "cytoshot-test-data.rtdc"
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out, client=client)
    return src, out


def _cli(client, capsys, *args) -> tuple[int, list[str]]:
    code = main(["verify", *map(str, args), "--scheduler", client.scheduler.address])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, lines


def _is_summary(line: str, files: int, equal: int, differ: int, problems: int) -> bool:
    """Whether ``line`` is the summary line with these counts."""
    head = (f"dcbulk verify: {files} file{'s' * (files != 1)}, {equal} equal, {differ} differ "
            f"({problems} problem{'s' * (problems != 1)}) in ")
    return line.startswith(head) and re.fullmatch(
        r"[0-9,]+\.[0-9] s(; page: http://\S+/individual-dcbulk)?", line[len(head):])


def _problems(lines):
    return [ln for ln in lines if not ln.startswith("dcbulk verify:")]


def test_many_outputs_are_checked_whole_by_their_tasks_only_the_tail_splits(
        client, monkeypatch, tmp_path):
    """In a run of many outputs each is checked by its own task: splitting one into
    sub-tasks only makes them contend with the other files' checks. Only the last targets,
    larger than half a worker thread's share of what remains, spread over the workers."""
    from distributed import get_task_stream
    _split_small_outputs(monkeypatch)
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 60)
    for k in range(1, 6):
        shutil.copyfile(src, src.with_name(f"{'abcdef'[k]}.rtdc"))
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive(tmp_path / "src", dst, client=client).ok
    with get_task_stream(client) as ts:
        report = dcbulk.verify(dst, client=client)
    assert report.ok and report.count("done") == 6, report.problems
    split = [str(t["key"]) for t in ts.data if str(t["key"]).startswith("metadata_problems")]
    # six equal targets on 2 threads: with 6 or 5 left (the largest first) a target is
    # checked whole; with 4 left it is at the limit (half of 2 targets' share); 3, 2, 1 split
    assert len(split) in (3, 4), sorted(str(t["key"]) for t in ts.data)


def test_equal_output_verifies(client, capsys, pair, tmp_path):
    src, out = pair
    code, lines = _cli(client, capsys, out, "--against", src, "--report", tmp_path / "r.json")
    assert code == 0 and len(lines) == 1 and _is_summary(lines[0], 1, 1, 0, 0), lines
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ok"] and doc["counts"] == {"files": 1, "equal": 1, "mismatched": 0,
                                           "alone": 0, "problems": 0}
    assert "image" in doc["files"][0]["checked"] and "deform" in doc["files"][0]["checked"]


def _flip_byte_in_chunk(path, feature, chunk):
    with h5py.File(path) as h5:
        info = h5["events"][feature].id.get_chunk_info(chunk)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_flipped_byte_in_a_chunk_is_found(client, capsys, pair):
    src, out = pair
    _flip_byte_in_chunk(out, "image", 0)
    code, lines = _cli(client, capsys, out, "--against", src)
    problems = _problems(lines)
    assert code == 1 and len(problems) == 1, lines
    assert "feature 'image'" in problems[0] and "unreadable" in problems[0]
    assert _is_summary(lines[-1], 1, 0, 1, 1), lines


@pytest.mark.parametrize("bits", ["negative zero", "NaN payload"])
def test_a_float_differing_only_in_its_bits_is_found(client, capsys, tmp_path, bits):
    """Rows are compared bit for bit: an output holding -0.0 where the source holds 0.0, or
    a NaN of another payload, differs in one row (verify raised IndexError before: the
    values compared equal as numbers once their bytes had not)."""
    src = small_rtdc(tmp_path / "src.rtdc", 50, seed=5)
    with h5py.File(src, "a") as h5:
        h5["events/deform"][7] = 0.0 if bits == "negative zero" else np.nan
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out, client=client, compression="none")
    with h5py.File(out, "a") as h5:
        deform = h5["events/deform"][:]
        word = deform[7:8].view(f"u{deform.itemsize}")
        word ^= 1 << (8 * deform.itemsize - 1) if bits == "negative zero" else 1
        h5["events/deform"][:] = deform
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and _problems(lines) == [
        f"{out}: feature 'deform' rows 0..49: 1 rows differ from the source (first: event 7)"]


def test_flipped_byte_without_checksum_is_found_by_comparison(client, capsys, shared_data_dir,
                                                              tmp_path):
    src = shared_data_dir / "cytoshot-test-data.rtdc"
    out = tmp_path / "plain.rtdc"
    dcbulk.convert(src, out, client=client, compression="none")
    with h5py.File(out, "a") as h5:  # the same image, stored without any checksum
        image = h5["events/image"][:]
        attrs = dict(h5["events/image"].attrs)
        del h5["events/image"]
        h5["events"].create_dataset("image", data=image, chunks=(10,) + image.shape[1:])
        h5["events/image"].attrs.update(attrs)
    assert dcbulk.verify(out, src, client=client).ok
    _flip_byte_in_chunk(out, "image", 0)
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and len(_problems(lines)) == 1
    assert "feature 'image'" in lines[0] and "rows differ" in lines[0]


def test_changed_root_attribute_is_found(client, capsys, pair):
    src, out = pair
    with h5py.File(out, "a") as h5:
        h5.attrs["setup:flow rate"] = 123.0
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and _problems(lines) == [
        ln for ln in lines if "root attribute 'setup:flow rate'" in ln], lines
    assert len(_problems(lines)) == 1
    with h5py.File(src, "r") as h5:
        flow, roi = h5.attrs["setup:flow rate"], h5.attrs["imaging:roi size x"]
    with h5py.File(out, "a") as h5:  # the same values, another type: passed before
        h5.attrs["setup:flow rate"] = flow
        h5.attrs["imaging:roi size x"] = np.float64(roi)
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and _problems(lines) == [
        f"{out}: root attribute 'imaging:roi size x' is stored as float64, the source's as "
        f"{np.asarray(roi).dtype.name}"], lines


def test_missing_feature_is_found(client, capsys, pair):
    src, out = pair
    with h5py.File(out, "a") as h5:
        del h5["events/deform"]
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and _problems(lines) == [f"{out}: feature 'deform' is missing"]


def test_truncated_output_is_found(client, capsys, pair):
    src, out = pair
    with open(out, "r+b") as fh:
        fh.truncate(os.path.getsize(out) // 2)
    code, lines = _cli(client, capsys, out, "--against", src)
    assert code == 1 and len(_problems(lines)) == 1 and "cannot open" in lines[0]


def test_usage_errors(client, capsys, pair, tmp_path):
    _src, out = pair
    assert main(["verify", str(out), "--features", "deform"]) == 2  # options come from its log
    assert main(["verify", str(tmp_path), "--against", str(out)]) == 2
    (tmp_path / "no-manifest").mkdir()
    assert main(["verify", str(tmp_path / "no-manifest"), "--scheduler",
                 client.scheduler.address]) == 3


def test_directory_through_the_manifest_with_filter(client, capsys, shared_data_dir, tmp_path):
    src_dir = tmp_path / "archive"
    src_dir.mkdir()
    for name in ("cytoshot-test-data.rtdc", "dcnum_thresh_example.rtdc"):
        shutil.copy(shared_data_dir / name, src_dir / name)
    dst = tmp_path / "dst"
    # verify=True: the outputs are verified when written, and their SHA-256 recorded (the
    # manifest computes output checksums only where verification uses them)
    assert dcbulk.convert_archive([src_dir], dst, filter="deform < 0.1", client=client,
                                  verify=True).ok
    code, lines = _cli(client, capsys, dst)
    assert code == 0 and len(lines) == 1 and _is_summary(lines[0], 2, 2, 0, 0), lines
    # an output that no longer matches its manifest record and its source
    out = dst / "cytoshot-test-data.rtdc"
    with h5py.File(out, "a") as h5:
        h5["events/deform"][0] = 99.0
    code, lines = _cli(client, capsys, dst)
    problems = _problems(lines)
    assert code == 1 and len(problems) == 2, lines
    assert any("sha256 differs" in p for p in problems)
    assert any("feature 'deform'" in p and "first: event 0" in p for p in problems)
    assert _is_summary(lines[-1], 2, 1, 1, 2), lines


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    return lines[0]


def test_a_file_is_verified_against_the_source_and_options_of_its_provenance_log(
        client, capsys, shared_data_dir, tmp_path):
    src_dir = tmp_path / "archive"
    (src_dir / "day1").mkdir(parents=True)
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", src_dir / "day1")
    dst = tmp_path / "dst"
    # options that change the expected outputs: read back from the log, else nothing matches
    assert dcbulk.convert_archive([src_dir], dst, filter="deform < 0.1", client=client,
                                  features=["deform", "area_um", "image"]).ok
    out = dst / "day1" / "cytoshot-test-data.rtdc"
    code, lines = _cli(client, capsys, out)
    assert code == 0 and len(lines) == 1 and _is_summary(lines[0], 1, 1, 0, 0), lines
    # the run's log goes to the output directory that holds the file
    assert len(list(dst.glob("dcbulk-logs/verify-*.log"))) == 1
    assert not (dst / "day1" / "dcbulk-logs").exists()
    assert dcbulk.verify(out, client=client).ok  # the Python API does the same
    # an output of an output keeps its source's log too: its own (the newest) counts
    again = tmp_path / "again.rtdc"
    dcbulk.convert(out, again, client=client, features=["deform", "image"])
    with h5py.File(again) as h5:
        assert {"dcbulk-convert", "dcbulk-convert-2"} <= set(h5["logs"])
    pair, = verify_pairs(again)
    assert pair.source == str(out) and pair.features == ("deform", "image") and not pair.filter
    with h5py.File(out, "a") as h5:
        h5["events/area_um"][1] = -1.0
    code, lines = _cli(client, capsys, out)
    assert code == 1 and len(_problems(lines)) == 1, lines
    assert "feature 'area_um'" in lines[0] and "first: event 1" in lines[0]
    # its source is gone: one line, exit 3
    os.unlink(src_dir / "day1" / "cytoshot-test-data.rtdc")
    assert main(["verify", str(out), "--scheduler", client.scheduler.address]) == 3
    line = _one_error_line(capsys)
    assert str(src_dir / "day1" / "cytoshot-test-data.rtdc") in line and "gone" in line, line


def test_a_file_without_a_provenance_log_is_a_usage_error(client, capsys, shared_data_dir,
                                                          tmp_path):
    src = shared_data_dir / "cytoshot-test-data.rtdc"  # written by its instrument, not dcbulk
    assert main(["verify", str(src), "--scheduler", client.scheduler.address]) == 2
    line = _one_error_line(capsys)
    assert str(src) in line and "provenance" in line and "--against" in line, line
    # an explicit event mapping is not in the log: it cannot be verified without it
    out = tmp_path / "m.rtdc"
    dcbulk.convert(src, out, client=client, mapping=np.arange(0, 40, 2))
    assert main(["verify", str(out), "--scheduler", client.scheduler.address]) == 2
    line = _one_error_line(capsys)
    assert "mapping" in line and "--against" not in line, line
    assert main(["verify", str(tmp_path / "none.rtdc"), "--scheduler",
                 client.scheduler.address]) == 3
    assert "none.rtdc" in _one_error_line(capsys)
    # a reprocessed output holds what a user's function computed: its log says so
    assert dcbulk.reprocess([src], tmp_path / "rep", _userdef1, client=client).ok
    assert main(["verify", str(tmp_path / "rep" / src.name), "--scheduler",
                 client.scheduler.address]) == 2
    assert "made by a dcbulk mode (reprocess" in _one_error_line(capsys)


def _userdef1(features):
    return {"userdef1": features["deform"] * 2}


def test_python_api_with_mapping(client, shared_data_dir, tmp_path):
    src = shared_data_dir / "dcnum_thresh_example.rtdc"
    keep = np.arange(1, 13, 3)
    out = tmp_path / "m.rtdc"
    dcbulk.convert(src, out, client=client, mapping=keep, basin_to_source=True)
    assert dcbulk.verify(out, src, mapping=keep, client=client).ok
    report = dcbulk.verify(out, src, mapping=keep[:-1], client=client)
    assert not report.ok
    assert any("experiment:event count" in p for p in report.problems)


@pytest.mark.parametrize("mapped", [False, True], ids=["same-events", "filtered"])
def test_statistics_attributes_that_do_not_fit_the_events_are_found(client, shared_data_dir,
                                                                    tmp_path, mapped):
    """dclab reads ``min``/``max``/``mean`` instead of the data: an output's must be the
    source's (same events) or those of its own events (filtered). Stale ones -- the
    source's in a filtered output, or edited -- are one line each (not checked before)."""
    src = shared_data_dir / "cytoshot-test-data.rtdc"  # its deform carries all three
    with h5py.File(src) as h5:
        stale = {k: h5["events/deform"].attrs[k] for k in ("min", "max", "mean")}
        deform = h5["events/deform"][:]  # filtered: neither the lowest nor the highest event
        keep = np.setdiff1d(np.arange(deform.size), [deform.argmin(), deform.argmax()])
        keep = keep if mapped else None
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out, client=client, mapping=keep)
    assert dcbulk.verify(out, src, mapping=keep, client=client).ok
    with h5py.File(out, "a") as h5:
        attrs = h5["events/deform"].attrs
        if mapped:  # the source's statistics, not its events'
            attrs.update(stale)
        else:
            attrs["mean"] = stale["mean"] * 1.5
    problems = dcbulk.verify(out, src, mapping=keep, client=client).problems
    expected = ["min", "max", "mean"] if mapped else ["mean"]
    assert [re.search(r"attribute '(\w+)' is", p)[1] for p in problems] == expected, problems
    origin = "(that of its events)" if mapped else "(the source's)"
    assert all(f"{out}: feature 'deform': " in p and p.endswith(origin) for p in problems)


def test_a_feature_stored_with_other_filters_than_the_run_asked_is_found(client, tmp_path):
    """Each feature must be stored as the run's ``--compression`` asks (from the manifest or
    the provenance log), or better: chunks of a zstd-9 source copied as stored pass. A
    feature rewritten without compression or checksum is one line (not checked before)."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 60, seed=8, compression="zstd:9")
    dst = tmp_path / "dst"
    dcbulk.convert_archive([src.parent], dst, client=client)
    out = dst / "s.rtdc"
    with h5py.File(out) as h5:
        assert ChunkCodec.from_dataset(h5["events/deform"]).level == 9  # copied as stored
    assert dcbulk.verify(dst, client=client).ok and dcbulk.verify(out, client=client).ok
    with h5py.File(out, "a") as h5:  # the same values, stored plain
        deform = h5["events/deform"][:]
        attrs = dict(h5["events/deform"].attrs)
        del h5["events/deform"]
        h5["events"].create_dataset("deform", data=deform, chunks=(60,))
        h5["events/deform"].attrs.update(attrs)
    line = (f"{out}: feature 'deform' is stored none, not zstd:5+fletcher32 (the run's "
            f"--compression)")
    assert dcbulk.verify(out, client=client).problems == [line]  # by its provenance log
    assert line in dcbulk.verify(dst, client=client).problems  # by the manifest
    assert dcbulk.verify(out, src, client=client).ok  # the run's options unknown: values only
    plain = tmp_path / "plain"  # a run without checksums: its outputs are as it asked
    dcbulk.convert_archive([src.parent], plain, client=client,
                           compression=ChunkCodec("zstd", 5, fletcher32=False))
    assert dcbulk.verify(plain, client=client).ok


def test_convert_verify_fails_a_mismatching_output(monkeypatch, shared_data_dir, tmp_path):
    import dcbulk.bulk.filetask as filetask
    src = str(shared_data_dir / "fmt-hdf5_cytoshot_extended-moments-features.rtdc")
    options, job = make_options(), ConvertJob(verify=True)
    entry = discover_sources([src])[0]
    _, good = run_target(job, Target(str(tmp_path / "good.rtdc"), entry, 0), options,
                         overwrite=False)
    assert good.error is None and os.path.isfile(tmp_path / "good.rtdc")

    real = filetask.write_output

    def corrupting(plan, **kw):  # a writer that gets one value wrong
        summary = real(plan, **kw)
        with h5py.File(plan.output, "a") as h5:
            h5["events/per_ratio"][3] += 1
        return summary

    monkeypatch.setattr(filetask, "write_output", corrupting)
    _, bad = run_target(job, Target(str(tmp_path / "bad.rtdc"), entry, 0), options,
                        overwrite=False)
    assert bad.error.startswith("VerifyError: ") and bad.error_type is dcbulk.errors.VerifyError
    assert "feature 'per_ratio'" in bad.error and "first: event 3" in bad.error
    assert not os.path.exists(tmp_path / "bad.rtdc")


def test_cli_convert_verify(client, capsys, shared_data_dir, tmp_path, task_split):
    if task_split != "file-tasks":
        pytest.skip("convert --verify verifies inline in the file task")
    src_dir = tmp_path / "archive"
    src_dir.mkdir()
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", src_dir)
    dst = tmp_path / "dst"
    code = main(["convert", str(src_dir), "-o", str(dst), "--verify", "-q",
                 "--filter", "deform < 0.1", "--scheduler", client.scheduler.address])
    assert code == 0, capsys.readouterr()
    assert "1 converted" in capsys.readouterr().out
    code, lines = _cli(client, capsys, dst)
    assert code == 0, lines


def test_contours_and_traces_are_compared(client, dclab_test_files, tmp_path, task_split):
    src = dclab_test_files["artificial_hdf5.rtdc"]  # contours and traces
    out = tmp_path / "c.rtdc"
    dcbulk.convert(src, out, client=client)
    report = dcbulk.verify(out, src, client=client)
    assert report.ok, report.problems
    assert any(f.startswith("trace/") for f in report.files[0].checked)
    with h5py.File(out, "a") as h5:
        h5["events/contour/2"][0, 0] += 1
        name = next(iter(h5["events/trace"]))
        h5["events/trace"][name][1, 5] += 1
    problems = dcbulk.verify(out, src, client=client).problems
    assert len(problems) == 2, problems
    assert any("contour 2 differs" in p for p in problems)
    assert any(f"feature 'trace/{name}'" in p and "first: event 1" in p for p in problems)


def test_verify_is_a_job_of_the_executor(client, capsys, pair, tmp_path, task_split):
    """``dcbulk verify`` runs through the one executor: the start line and the progress of
    every job on stderr (counting the bytes checked), a mismatch settled as a failed file,
    nothing written beside the output (no lock, no manifest, no partial files)."""
    if task_split != "file-tasks":
        pytest.skip("one run of the CLI is enough")
    src, out = pair
    with h5py.File(out, "a") as h5:
        h5["events/deform"][2] = 99.0
    before = sorted(os.listdir(out.parent))
    code = main(["verify", str(out), "--against", str(src), "--scheduler",
                 client.scheduler.address])
    captured = capsys.readouterr()
    assert code == 1
    size = os.path.getsize(out) + os.path.getsize(src)  # what the check reads
    assert f"dcbulk {dcbulk.__version__}: 1 file, {size / 1e6:,.0f} MB; dashboard: " \
        in captured.err, captured.err
    assert "[dcbulk] files 1/1, 1 failed, " in captured.err, captured.err
    problems = _problems(captured.out.strip().splitlines())
    assert len(problems) == 1 and "feature 'deform'" in problems[0], captured.out
    assert set(os.listdir(out.parent)) - set(before) <= {"dcbulk-logs"}  # its run log
    assert not list(out.parent.rglob("*.partial")) and not list(out.parent.rglob(".dcbulk*"))


def test_a_source_rewritten_after_planning_is_a_problem_line_not_an_exception(tmp_path):
    """Row checks read the source with the plan's description of it; a source dataset
    rewritten with other filters in between is reported as one problem line."""
    from dcbulk.verify.checks import VerifyPair, plan_checks
    from dcbulk.verify.rows import compare_rows
    src = small_rtdc(tmp_path / "src.rtdc", 60, compression="zstd:5")
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out, client=None)
    problems, tasks, _meta = plan_checks(VerifyPair(output=str(out), source=str(src)))
    assert problems == [] and [p for t in tasks for p in compare_rows(t)] == []
    with h5py.File(src, "a") as h5:
        data = h5["events/deform"][:]
        del h5["events/deform"]
        h5.create_dataset("events/deform", data=data, chunks=(60,), compression="gzip",
                          fletcher32=True)
    found = [p for t in tasks for p in compare_rows(t)]
    assert len(found) == 1 and "feature 'deform'" in found[0] and "source unreadable" in found[0] \
        and "rewritten with other filters or chunks" in found[0], found


@pytest.mark.parametrize("compression, sibling", [
    ("lz4", None), ("blosc2-zstd", "blosc2-lz4"), ("bitshuffle-lz4", "bitshuffle-zstd:3")])
def test_every_compression_choice_is_checked_for_features_and_contours(tmp_path, compression,
                                                                       sibling):
    """Outputs of choices whose filters ``from_dataset`` does not describe (lz4, blosc2,
    bitshuffle) are checked by their filter ids and values, contours too: a feature stored
    contiguous, without its checksum or with the same plugin's other codec, and contours
    stored plain, are found (none of them was before)."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 30, seed=4, with_contour=True)
    dst = tmp_path / "dst"
    codec = dcbulk.codec.parse_compression(compression)
    assert not codec.recognised
    assert dcbulk.convert_archive([src.parent], dst, compression=compression).ok
    out = dst / "s.rtdc"
    assert dcbulk.verify(dst).ok and dcbulk.verify(out).ok
    unsummed = dict(codec.ds_kwds(), fletcher32=False)
    other = [] if sibling is None else [
        ("events/bright_avg", dcbulk.codec.parse_compression(sibling).ds_kwds())]
    with h5py.File(out, "a") as h5:  # the same values, stored otherwise
        for name, kwds in (("events/deform", None), ("events/area_um", unsummed), *other,
                           ("events/contour/2", {}), ("events/contour/5", {})):
            data, attrs = h5[name][()], dict(h5[name].attrs)
            del h5[name]
            chunks = None if kwds is None else data.shape
            h5.create_dataset(name, data=data, chunks=chunks, **(kwds or {})).attrs.update(attrs)
    want = f"not {codec.describe()} (the run's --compression)"
    sibling_line = [] if sibling is None else [
        f"{out}: feature 'bright_avg' is stored "
        f"{dcbulk.codec.parse_compression(sibling).describe()}, {want}"]
    assert dcbulk.verify(out).problems == [
        f"{out}: feature 'area_um' is stored "
        f"{dataclasses.replace(codec, fletcher32=False).describe()}, {want}", *sibling_line,
        f"{out}: feature 'deform' is stored contiguous, {want}",
        f"{out}: contour 2 is stored none, {want} (and 1 more)"]
    assert set(dcbulk.verify(out).problems) < set(dcbulk.verify(dst).problems)  # + its size
    assert dcbulk.verify(out, src).ok  # the run's options unknown: values only


def test_a_directory_made_by_another_mode_is_a_usage_error(client, tmp_path):
    """A reprocessed directory was verified as converted copies and 'differed' (images
    missing, ...); like a single file of another mode, it is one usage line, exit 2."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 20, seed=2)
    dst = tmp_path / "dst"
    assert dcbulk.reprocess([src.parent], dst, _userdef1, client=client).ok
    with pytest.raises(dcbulk.errors.UsageError, match=r"made by a dcbulk mode \(reprocess\)"):
        dcbulk.verify(dst)
    assert main(["verify", "-q", str(dst)]) == 2


def test_condensed_outputs_are_verified(client, tmp_path, capsys):
    """``dcbulk verify`` of a condensed directory or file was a usage error ('made by a
    dcbulk mode (condense)'). It is checked as a conversion of the source's scalar features
    with condense's rules: ``index`` 1..n where the source has none or events were
    filtered, dclab's ancillary features computed again by dclab, a basin to the source
    (whose loss went unnoticed for ``--basin-to-source`` conversions too)."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 30, seed=3)
    with h5py.File(src, "a") as h5:
        del h5["events/index"]
        h5["events/deform"].attrs["unit"] = "none"
    runs = {"plain": {}, "ancillary": {"ancillary": True},
            "filtered": {"ancillary": True, "filter": "deform > 0.03"}}
    for label, kw in runs.items():
        report = dcbulk.modes.condense([src.parent], tmp_path / label, client=client, **kw)
        assert report.ok, [f.error for f in report.failed]
        assert dcbulk.verify(tmp_path / label, client=client).ok, label
        assert main(["verify", "-q", str(tmp_path / label / "s.rtdc")]) == 0, label
    with h5py.File(tmp_path / "filtered" / "s.rtdc") as h5:
        n = h5["events/deform"].shape[0]
        assert 0 < n < 30 and "bright_perc_10" in h5["events"]
        assert np.array_equal(h5["events/index"][:], np.arange(1, n + 1))

    def edit(label, change):
        shutil.rmtree(tmp_path / "t", ignore_errors=True)
        shutil.copytree(tmp_path / label, tmp_path / "t")
        with h5py.File(tmp_path / "t" / "s.rtdc", "a") as h5:
            change(h5)
        return dcbulk.verify(tmp_path / "t", client=client).problems

    def unlink_basins(h5):
        for key in list(h5["basins"]):
            del h5["basins"][key]

    def unlist_image(h5):  # dclab then finds no image through the basin
        for key in list(h5["basins"]):
            lines = [ln for ln in h5["basins"][key][:] if b'"image",' not in ln]
            del h5["basins"][key]
            h5["basins"][key] = lines

    out = tmp_path / "t" / "s.rtdc"
    cases = [
        ("plain", lambda h5: h5["events/deform"].__setitem__(3, 7.0),
         f"{out}: feature 'deform' rows 0..29: 1 rows differ from the source (first: event 3)"),
        ("filtered", lambda h5: h5["events/index"].__setitem__(0, 5),
         f"{out}: feature 'index' rows 0..{n - 1}: 1 rows differ from the source "
         f"(first: event 0)"),
        ("filtered", lambda h5: h5["events/bright_perc_10"].__setitem__(2, 1.0),
         f"{out}: feature 'bright_perc_10' (ancillary, computed by dclab): 1 rows differ "
         f"from the source (first: event 2)"),
        ("ancillary", lambda h5: h5["events"].__delitem__("bright_perc_90"),
         f"{out}: feature 'bright_perc_90' (ancillary) is missing"),
        ("ancillary", lambda h5: h5["events/bright_perc_90"].attrs.__setitem__("unit", "a.u."),
         f"{out}: feature 'bright_perc_90' (ancillary): attribute 'unit' is not dcbulk's (it "
         f"writes only min/max/mean on dclab's features)"),
        ("ancillary", lambda h5: h5["events"].create_dataset("userdef1", data=np.zeros(30)),
         f"{out}: feature 'userdef1' is not in the source's selection"),
        ("plain", lambda h5: h5["events"].create_dataset("bright_perc_10", data=np.zeros(30)),
         f"{out}: feature 'bright_perc_10' is not in the source's selection"),
        ("plain", lambda h5: h5["events"].__delitem__("circ"),
         f"{out}: feature 'circ' is missing"),
        ("plain", lambda h5: h5["events/deform"].attrs.__setitem__("unit", "m"),
         f"{out}: feature 'deform': attribute 'unit' is 'm', source has 'none'"),
        ("filtered", unlink_basins,
         f"{out}: basin 'source' (to the source, for the features the output does not "
         f"hold) is missing"),
        ("plain", lambda h5: h5["logs"].__delitem__("dcbulk-condense"),
         f"{out}: dcbulk's provenance log (logs/dcbulk-condense) is missing"),
        ("filtered", unlist_image,
         f"{out}: basin 'source' lists other features than the source's"),
        ("plain", lambda h5: h5.attrs.__setitem__("experiment:event count", "30"),
         f"{out}: root attribute 'experiment:event count' is stored as '30' (text), not an "
         f"int64"),
        ("plain", lambda h5: h5.attrs.__setitem__("experiment:event count", np.int32(30)),
         f"{out}: root attribute 'experiment:event count' is stored as 30 (int32), not an "
         f"int64"),
    ]
    for label, change, line in cases:
        problems = edit(label, change)
        assert line in problems, (label, line, problems)
    # a condensed file condensed again carries its basin 'source' beside the new one
    again = dcbulk.modes.condense([tmp_path / "plain"], tmp_path / "again", client=client)
    assert again.ok and dcbulk.verify(tmp_path / "again", client=client).ok

    def unlink_new_source_basin(h5):
        for key in list(h5["basins"]):
            text = b"".join(h5["basins"][key][:])
            if b'"source"' in text and b'"image"' not in text:  # the new one: scalars only
                del h5["basins"][key]

    assert edit("again", unlink_new_source_basin) == [
        f"{out}: basin 'source' (to the source, for the features the output does not hold) "
        f"is missing"]
    capsys.readouterr()
    # a conversion with --basin-to-source: its basin's loss went unnoticed
    assert main(["convert", "-q", str(src.parent), "-o", str(tmp_path / "conv"),
                 "--features", "deform", "--basin-to-source"]) == 0
    shutil.rmtree(tmp_path / "t")
    shutil.copytree(tmp_path / "conv", tmp_path / "t")
    assert dcbulk.verify(tmp_path / "t", client=client).ok
    with h5py.File(out, "a") as h5:
        unlink_basins(h5)
    assert any("basin 'source' (to the source" in p
               for p in dcbulk.verify(tmp_path / "t", client=client).problems)


def test_split_pieces_are_verified_by_their_provenance_log(tmp_path, capsys):
    """A piece of ``split`` holds the source's events first..stop-1 that the filter and the
    boundary-image rule keep, its sample ``<source's> k/n``: verified by its log as a
    converted output is (it was a usage error: 'made by a dcbulk mode (split)')."""
    from dcbulk.modes.split import split
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 50, seed=6, with_contour=True)
    with h5py.File(src, "a") as h5:  # an all-zero last image: left out of the last piece
        h5["events/image"][49] = 0
    dst = tmp_path / "dst"
    assert split([src.parent], dst, events_per_file=20, filter="deform > 0.02").ok
    pieces = sorted(dst.glob("s_*.rtdc"))
    assert len(pieces) == 3
    for piece in pieces:
        report = dcbulk.verify(piece)
        assert report.ok, report.problems
    # split keeps no manifest: its pieces are named, several in one run (one OUT before)
    with pytest.raises(dcbulk.errors.ManifestError, match=r"verify its files by name"):
        dcbulk.verify(dst)
    assert main(["verify", "-q", *map(str, pieces), str(pieces[0])]) == 0
    assert "dcbulk verify: 3 files, 3 equal, 0 differ" in capsys.readouterr().out
    assert main(["verify", "-q", *map(str, pieces[:2]), "--against", str(src)]) == 2
    with h5py.File(pieces[2], "r") as h5:
        kept = h5.attrs["experiment:event count"]
        assert h5.attrs["experiment:sample"].endswith(" 3/3")
    with h5py.File(src, "r") as h5:
        deform = h5["events/deform"][40:50]
    assert kept == np.count_nonzero(deform[:-1] > 0.02)  # event 49 left out
    with h5py.File(pieces[1], "a") as h5:
        kept_2 = h5.attrs["experiment:event count"]
        h5.attrs["experiment:sample"] = "another sample 2/3"
        h5["events/area_um"][3] += 1
    assert dcbulk.verify(pieces[1]).problems == [
        f"{pieces[1]}: root attribute 'experiment:sample' is 'another sample 2/3', expected "
        f"'synthetic-6 2/3' (the source's, then ' 2/3')",
        f"{pieces[1]}: feature 'area_um' rows 0..{kept_2 - 1}: 1 rows differ from the source "
        f"(first: event 3)"]


def test_a_source_changed_since_the_output_was_made_is_one_line(tmp_path):
    """A source rewritten after the conversion (another size or measurement identifier
    than its manifest record and provenance log hold) is one line, not a line per feature
    and attribute (31 lines before)."""
    from dcbulk.read.inspect import inspect_source
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 40, seed=1)
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive([src.parent], dst).ok
    size, ident = src.stat().st_size, inspect_source(src).identifier
    out = dst / "s.rtdc"
    small_rtdc(src, 30, seed=2, overwrite=True)  # the same size (whole plain chunks)
    assert src.stat().st_size == size
    line = (f"{out}: its source {src} has changed since the output was made (identifier "
            f"{ident} then, {inspect_source(src).identifier} now), so it no longer says what "
            f"the output must equal")
    assert dcbulk.verify(dst).problems == [line]
    assert dcbulk.verify(out).problems == [line]
    assert len(dcbulk.verify(out, src).problems) > 1  # named by the user: compared
    small_rtdc(src, 30, seed=1, overwrite=True, compression="zstd:1")
    assert dcbulk.verify(dst).problems == [
        f"{out}: its source {src} has changed since the output was made ({size} bytes then, "
        f"{src.stat().st_size} now), so it no longer says what the output must equal"]
    small_rtdc(src, 40, seed=1, overwrite=True)  # as converted: equal again
    pair = verify_pairs(dst)[0]
    assert dcbulk.verify([pair]).ok and pair.source_head
    other = dataclasses.replace(pair, source_head="0" * 64)  # the head digest of another file
    assert dcbulk.verify([other]).problems == [
        f"{out}: its source {src} has changed since the output was made (its first or last "
        f"bytes differ), so it no longer says what the output must equal"]


def test_statistics_of_a_feature_larger_than_a_row_task_are_checked(tmp_path):
    """A scalar feature carrying ``min``/``max``/``mean`` is checked by one task whole (up
    to ``STATISTICS_TASK_BYTES``), so its statistics are checked however its rows compare
    with a row task's size (a feature split over several tasks was not checked)."""
    from dcbulk.verify.checks import check_pair, plan_checks
    src = small_rtdc(tmp_path / "src.rtdc", 2500, seed=9, image_shape=(30, 40))
    out = tmp_path / "out.rtdc"
    keep = np.arange(1, 2500)
    dcbulk.convert(src, out, mapping=keep)  # statistics of its own events
    pair = verify_pairs(out, src, mapping=keep)[0]
    assert check_pair(pair, task_bytes=1024) == ([], check_pair(pair)[1])
    _, tasks, _ = plan_checks(pair, task_bytes=1024)  # 1000-row chunks: 3 tasks before
    deform = [c for task in tasks for c in task if c.feature == "deform"]
    assert [(c.start, c.stop) for c in deform] == [(0, 2499)]
    with h5py.File(out, "a") as h5:
        h5["events/deform"].attrs["mean"] = h5["events/deform"].attrs["mean"] * 1.5
    problems, _ = check_pair(pair, task_bytes=1024)
    assert len(problems) == 1 and "feature 'deform': attribute 'mean' is" in problems[0]


def test_copied_statistics_of_a_feature_above_the_statistics_task_are_checked(
        tmp_path, monkeypatch):
    """A scalar feature too large for one check (above ``STATISTICS_TASK_BYTES``) whose
    statistics are the source's, copied, is checked against the source's attributes, which
    needs no rows (such a feature's statistics were not checked at all)."""
    from dcbulk.verify import pair as verify_pair
    from dcbulk.verify.checks import check_pair, plan_checks
    src = small_rtdc(tmp_path / "src.rtdc", 2500, seed=9, image_shape=(30, 40))
    with h5py.File(src, "a") as h5:
        h5["events/deform"].attrs.update(
            {"min": np.float64(0.1), "max": np.float64(0.3), "mean": np.float64(0.2)})
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out)
    monkeypatch.setattr(verify_pair, "STATISTICS_TASK_BYTES", 4096)  # 512 float64 rows
    pair = verify_pairs(out, src)[0]
    _, tasks, _ = plan_checks(pair, task_bytes=1024)
    assert len([c for task in tasks for c in task if c.feature == "deform"]) > 1
    assert check_pair(pair, task_bytes=1024)[0] == []
    with h5py.File(out, "a") as h5:
        h5["events/deform"].attrs["mean"] = np.float64(0.25)
    problems, _ = check_pair(pair, task_bytes=1024)
    assert problems == [f"{out}: feature 'deform': attribute 'mean' is 0.25, expected 0.2 "
                        f"(the source's)"], problems


def test_a_pipeline_refused_for_its_fill_value_is_not_named_as_the_runs_choice(tmp_path):
    """A zstd-5 + Fletcher-32 dataset with a non-zero fill value is not what the run wrote
    (its chunks may not be copied as stored): its line names its filters, not the run's
    own choice ('stored zstd:5+fletcher32, not zstd:5+fletcher32' before)."""
    from dcbulk.verify.storage import stored_otherwise
    want = ChunkCodec()
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        dset = h5.create_dataset("x", data=np.arange(10.0), chunks=(5,), fillvalue=7.0,
                                 **want.ds_kwds())
        found = ChunkCodec.from_dataset(dset)
        assert found is None
        assert stored_otherwise("out", "feature 'x'", dset, want, found) == [
            "out: feature 'x' is stored zstd:5,fletcher32, not zstd:5+fletcher32 (the run's "
            "--compression)"]


def _joined_inputs(root) -> list:
    """Three inputs recorded one after another (given out of order), with ``index_online``;
    the earliest's ``time`` is float32 (joined as float64: float32 would round the later
    inputs' offset times to 16 s)."""
    starts = {"c.rtdc": "10:05:00", "a.rtdc": "10:00:00", "b.rtdc": "10:00:30.5"}
    paths = []
    for k, (name, start) in enumerate(starts.items()):
        path = small_rtdc(root / name, 40 - 10 * k, seed=20 + k,
                          meta={"experiment:date": "2024-03-01", "experiment:time": start})
        with h5py.File(path, "a") as h5:
            h5["events/index_online"] = np.arange(3, 3 + 2 * len(h5["events/deform"]), 2)
            if name == "a.rtdc":
                time = h5["events/time"][:].astype(np.float32)
                del h5["events/time"]
                h5["events/time"] = time
        paths.append(path)
    return paths


def test_a_joined_file_is_verified_against_its_inputs(client, tmp_path, capsys):
    """A joined file was a usage error ('made by a dcbulk mode (join)'): users who join
    files and delete them had no check. Each input's rows are compared where the join put
    them (time, frame and index_online shifted as dclab-join does, each input filtered
    again), and its attributes, logs and tables as the join keeps them."""
    from dcbulk.modes.join import join
    from dcbulk.read.inspect import inspect_source
    inputs = _joined_inputs(tmp_path / "in")
    out = tmp_path / "j.rtdc"
    assert join(inputs, out, filter="deform > 0.02").ok
    report = dcbulk.verify(out)
    assert report.ok, report.problems
    assert {"time", "frame", "index", "index_online", "image", "deform"} <= set(
        report.files[0].checked)
    assert dcbulk.verify(out, client=client).ok  # row checks as tasks of a cluster
    assert main(["verify", "-q", str(out)]) == 0
    with h5py.File(out, "r") as h5:
        time, online = h5["events/time"][:], h5["events/index_online"][:]
        n = [int(x["events"]) for x in json.loads("\n".join(
            h5["logs/dcbulk-join"].asstr()[:]))["details"]["inputs"]]
    assert time.dtype == np.float64 and len(n) == 3 and all(n)  # float32 lost offsets
    assert online[n[0]] > online[n[0] - 1]  # continued after the earlier input
    # one value of the second input, one of the third, a log of the second, the third's
    # cfg log, the run identifier
    with h5py.File(out, "a") as h5:
        h5["events/time"][n[0] + 1] += 1
        h5["events/index_online"][n[0] + n[1]] += 1
        logname = sorted(k for k in h5["logs"] if k.startswith("src-#2_")
                         and not k.endswith("_cfg"))[0]
        h5["logs"][logname][0] = b"edited"
        del h5["logs/src-#3_cfg"]
        h5.attrs["experiment:run identifier"] = "another"
    problems = dcbulk.verify(out).problems
    rows = [f"{out}: feature 'time' rows {n[0]}..{n[0] + n[1] - 1}: 1 rows differ from the "
            f"source (first: event {n[0] + 1})",
            f"{out}: feature 'index_online' rows {n[0] + n[1]}..{sum(n) - 1}: 1 rows differ "
            f"from the source (first: event {n[0] + n[1]})"]
    assert set(rows) <= set(problems)
    starts = [f"{out}: feature 'time': attribute 'mean' is ",  # rows of several inputs
              f"{out}: feature 'index_online': attribute 'mean' is ",
              f"{out}: log '{logname}' differs from the input's",
              f"{out}: log 'src-#3_cfg' is missing",
              f"{out}: root attribute 'experiment:run identifier' is 'another', expected '"]
    rest = [p for p in problems if p not in rows]
    assert len(rest) == len(starts) and all(
        any(p.startswith(start) for p in rest) for start in starts), rest
    # an input rewritten since: one line (by its size, before it is opened; by its
    # identifier); an input gone: named
    size = inputs[2].stat().st_size
    small_rtdc(inputs[2], 15, seed=5, overwrite=True)
    line = (f"{out}: its input #2 {inputs[2]} has changed since the output was made ({{}}), "
            f"so it no longer says what the output must equal")
    assert dcbulk.verify(out).problems == [
        line.format(f"{size} bytes then, {inputs[2].stat().st_size} now")]
    with h5py.File(out, "a") as h5:  # a log of an earlier release: no sizes
        doc = json.loads("\n".join(h5["logs/dcbulk-join"].asstr()[:]))
        ident = doc["details"]["inputs"][1]["identifier"]
        for d in doc["details"]["inputs"]:
            d.pop("size")
        del h5["logs/dcbulk-join"]
        h5["logs/dcbulk-join"] = json.dumps(doc).splitlines()
    assert dcbulk.verify(out).problems == [line.format(
        f"identifier {ident} then, {inspect_source(inputs[2]).identifier} now")]
    inputs[0].unlink()
    assert main(["verify", "-q", str(out)]) == 3
    assert f"its input #3 {inputs[0]}" in capsys.readouterr().err


def test_a_join_of_one_inputs_rows_has_the_statistics_of_its_rows(shared_data_dir, tmp_path):
    """A join whose rows all come from one input (the other has no events) stores the
    ``min``/``max``/``mean`` of its rows, as of every join; verify expected the input's
    (which has none) and reported 'expected none (not in the source)'."""
    from dcbulk.modes.join import join
    inputs = [shared_data_dir / "file_with_variable_length_logs.rtdc",
              shared_data_dir / "M001_data.rtdc"]  # 20 events (2015), none (2023)
    out = tmp_path / "j.rtdc"
    assert join(inputs, out).ok
    with h5py.File(out, "r") as h5, h5py.File(inputs[0], "r") as src:
        assert "max" in h5["events/frame"].attrs and "max" not in src["events/frame"].attrs
    report = dcbulk.verify(out)
    assert report.ok, report.problems


def test_files_an_output_directorys_manifest_does_not_record_are_reported(tmp_path, capsys):
    """A stray ``.rtdc`` in an output directory was ignored, and a directory whose manifest
    was emptied verified as '0 files, 0 equal' (exit 0) while checking nothing: each such
    file is one line, not checked, exit 1."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 20, seed=3)
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive([src.parent], dst).ok
    (dst / "sub").mkdir()
    shutil.copy(dst / "s.rtdc", dst / "sub" / "copy.rtdc")
    line = ("{}: not in its directory's manifest, so nothing says what it must equal; not "
            "checked (verify it by name)")
    assert dcbulk.verify(dst).problems == [line.format(dst / "sub" / "copy.rtdc")]
    (dst / "dcbulk-manifest.jsonl").write_text("")
    assert main(["verify", "-q", str(dst)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [line.format(dst / "s.rtdc"), line.format(dst / "sub" / "copy.rtdc")]
    assert out[2].startswith("dcbulk verify: 2 files, 0 equal, 2 differ (2 problems)")


@pytest.mark.parametrize("gone", ["deleted", "a directory"])
def test_a_source_gone_since_is_one_plain_line(client, capsys, shared_data_dir, tmp_path, gone):
    """Its line said 'source Source file ... does not exist', and for a directory in its place
    carried HDF5's whole error text with a line break ('... time = ...\\n, filename ...')."""
    arch = tmp_path / "arch"
    arch.mkdir()
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", arch / "a.rtdc")
    assert main(["convert", str(arch), "-o", str(tmp_path / "out"), "-q",
                 "--scheduler", client.scheduler.address]) == 0
    capsys.readouterr()
    (arch / "a.rtdc").unlink()
    if gone == "a directory":
        (arch / "a.rtdc").mkdir()
    code, lines = _cli(client, capsys, tmp_path / "out")
    why = "does not exist" if gone == "deleted" else "is a directory, not an .rtdc file"
    assert code == 1 and _problems(lines) == [
        f"{tmp_path / 'out' / 'a.rtdc'}: cannot read its source: Source file "
        f"'{arch / 'a.rtdc'}' {why}"], lines
