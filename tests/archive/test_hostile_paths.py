"""Hostile paths, names and expressions (issue 16, part B).

Symbolic links (and FIFOs, hard links) where dcbulk writes its lock, manifest, logs, reports
and outputs; links out of a source tree; FIFOs named ``*.rtdc`` among the sources; file
names that are not valid UTF-8; ``--filter`` expressions built to exhaust the client or hang
the workers; a file task that never returns. Runs that could hang on a defect run in a
subprocess with a timeout; runs with a cluster use a real LocalCluster.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dcbulk

from dcbulk.bulk import MANIFEST_NAME, Manifest, convert_archive, discover_sources
from dcbulk.bulk import ConvertJob, make_options, run_job
from dcbulk.bulk.lock import LOCK_NAME, output_lock
from dcbulk.cli import main
from dcbulk.errors import FilterSyntaxError, LinkRefusedError, UsageError
from dcbulk.filter_expr import parse_filter

from fixtures import small_sources
from helpers import assert_features_equal

pytestmark = pytest.mark.hostile

LIMIT = 180  # seconds: a subprocess that takes longer has hung


def _files(root: Path, names) -> list[Path]:
    """Small synthetic sources (no traces, small images) under ``root``."""
    return small_sources(root, names, image_shape=(30, 40))


def _cli(*args, timeout: float = LIMIT) -> subprocess.CompletedProcess:
    """``dcbulk ARGS`` in a subprocess (bounded: a hang fails the test, not the suite)."""
    proc = subprocess.run([sys.executable, "-m", "dcbulk.cli", *map(os.fsdecode, args)],
                          capture_output=True, timeout=timeout)
    proc.out = proc.stdout.decode("utf-8", "backslashreplace")
    proc.err = proc.stderr.decode("utf-8", "backslashreplace")
    return proc


_CLUSTER = ("--workers", "1", "--threads-per-worker", "2")


# -- nothing in the output directory is written through a link (defect 4) ----------------

def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path, capsys):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    dst.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, dst / LOCK_NAME)
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and LOCK_NAME in err[0] and "symbolic link" in err[0], err
    assert victim.read_text() == "precious\n"
    assert not (dst / "a.rtdc").exists()


@pytest.mark.parametrize("kind", ["fifo", "hardlink"])
def test_a_lock_file_that_is_a_fifo_or_a_hard_link_is_refused(tmp_path, kind):
    dst = tmp_path / "dst"
    dst.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    if kind == "fifo":
        os.mkfifo(dst / LOCK_NAME)
    else:
        os.link(victim, dst / LOCK_NAME)
    with pytest.raises(LinkRefusedError, match=LOCK_NAME):
        with output_lock(dst):
            pass
    assert victim.read_text() == "precious\n"


def test_a_manifest_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path, capsys):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    dst.mkdir()
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(b"")  # an empty target: the old code appended the manifest to it
    os.symlink(victim, dst / MANIFEST_NAME)
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and MANIFEST_NAME in err[0] and "symbolic link" in err[0], err
    assert victim.read_bytes() == b""


def test_a_log_directory_that_is_a_symlink_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    dst.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, dst / "dcbulk-logs")
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dcbulk-logs" in err[0] and "symbolic link" in err[0], err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("entry", ["file", "dangling link", "link to a file"])
@pytest.mark.parametrize("mode", ["split", "join"])
def test_a_log_directory_that_is_no_directory_is_one_line(tmp_path, capsys, mode, entry):
    """A ``dcbulk-logs`` that is a regular file, a dangling link or a link to a file gave
    a FileExistsError traceback (split and join); it is now one line, exit 3, as a link
    to a directory was, and is left as it is."""
    a, b = _files(tmp_path / "src", ["a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    dst.mkdir()
    logs, target = dst / "dcbulk-logs", tmp_path / "target"
    if entry == "file":
        logs.write_text("keep\n")
    else:
        if entry == "link to a file":
            target.write_text("keep\n")
        os.symlink(target, logs)
    argv = ([mode, str(a), "-o", str(dst)] if mode == "split"
            else [mode, str(a), str(b), "-o", str(dst / "j.rtdc")])
    assert main([*argv, "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dcbulk-logs" in err[0], err
    assert "symbolic link" in err[0] or "not a directory" in err[0], err
    assert os.path.lexists(logs) and not list(dst.glob("*.rtdc"))
    if entry == "dangling link":
        assert not target.exists()
    else:
        assert (logs if entry == "file" else target).read_text() == "keep\n"


@pytest.mark.parametrize("parent", ["file", "dangling link"])
def test_a_log_directory_that_cannot_be_created_is_one_line(tmp_path, capsys, parent):
    """``join ... -o afile/j.rtdc`` (afile a regular file) gave a NotADirectoryError
    traceback, ``-o dlink/j.rtdc`` (a dangling link) a FileNotFoundError one: each is
    now one line naming the log directory, exit 3."""
    a, b = _files(tmp_path / "src", ["a.rtdc", "b.rtdc"])
    where = tmp_path / "where"
    if parent == "file":
        where.write_text("keep\n")
    else:
        os.symlink(tmp_path / "nowhere", where)
    assert main(["join", str(a), str(b), "-o", str(where / "j.rtdc"), "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(where / "dcbulk-logs") in err[0], err
    assert "cannot create" in err[0], err


def test_an_in_process_marker_that_is_a_directory_is_refused_before_any_work(tmp_path,
                                                                            capsys):
    """A ``.dcbulk-in-process`` that was a directory: the pieces were written, then an
    IsADirectoryError traceback from removing it, and no summary line. Now one line, exit 3,
    before any output is written, as for other entries of the output directory that are
    not dcbulk's files."""
    (a,) = _files(tmp_path / "src", ["a.rtdc"])
    dst = tmp_path / "dst"
    (dst / ".dcbulk-in-process").mkdir(parents=True)
    assert main(["split", str(a), "-o", str(dst), "--events-per-file", "20", "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".dcbulk-in-process" in err[0], err
    assert "not a regular file" in err[0], err
    assert not list(dst.glob("*.rtdc")) and (dst / ".dcbulk-in-process").is_dir()
    (dst / ".dcbulk-in-process").rmdir()
    marker = dst / f".dcbulk-in-process-{socket.gethostname()}-1"
    os.symlink(tmp_path / "elsewhere", marker)  # of a convert: refused before its manifest
    assert main(["convert", str(tmp_path / "src"), "-o", str(dst), "-q"]) == 3
    assert str(marker) in capsys.readouterr().err
    assert not (dst / "dcbulk-manifest.jsonl").exists()  # verify named a "killed" run


def test_a_report_that_is_a_symlink_is_refused_before_any_work(tmp_path, capsys):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    victim = tmp_path / "victim.json"
    victim.write_text("precious\n")
    report = tmp_path / "report.json"
    os.symlink(victim, report)
    assert main(["convert", str(src), "-o", str(tmp_path / "dst"), "-q",
                 "--report", str(report)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "report.json" in err[0] and "symbolic link" in err[0], err
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "dst" / "a.rtdc").exists()


def test_a_report_never_replaces_data_dcbulk_files_or_a_directory(tmp_path, capsys):
    """``--report``/``--html-report``/``--performance-report`` naming a source, the run's own
    (coming) output or its manifest replaced that file with the report, exit 0 ("1
    converted"); a directory gave a traceback. Each is one line (exit 2), nothing written."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (source,) = _files(src, ["a.rtdc"])
    other = tmp_path / "other.rtdc"  # an .rtdc of no run
    other.write_bytes(source.read_bytes())
    before = source.read_bytes()
    for option in ("--report", "--html-report", "--performance-report"):
        for path, words in [(source, "would replace an HDF5 file"),
                            (other, "would replace an HDF5 file"),
                            (dst / "a.rtdc", "a file this run reads or writes"),
                            (dst / MANIFEST_NAME, "dcbulk's own file"),
                            (tmp_path, "is a directory")]:
            assert main(["convert", str(src), "-o", str(dst), "-q", option, str(path)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and words in err[0], (option, path, err)
            assert not (dst / "a.rtdc").exists()
    assert source.read_bytes() == before and other.read_bytes() == before
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    manifest = (dst / MANIFEST_NAME).read_bytes()
    for path in (dst / "a.rtdc", source, dst / MANIFEST_NAME):  # verify's too
        assert main(["verify", "-q", str(dst), "--report", str(path)]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert source.read_bytes() == before and (dst / MANIFEST_NAME).read_bytes() == manifest
    assert main(["verify", "-q", str(dst)]) == 0


def test_an_output_subdirectory_that_is_a_symlink_fails_that_file_alone(tmp_path, client):
    src = tmp_path / "src"
    sub_file, top_file = _files(src, ["sub/a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    dst.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, dst / "sub")
    report = convert_archive([src], dst, client=client)
    by_name = {Path(f.source).name: f for f in report.files}
    assert by_name["a.rtdc"].status == "failed"
    assert "LinkRefusedError" in by_name["a.rtdc"].error
    assert str(dst / "sub") in by_name["a.rtdc"].error
    assert by_name["b.rtdc"].status == "done"
    assert_features_equal(top_file, dst / "b.rtdc")
    assert list(elsewhere.iterdir()) == []
    assert Manifest.load(dst).records["sub/a.rtdc"].status == "failed"


# -- links out of the source tree (defect 5) ------------------------------------------------

def _tree_with_links_out(tmp_path: Path) -> tuple[Path, Path]:
    src, outside = tmp_path / "src", tmp_path / "outside"
    _files(src, ["in.rtdc", "sub/deep.rtdc"])
    _files(outside, ["o1.rtdc", "dir/o2.rtdc"])
    os.symlink(outside / "dir", src / "linked-dir")
    os.symlink(outside / "o1.rtdc", src / "linked-file.rtdc")
    os.symlink(src / "sub", src / "alias")  # inside the tree: followed (walked once)
    return src, outside


def test_links_out_of_the_tree_are_skipped_with_one_warning_each(tmp_path, caplog):
    src, outside = _tree_with_links_out(tmp_path)
    caplog.set_level("WARNING", logger="dcbulk")
    entries = discover_sources([src])
    # the link inside the tree is followed ("alias" sorts before "sub": reached there first)
    assert sorted(e.relpath for e in entries) == ["alias/deep.rtdc", "in.rtdc"]
    outside_lines = [r.getMessage() for r in caplog.records if "outside" in r.getMessage()]
    assert len(outside_lines) == 2, outside_lines
    assert any(str(src / "linked-dir") in line for line in outside_lines)
    assert any(str(src / "linked-file.rtdc") in line for line in outside_lines)
    # a glob gives the same
    assert [e.relpath for e in discover_sources([f"{src}/*.rtdc"])] == ["in.rtdc"]
    # opted in: followed
    followed = discover_sources([src], follow_links=True)
    assert sorted(e.relpath for e in followed) == [
        "alias/deep.rtdc", "in.rtdc", "linked-dir/o2.rtdc", "linked-file.rtdc"]


def test_convert_dry_run_skips_links_out_unless_follow_links(tmp_path, capsys):
    src, _ = _tree_with_links_out(tmp_path)
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "--dry-run"]) == 0
    captured = capsys.readouterr()
    planned = [ln for ln in captured.out.splitlines() if ln.startswith("planned")]
    assert len(planned) == 2 and not any("linked" in ln for ln in planned), planned
    assert sum("outside" in ln for ln in captured.err.splitlines()) == 2, captured.err
    assert main(["convert", str(src), "-o", str(dst), "--dry-run", "--follow-links"]) == 0
    planned = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("planned")]
    assert len(planned) == 4


def test_a_directory_of_links_out_only_is_an_error(tmp_path, capsys):
    outside = tmp_path / "outside"
    _files(outside, ["o1.rtdc"])
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(outside / "o1.rtdc", src / "o1.rtdc")
    assert main(["convert", str(src), "-o", str(tmp_path / "dst"), "--dry-run"]) == 3
    assert "links out of the tree" in capsys.readouterr().err


# -- sources are regular files (defect 6) ---------------------------------------------------

def _tree_with_fifo(tmp_path: Path) -> tuple[Path, list[Path]]:
    src = tmp_path / "src"
    files = _files(src, ["a.rtdc", "b.rtdc"])
    os.mkfifo(src / "x.rtdc")
    return src, files


def test_a_fifo_among_the_sources_is_skipped_by_convert(tmp_path):
    src, files = _tree_with_fifo(tmp_path)
    dst = tmp_path / "dst"
    proc = _cli("convert", src, "-o", dst, "-q", *_CLUSTER)
    assert proc.returncode == 0, proc.err
    warned = [ln for ln in proc.err.splitlines() if "x.rtdc" in ln]
    assert len(warned) == 1 and "not a regular file" in warned[0], proc.err
    for path in files:
        assert_features_equal(path, dst / path.name)
    assert not (dst / "x.rtdc").exists()


def test_a_fifo_among_the_sources_is_skipped_by_info_dir_and_split(tmp_path):
    src, _ = _tree_with_fifo(tmp_path)
    proc = _cli("info", src)
    assert proc.returncode == 0, proc.err
    assert [Path(ln.split(":")[0]).name for ln in proc.out.splitlines()] == ["a.rtdc",
                                                                             "b.rtdc"]
    assert "x.rtdc" in proc.err and "not a regular file" in proc.err
    proc = _cli("split", src, "-o", tmp_path / "pieces", "--dry-run")
    assert proc.returncode == 0, proc.err
    assert "x.rtdc" not in proc.out and "a_0001.rtdc" in proc.out


def test_verify_does_not_open_a_source_replaced_by_a_fifo(tmp_path, client):
    src = tmp_path / "src"
    _files(src, ["a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    assert convert_archive([src], dst, client=client).ok
    (src / "a.rtdc").unlink()
    os.mkfifo(src / "a.rtdc")
    proc = _cli("verify", dst, *_CLUSTER)
    assert proc.returncode in (1, 3), proc.out + proc.err
    assert "a.rtdc" in proc.out + proc.err and "not a regular file" in proc.out + proc.err


def test_verify_opens_no_output_that_is_a_fifo(tmp_path):
    """An output named on the command line (a glob such as ``DIR/*.rtdc`` may match one),
    or recorded in the manifest, that is a FIFO is one line and is never opened (``dcbulk
    verify`` blocked on it forever)."""
    src = tmp_path / "src"
    _files(src, ["a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    assert convert_archive([src], dst).ok
    os.mkfifo(tmp_path / "x.rtdc")
    proc = _cli("verify", "-q", tmp_path / "x.rtdc", timeout=60)  # alone: the run's error
    assert proc.returncode == 3, proc.out + proc.err
    assert proc.err.strip() == (f"dcbulk: error: {tmp_path / 'x.rtdc'}: not a regular file "
                                f"(a FIFO, device or socket); not opened")
    proc = _cli("verify", "-q", dst / "b.rtdc", tmp_path / "x.rtdc", timeout=60)
    assert proc.returncode == 1, proc.out + proc.err  # among others: its own line
    assert f"{tmp_path / 'x.rtdc'}: not a regular file (a FIFO, device or socket); not " \
           f"opened" in proc.out.splitlines() and "1 equal, 1 differ" in proc.out
    (dst / "a.rtdc").unlink()
    os.mkfifo(dst / "a.rtdc")
    proc = _cli("verify", "-q", dst, timeout=60)
    assert proc.returncode == 1, proc.out + proc.err
    assert f"{dst / 'a.rtdc'}: not a regular file (a FIFO, device or socket); not opened" \
        in proc.out.splitlines()
    assert "1 equal, 1 differ" in proc.out


def test_info_of_a_fifo_given_directly_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "x.rtdc")
    proc = _cli("info", tmp_path / "x.rtdc")
    assert proc.returncode == 3
    assert len(proc.err.strip().splitlines()) == 1 and "not a regular file" in proc.err


# -- names that are not valid UTF-8 (defect 7) ----------------------------------------------

def test_a_non_utf8_name_fails_no_other_file_and_prints_no_logging_error(tmp_path):
    src = tmp_path / "src"
    good, ok_copy = _files(src, ["good.rtdc", "plain.rtdc"])
    odd = Path(os.fsdecode(bytes(src) + b"/odd\xff name.rtdc"))
    os.rename(ok_copy, odd)
    broken = Path(os.fsdecode(bytes(src) + b"/broken\xfe.rtdc"))
    broken.write_bytes(b"not an HDF5 file")
    dst = tmp_path / "dst"
    proc = _cli("convert", src, "-o", dst, *_CLUSTER)
    assert proc.returncode == 1, proc.out + proc.err
    assert "Logging error" not in proc.err and "Traceback" not in proc.err, proc.err
    assert "2 converted, 0 skipped (finished before), 1 failed" in proc.out, proc.out
    proc.stdout.decode("utf-8")  # valid UTF-8: odd bytes are shown escaped
    failed = [ln for ln in proc.out.splitlines() if "FAILED" in ln]
    assert len(failed) == 1 and "broken\\xfe.rtdc" in failed[0], failed
    assert_features_equal(good, dst / "good.rtdc")
    out_odd = Path(os.fsdecode(bytes(dst) + b"/odd\xff name.rtdc"))  # the same bytes
    assert_features_equal(odd, out_odd)
    records = Manifest.load(dst).records
    assert records[odd.name].status == "done" and records[broken.name].status == "failed"
    logs = list((dst / "dcbulk-logs").iterdir())
    assert logs and all("Logging error" not in p.read_text(errors="replace") for p in logs)


def test_info_of_a_non_utf8_name_prints_it_escaped(tmp_path):
    (plain,) = _files(tmp_path, ["plain.rtdc"])
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/odd\xff.rtdc"))
    os.rename(plain, odd)
    for target in (odd, tmp_path):
        proc = _cli("info", target)
        assert proc.returncode == 0 and "Traceback" not in proc.err, proc.err
        proc.stdout.decode("utf-8")  # valid UTF-8: the odd byte is shown escaped
        assert b"odd\\xff.rtdc" in proc.stdout, proc.out


def test_a_control_character_in_a_name_keeps_each_printed_line_one_line(tmp_path, capsys):
    """A newline in a failed source's name broke its ``FAILED <name>: reason`` line in two
    (an escape character drove the terminal). Printed names show them escaped (``\\n``);
    the JSON report keeps the real path."""
    src = tmp_path / "src"
    (good,) = _files(src, ["good.rtdc"])
    broken = src / "bro\nken\x1b[31m.rtdc"
    broken.write_bytes(b"not an HDF5 file")
    dst, report = tmp_path / "dst", tmp_path / "report.json"
    assert main(["convert", str(src), "-o", str(dst), "-q", "--report", str(report)]) == 1
    out = capsys.readouterr().out
    failed = [ln for ln in out.splitlines() if "FAILED" in ln]
    assert len(out.strip().splitlines()) == 2 and len(failed) == 1, out
    assert failed[0].startswith(f"  FAILED {src}/bro\\nken\\x1b[31m.rtdc: NotHDF5Error"), out
    assert "\x1b" not in out, out
    files = json.loads(report.read_text())["files"]
    assert sorted(f["source"] for f in files) == sorted([str(broken), str(good)])
    assert_features_equal(good, dst / "good.rtdc")


# -- --filter is bounded (defect 8) ---------------------------------------------------------

HOSTILE_FILTERS = {
    "tower of powers": "deform < 10 ** 10 ** 9",
    "division by zero": "deform < 1 / 0",
    "feature by zero": "deform % (2 - 2) > 0",
    "100000 minus signs": "-" * 100_000 + "deform < 0",
    "3000-term sum": " + ".join(["deform"] * 3000) + " < 1",
    "deep nesting": "-" * 80 + "deform < 1",
    "many nodes": " + ".join(["a"] * 400) + " < 1",
}


@pytest.mark.parametrize("text", list(HOSTILE_FILTERS.values()), ids=list(HOSTILE_FILTERS))
def test_hostile_filters_are_refused_when_checked(text):
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_bounded_filters_still_work():
    import numpy as np
    expr = parse_filter("deform ** 2 < 2 ** 3 & -(-deform) > 1e-3 % 7")
    np.testing.assert_array_equal(expr.evaluate({"deform": np.array([0.0, 0.5, 9.0])}),
                                  [False, True, False])


@pytest.mark.parametrize("name", ["tower of powers", "division by zero", "100000 minus signs",
                                  "3000-term sum"])
def test_hostile_filters_are_a_usage_error_before_any_cluster(tmp_path, name):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    proc = _cli("convert", src, "-o", dst, "--filter", HOSTILE_FILTERS[name], timeout=120)
    assert proc.returncode == 2, proc.err
    assert len(proc.err.strip().splitlines()) == 1 and "usage error" in proc.err
    assert "Traceback" not in proc.err
    assert not dst.exists()  # refused before anything was written (or a cluster started)


# -- per-file time limit (defect 10) --------------------------------------------------------

_NEVER_RETURNS = textwrap.dedent("""
    import json, os, sys, threading
    import dcbulk
    from distributed import Client, LocalCluster

    def stuck_on_41(features):
        if features["deform"].shape[0] == 41:
            threading.Event().wait()   # never returns
        return {"userdef1": features["deform"] * 2}

    if __name__ == "__main__":
        src, dst = sys.argv[1], sys.argv[2]
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cl, \\
                Client(cl) as client:
            # the limit: generous for a 40-event file, short for the suite
            report = dcbulk.reprocess([src], dst, stuck_on_41, client=client, timeout=12)
            print(json.dumps(report.to_dict(), default=str), flush=True)
            cl.close(timeout=20)
""")


def test_a_reprocess_function_that_never_returns_fails_its_file_alone(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_NEVER_RETURNS)
    src, dst = tmp_path / "src", tmp_path / "dst"
    _files(src, [f"f{k}.rtdc" for k in range(3)])  # 40, 41, 42 events
    proc = subprocess.run([sys.executable, str(script), str(src), str(dst)],
                          capture_output=True, text=True, timeout=LIMIT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    files = {Path(f["source"]).name: f for f in json.loads(lines[0])["files"]}
    assert files["f1.rtdc"]["status"] == "failed"
    assert "time limit of 12 s" in files["f1.rtdc"]["error"]
    assert files["f0.rtdc"]["status"] == files["f2.rtdc"]["status"] == "done"
    assert not (dst / "f1.rtdc").exists()
    assert not list(dst.rglob("*.partial"))
    assert Manifest.load(dst).records["f1.rtdc"].status == "failed"


@pytest.mark.parametrize("limit", ["1e-7", "1e-6"])
def test_a_tiny_time_limit_fails_the_file_and_does_not_spin(tmp_path, limit):
    """``--timeout-per-file 1e-7`` spun at ~94% CPU forever (the first Ctrl-C ignored): the
    wait for a task was as short as the limit, and nothing settled. The file now fails
    alone with the time-limit line (the wait polls at least every 0.05 s)."""
    src = _files(tmp_path / "src", ["a.rtdc"])[0]
    proc = _cli("split", src, "-o", tmp_path / "out", "--events-per-file", "20",
                "--timeout-per-file", limit, *_CLUSTER, timeout=90)
    assert proc.returncode == 1, proc.out + proc.err
    assert f"time limit of {float(limit):g} s per file" in proc.out + proc.err, proc.err
    assert "Traceback" not in proc.err
    assert not list((tmp_path / "out").glob("*.rtdc"))


class LateJob(ConvertJob):
    """A convert job that sleeps past its time limit, then tries to commit its output and
    notes what happened in ``<output>.attempt.json`` (outside the run's bookkeeping)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def make(self, target, options, **kwargs):
        time.sleep(self.delay)
        error = None
        try:
            return super().make(target, options, **kwargs)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            Path(target.output + ".attempt.json").write_text(json.dumps({"error": error}))


def test_an_abandoned_task_cannot_commit_its_output_later(tmp_path, client):
    src = tmp_path / "src"
    _files(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    # limit 1 s; the client abandons the task after 1 s + 2 s grace; it wakes up at 6 s
    report = run_job(LateJob(6.0), [src], dst, make_options(), client=client, timeout=1.0)
    (result,) = report.files
    assert result.status == "failed" and "time limit of 1 s" in result.error
    attempt = dst / "a.rtdc.attempt.json"
    for _ in range(600):  # the abandoned task still runs on its worker
        if attempt.exists():
            break
        time.sleep(0.1)
    assert attempt.exists(), "the abandoned task never tried to commit"
    assert json.loads(attempt.read_text())["error"].startswith("FileTimeoutError")
    assert not (dst / "a.rtdc").exists()
    assert not list(dst.rglob("*.partial"))
    assert Manifest.load(dst).records["a.rtdc"].status == "failed"


@pytest.mark.parametrize("command", ["convert", "condense", "split", "join"])
def test_timeout_per_file_is_checked_as_usage(tmp_path, capsys, command):
    src = tmp_path / "src"
    _files(src, ["a.rtdc", "b.rtdc"])
    out = tmp_path / ("joined.rtdc" if command == "join" else "dst")
    assert main([command, str(src), "-o", str(out), "--timeout-per-file", "0"]) == 2
    assert main([command, str(src), "-o", str(out), "--timeout-per-file", "30",
                 "--dry-run"]) == 0
    with pytest.raises(UsageError, match="positive number of seconds"):
        convert_archive([src], tmp_path / "api", timeout=-1)


@pytest.mark.parametrize("command", ["convert", "condense", "join", "split"])
def test_an_output_that_is_a_source_is_refused_also_with_force(tmp_path, capsys, command):
    """A file converted into its own directory with --force, or a join's output named as
    one of its inputs, replaced the source (data loss: a 13-event file became 2 events of
    one feature). Refused in one line, exit 2, the source's bytes unchanged (also a hard
    link of it in the output directory)."""
    a, b = _files(tmp_path / "in", ["m.rtdc", "m_0001.rtdc"])
    before = {p: p.read_bytes() for p in (a, b)}
    if command == "join":
        argv = ["join", str(a), str(b), "-o", str(b)]
    elif command == "split":  # its first piece is named as the second source
        argv = ["split", str(a), str(b), "-o", str(a.parent), "--events-per-file", "5"]
    else:
        argv = [command, str(a), "-o", str(a.parent)]
    assert main([*argv, "--force", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the source" in err[0] and "would be replaced" in err[0], err
    assert {p: p.read_bytes() for p in (a, b)} == before
    if command == "convert":
        out = tmp_path / "out"
        out.mkdir()
        os.link(a, out / a.name)
        assert main(["convert", str(a), "-o", str(out), "--force", "-q"]) == 2
        assert a.read_bytes() == before[a]


def test_hidden_sources_are_named_when_left_out_and_hidden_strays_verified(tmp_path, capsys):
    """Hidden files and directories were left out of a run without a word, so a tree
    'converted' in full could still hold data (``.x.rtdc``, ``.sub/y.rtdc``); and a hidden
    ``.rtdc`` in an output directory was not among the files verify reports unrecorded."""
    src = tmp_path / "src"
    _files(src, ["a.rtdc", ".x.rtdc", ".sub/y.rtdc"])
    (src / ".notes").write_text("not a measurement")  # hidden, not *.rtdc: no line
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "skipping hidden" in line]
    assert err == [
        f"dcbulk: skipping hidden directory {src / '.sub'} (names starting with '.' are not "
        f"walked; give it as a source to take its files)",
        f"dcbulk: skipping hidden file {src / '.x.rtdc'} (names starting with '.' are not "
        f"taken; give it as a source to take it)"]
    assert sorted(p.name for p in dst.rglob("*.rtdc")) == ["a.rtdc"]
    (dst / ".copy.rtdc").write_bytes((dst / "a.rtdc").read_bytes())
    assert main(["verify", "-q", str(dst)]) == 1
    assert f"{dst / '.copy.rtdc'}: not in its directory's manifest" in capsys.readouterr().out


def test_split_fails_a_bad_source_alone_and_names_one_without_pieces(tmp_path, capsys):
    """``split`` planned every source's pieces before the run, so one damaged source (or
    one lacking a feature the filter needs) stopped the whole run (exit 3, no file split);
    a source giving no piece (no events, or none kept) was left out without a word."""
    import h5py
    src = tmp_path / "src"
    good, nodeform, empty = _files(src, ["good.rtdc", "nodeform.rtdc", "empty.rtdc"])
    (src / "trunc.rtdc").write_bytes(good.read_bytes()[:1000])
    with h5py.File(nodeform, "a") as h5:
        del h5["events/deform"]
    with h5py.File(empty, "a") as h5:
        for name in list(h5["events"]):
            data = h5["events"][name]
            del h5["events"][name]
            h5["events"].create_dataset(name, shape=(0,) + data.shape[1:], dtype=data.dtype)
        h5.attrs["experiment:event count"] = 0
    dst = tmp_path / "pieces"
    assert main(["split", str(src), "-o", str(dst), "-q", "--events-per-file", "7",
                 "--filter", "deform > 0"]) == 1
    out, err = capsys.readouterr()
    failed = [line for line in out.splitlines() if line.lstrip().startswith("FAILED")]
    assert len(failed) == 2, out
    assert any(str(src / "trunc.rtdc") in line and "not a readable HDF5 file" in line
               for line in failed), failed
    assert any(str(nodeform) in line and "filter needs feature(s) deform" in line
               for line in failed), failed
    assert f"dcbulk: {empty}: nothing to split (no events, or none that the filter and the " \
           f"all-zero boundary-image rule keep); no output" in err.splitlines()
    with h5py.File(good) as h5:
        n_pieces = -(-h5["events/deform"].shape[0] // 7)
    assert sorted(p.name for p in dst.glob("*.rtdc")) == [
        f"good_{k:04d}.rtdc" for k in range(1, n_pieces + 1)]
    assert main(["verify", "-q", *map(str, sorted(dst.glob("*.rtdc")))]) == 0


def test_verify_of_a_directory_names_sources_without_output(tmp_path, capsys):
    """``dcbulk verify DIR`` checked only the finished records: a run killed after 4 of 20
    files verified as '4 files, 4 equal' (exit 0; after 0 files: '0 files', exit 0), and a
    source whose conversion failed was not mentioned. Each run now records the sources it
    sets out to make; verify names each one without an output, and what a run that did not
    end left behind."""
    src = tmp_path / "src"
    files = _files(src, ["a.rtdc", "b.rtdc", "c.rtdc"])
    (src / "bad.rtdc").write_bytes(files[0].read_bytes()[:1000])
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 1  # bad.rtdc failed
    capsys.readouterr()
    manifest = dst / MANIFEST_NAME
    lines = manifest.read_bytes().splitlines(keepends=True)
    assert sum(b'"planned"' in line for line in lines) == 1
    # killed after writing c.rtdc but before recording it, with a partial file left
    kept = [ln for ln in lines if b'"relpath":"c.rtdc"' not in ln]
    assert len(kept) == len(lines) - 1
    manifest.write_bytes(b"".join(kept))
    (dst / "c.rtdc").unlink()
    (dst / "d.rtdc.0123456789ab.partial").write_bytes(b"")
    assert main(["verify", "-q", str(dst)]) == 1
    out = capsys.readouterr().out
    assert f"{src / 'c.rtdc'}: has no output here: a run set out to make it and " \
           f"never recorded it (killed, or still running); re-run its command" in out, out
    assert f"{src / 'bad.rtdc'}: has no output here: it failed (NotHDF5Error:" in out, out
    assert f"{dst}: 1 file(s) of a run that did not end (e.g. " \
           f"{dst / 'd.rtdc.0123456789ab.partial'}); re-run its command" in out, out
    assert "a.rtdc" not in out and "b.rtdc" not in out
    # the re-run finishes it (bad.rtdc still fails): then only that one is named
    (dst / "d.rtdc.0123456789ab.partial").unlink()
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 1
    # a re-run of the same sources does not append the planned sources again
    assert (dst / MANIFEST_NAME).read_bytes().count(b'"planned"') == 1
    assert main(["verify", "-q", str(dst)]) == 1
    out = capsys.readouterr().out
    assert "c.rtdc" not in out and "bad.rtdc: has no output here: it failed" in out
    (src / "bad.rtdc").unlink()
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    # a removed source's failure is still on record: it has no output here
    assert main(["verify", "-q", str(dst)]) == 1
    assert [ln for ln in capsys.readouterr().out.splitlines() if "bad.rtdc" in ln][0].endswith(
        f"; its source is gone too (if left out on purpose: dcbulk forget {dst} "
        f"{src / 'bad.rtdc'})")
    # a killed run's plan is kept when a later run takes a subset of the sources
    lines = (dst / MANIFEST_NAME).read_bytes().splitlines(keepends=True)
    (dst / MANIFEST_NAME).write_bytes(b"".join(
        ln for ln in lines if b'"relpath":"b.rtdc"' not in ln))
    (dst / "b.rtdc").unlink()
    assert main(["convert", str(src / "a.rtdc"), "-o", str(dst), "-q"]) == 0
    assert main(["verify", "-q", str(dst)]) == 1
    assert f"{src / 'b.rtdc'}: has no output here: a run set out" in \
        capsys.readouterr().out


def test_forget_drops_a_source_left_out_on_purpose_and_nothing_else(tmp_path, capsys):
    """A failed source removed from the archive kept ``dcbulk verify`` failing for good (its
    record could not be cleared but by editing the manifest). ``dcbulk forget`` drops it,
    and only a source without an output; a run that finds it again makes it."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    _files(src, ["a.rtdc", "b.rtdc"])
    (src / "bad.rtdc").write_bytes(b"not hdf5")
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 1
    manifest_bytes = (dst / MANIFEST_NAME).read_bytes()
    capsys.readouterr()
    for args, words in [
            ([str(src / "a.rtdc")], "has an output here (a.rtdc); only a source without one"),
            ([str(src / "zz.rtdc")], "not a source of"),
            ([str(tmp_path / "nowhere"), "x"], "not an output directory of a dcbulk run")]:
        outdir = args.pop(0) if len(args) == 2 else str(dst)
        assert main(["forget", outdir, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert (dst / MANIFEST_NAME).read_bytes() == manifest_bytes  # refusals write nothing
    (src / "bad.rtdc").unlink()
    assert main(["verify", "-q", str(dst)]) == 1
    capsys.readouterr()
    assert main(["forget", str(dst), str(src / "bad.rtdc")]) == 0
    assert "1 source forgotten" in capsys.readouterr().out
    assert main(["verify", "-q", str(dst)]) == 0
    assert "2 files, 2 equal" in capsys.readouterr().out
    # the forgetting survives compaction; a later run that finds the source makes it again
    manifest = Manifest.load(dst)
    manifest.compact()
    assert "bad.rtdc" not in Manifest.load(dst).planned and main(["verify", "-q", str(dst)]) == 0
    _files(src, ["bad.rtdc"])
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    assert Manifest.load(dst).records["bad.rtdc"].status == "done"
    # a planned source never recorded (a killed run) is forgotten by its relative path
    lines = (dst / MANIFEST_NAME).read_bytes().splitlines(keepends=True)
    (dst / MANIFEST_NAME).write_bytes(b"".join(
        ln for ln in lines if b'"relpath":"bad.rtdc"' not in ln))
    (dst / "bad.rtdc").unlink()
    assert main(["verify", "-q", str(dst)]) == 1
    assert dcbulk.forget(dst, "bad.rtdc") == ["bad.rtdc"]
    assert main(["verify", "-q", str(dst)]) == 0


def test_a_source_whose_name_leaves_no_room_for_the_partial_suffix_converts(tmp_path):
    """A valid 250-byte file name failed ('File name too long'): its partial file's name,
    the output's plus ``.<12 hex>.partial``, passed the 255-byte limit."""
    from dcbulk.partials import partial_path
    src = tmp_path / "src"
    name = "é" * 60 + "L" * 125 + ".rtdc"  # 250 bytes in UTF-8
    assert len(os.fsencode(name)) == 250
    _files(src, [name])
    partial = partial_path(str(tmp_path / name))
    assert len(os.fsencode(os.path.basename(partial))) == 255 and partial.endswith(".partial")
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    assert (dst / name).is_file() and not list(dst.glob("*.partial"))
    assert main(["verify", "-q", str(dst)]) == 0


def test_a_recorded_output_that_is_gone_is_one_plain_line(tmp_path, capsys):
    """A finished output deleted since was reported with HDF5's 'cannot open ([Errno 2]
    Unable to synchronously open file (unable to open file: name = ...' (the process mode
    said 'missing')."""
    src = tmp_path / "src"
    _files(src, ["a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    capsys.readouterr()
    (dst / "a.rtdc").unlink()
    assert main(["verify", "-q", str(dst)]) == 1
    problems = [ln for ln in capsys.readouterr().out.splitlines() if "a.rtdc" in ln]
    assert problems == [f"{dst / 'a.rtdc'}: missing"], problems


def test_verify_of_several_files_checks_the_others_when_one_cannot_be_paired(tmp_path,
                                                                             capsys):
    """``dcbulk verify a.rtdc x.rtdc b.rtdc`` where x has no provenance log stopped the
    whole run with a usage error: a and b got no verdict. Named among others, x is one line
    (exit 1); named alone it is still the usage error (exit 2)."""
    src = tmp_path / "src"
    files = _files(src, ["a.rtdc", "b.rtdc"])
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q"]) == 0
    stray = tmp_path / "x.rtdc"
    stray.write_bytes(files[0].read_bytes())  # a source: no dcbulk log
    capsys.readouterr()
    assert main(["verify", "-q", str(dst / "a.rtdc"), str(stray), str(dst / "b.rtdc")]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if str(stray) in ln]
    assert len(lines) == 1 and "no dcbulk provenance log" in lines[0], out
    assert "2 equal" in out.splitlines()[-1], out
    assert main(["verify", "-q", str(stray)]) == 2


def test_a_source_directory_without_a_file_to_take_is_one_warning_line(tmp_path, capsys):
    """A typo'd or empty tree converted "0 files" without a word (exit 0): the warning
    names it and what was looked for."""
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    assert main(["convert", str(tmp_path / "empty"), "-o", str(tmp_path / "dst"), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dcbulk: {tmp_path / 'empty'}: no file matching '*.rtdc' below it"], err
