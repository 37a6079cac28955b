"""Hostile *source files* (issue 16, part A): what is inside the HDF5 file.

One test per defect: outside data (external links, virtual datasets, external raw storage)
refused by default and followed only on request, features read through the name the source
shows, nested groups under ``events`` kept, ``dcbulk info`` without tracebacks, and memory
bounded by what a file holds (peak RSS of the whole process tree of a real ``dcbulk convert``).
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

import dcbulk
from dcbulk.bulk import convert_archive
from dcbulk.cli import EXIT_ERROR, EXIT_FAILED_FILES, EXIT_OK, main
from dcbulk.write import set_default_filter_kwargs
from dcbulk.write.basin_store import store_basin_text

from fixtures import small_rtdc
from helpers import assert_features_equal

pytestmark = pytest.mark.hostile

N = 20


def _small(path: Path, seed: int = 0) -> Path:
    return small_rtdc(path, N, seed=seed)


@pytest.fixture
def archive(tmp_path):
    """``src/good.rtdc``, ``src/bad.rtdc`` (to be made hostile) and ``other.rtdc`` outside."""
    src = tmp_path / "src"
    src.mkdir()
    good = _small(src / "good.rtdc", seed=1)
    bad = _small(src / "bad.rtdc", seed=2)
    other = _small(tmp_path / "other.rtdc", seed=3)
    return src, good, bad, other


def _external_link(bad: Path, other: Path, name: str = "events/userdef1",
                   target: str = "/events/area_um") -> None:
    with h5py.File(bad, "a") as h5:
        h5[name] = h5py.ExternalLink(str(other), target)


def _virtual(bad: Path, other: Path, name: str = "userdef1") -> None:
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "events/area_um", shape=(N,))
    with h5py.File(bad, "a") as h5:
        h5["events"].create_virtual_dataset(name, layout)


def _external_storage(bad: Path, other: Path) -> None:
    raw = other.parent / "raw.bin"
    raw.write_bytes(np.arange(N, dtype="f8").tobytes())
    with h5py.File(bad, "a") as h5:
        h5["events"].create_dataset("userdef1", shape=(N,), dtype="f8",
                                    external=[(str(raw), 0, N * 8)])


def _soft_link_out(bad: Path, other: Path) -> None:
    with h5py.File(bad, "a") as h5:
        h5.create_dataset("hidden/values", data=np.arange(N, dtype="f8"))
        h5["events/userdef1"] = h5py.SoftLink("/hidden/values")


def _log_external_link(bad: Path, other: Path) -> None:
    with h5py.File(other, "a") as h5:
        h5.create_dataset("secret", data=np.array([b"outside"]))
    _external_link(bad, other, name="logs/outside", target="/secret")


HOSTILE = {"external link": (_external_link, "external link"),
           "virtual dataset": (_virtual, "virtual dataset"),
           "external storage": (_external_storage, "external raw storage"),
           "soft link out of events": (_soft_link_out, "soft link"),
           "external link in logs": (_log_external_link, "external link")}


# -- defect 1: outside data are refused by default, naming file and object -----------------
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_outside_data_fail_their_file_alone_with_one_line(archive, tmp_path, client, kind):
    src, good, bad, other = archive
    make, words = HOSTILE[kind]
    make(bad, other)
    report = convert_archive([src], tmp_path / "dst", client=client)
    by_name = {Path(f.source).name: f for f in report.files}
    assert by_name["good.rtdc"].status == "done"
    failed = by_name["bad.rtdc"]
    assert failed.status == "failed"
    assert words in failed.error and str(bad) in failed.error, failed.error
    assert "\n" not in failed.error
    assert not (tmp_path / "dst" / "bad.rtdc").exists()
    assert_features_equal(good, tmp_path / "dst" / "good.rtdc")


def test_cli_refuses_outside_data_and_follows_them_on_request(archive, tmp_path, capsys):
    src, good, bad, other = archive
    _external_storage(bad, other)
    dst = tmp_path / "dst"
    assert main(["convert", str(src), "-o", str(dst), "-q", "--workers", "1"]) \
        == EXIT_FAILED_FILES
    out = capsys.readouterr().out
    assert "external raw storage" in out and "--follow-external" in out
    assert main(["convert", str(src), "-o", str(tmp_path / "dst2"), "-q", "--workers", "1",
                 "--follow-external"]) == EXIT_OK
    with h5py.File(tmp_path / "dst2" / "bad.rtdc") as h5:
        np.testing.assert_array_equal(h5["events/userdef1"][:], np.arange(N, dtype="f8"))
        assert not h5["events/userdef1"].external  # the output holds the data itself
    assert main(["verify", str(tmp_path / "dst2"), "--workers", "1"]) == EXIT_OK


# -- defect 2: a feature is read through the name the source shows -------------------------
@pytest.mark.parametrize("link", ["external", "virtual", "soft"])
def test_a_linked_feature_keeps_its_shown_name_and_its_linked_data(archive, tmp_path, client,
                                                                   link):
    src, good, bad, other = archive
    if link == "external":
        _external_link(bad, other, name="events/userdef2", target="/events/area_um")
        linked = other
    elif link == "virtual":
        _virtual(bad, other, name="userdef2")
        linked = other
    else:  # an alias inside events: the same file's own data, read under the alias
        with h5py.File(bad, "a") as h5:
            h5["events/userdef2"] = h5py.SoftLink("/events/deform")
        linked = None
    report = convert_archive([bad], tmp_path / "dst", client=client, follow_external=True)
    assert report.ok, report.failed
    out = tmp_path / "dst" / "bad.rtdc"
    with h5py.File(out) as h5o, h5py.File(bad) as h5s:
        want = (h5py.File(linked)["events/area_um"][:] if linked
                else h5s["events/deform"][:])
        np.testing.assert_array_equal(h5o["events/userdef2"][:], want)
        np.testing.assert_array_equal(h5o["events/area_um"][:], h5s["events/area_um"][:])
        assert not np.array_equal(h5o["events/userdef2"][:], h5s["events/area_um"][:])
        assert isinstance(h5o.get("events/userdef2", getlink=True), h5py.HardLink)
    verdict = dcbulk.verify(tmp_path / "dst", client=client)
    assert verdict.ok, verdict.problems
    # tampering with the shown feature is seen: verify compares by the shown name
    with h5py.File(out, "a") as h5o:
        h5o["events/userdef2"][0] = -1.0
    verdict = dcbulk.verify(tmp_path / "dst", client=client)
    assert any("'userdef2'" in p for p in verdict.problems), verdict.problems


# -- defect 3: a nested group under events is kept, and verify reports its loss ------------
def test_a_nested_group_under_events_is_kept_and_its_loss_is_reported(archive, tmp_path,
                                                                      client):
    src, good, bad, other = archive
    values = np.arange(N * 3, dtype="i4").reshape(N, 3)
    with h5py.File(bad, "a") as h5:
        h5.create_dataset("events/extra/deeper/values", data=values)
        h5.create_dataset("events/trace/sub/raw", data=values[:, :2].astype("i2"))
    report = convert_archive([bad], tmp_path / "dst", client=client)
    assert report.ok, report.failed
    out = tmp_path / "dst" / "bad.rtdc"
    with h5py.File(out) as h5o:
        np.testing.assert_array_equal(h5o["events/extra/deeper/values"][:], values)
        np.testing.assert_array_equal(h5o["events/trace/sub/raw"][:], values[:, :2])
    assert dcbulk.verify(tmp_path / "dst", client=client).ok
    with h5py.File(out, "a") as h5o:
        del h5o["events/extra/deeper"]
    problems = dcbulk.verify(out, bad, client=client).problems
    assert any("'extra/deeper/values' is missing" in p for p in problems), problems


def test_a_nested_group_that_is_not_per_event_data_fails_its_file_with_one_line(
        archive, tmp_path, client):
    src, good, bad, other = archive
    with h5py.File(bad, "a") as h5:
        h5.create_dataset("events/extra/table", data=np.arange(7))
    report = convert_archive([src], tmp_path / "dst", client=client)
    failed = {Path(f.source).name: f for f in report.files}["bad.rtdc"]
    assert failed.status == "failed" and "extra/table" in failed.error, failed.error


def test_a_cycle_of_links_under_events_is_refused(archive, tmp_path, client):
    src, good, bad, other = archive
    with h5py.File(bad, "a") as h5:
        h5.create_group("events/extra")
        h5["events/extra/loop"] = h5py.SoftLink("/events/extra")
    report = convert_archive([bad], tmp_path / "dst", client=client, follow_external=True)
    assert report.files[0].status == "failed" and "cycle" in report.files[0].error


# -- defect 9: info never prints a traceback ----------------------------------------------
def _bad_basin_json(path: Path) -> None:
    with h5py.File(path, "a") as h5:
        h5.create_dataset("basins/0123abcd", data=np.array([b"{not json"]))


def test_info_prints_one_line_per_bad_file_and_no_traceback(archive, capsys):
    src, good, bad, other = archive
    _bad_basin_json(bad)
    (src / "junk.rtdc").write_bytes(b"not hdf5 at all")
    assert main(["info", str(bad)]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "basins/0123abcd" in err[0], err
    assert main(["info", str(src)]) == EXIT_FAILED_FILES
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 3, lines
    assert any(line.startswith(f"{bad}: ") and "not readable JSON" in line for line in lines)
    assert any(line.startswith(f"{src / 'junk.rtdc'}: ") for line in lines)
    assert any(line.startswith(f"{good}: {N} events") for line in lines)
    assert main(["info", str(good)]) == EXIT_OK


# -- defect 11: memory bounded by what a file holds --------------------------------------
#: the whole process tree of a small ``dcbulk convert`` (client, scheduler, 2 workers) stays
#: well below this; the hostile files drove it to 1.75-2.2 GB
TREE_LIMIT = 1200 * 1024**2


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _run_measured(args: list[str], limit: int = TREE_LIMIT, timeout: float = 240
                  ) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``dcbulk`` in a subprocess; return it and the peak RSS of its process tree.

    A tree above ``limit`` is killed at once (the test then fails on the peak).
    """
    proc = subprocess.Popen([sys.executable, "-m", "dcbulk.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    peak, stop = 0, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < stop:
        try:
            peak = max(peak, _tree_rss(ps))
        except psutil.Error:
            pass
        if peak > limit:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        for child in ps.children(recursive=True):
            child.kill()
        proc.kill()
    out, err = proc.communicate()
    print(f"peak RSS of the process tree: {peak / 2**20:.0f} MiB")  # figures for the README
    return subprocess.CompletedProcess(args, proc.returncode, out, err), peak


def _declared_images(path: Path) -> None:
    """An 8 KB file declaring 10^9 images whose chunks were never written."""
    with h5py.File(path, "w") as h5:
        h5.attrs["experiment:event count"] = 10**9
        h5.create_dataset("events/image", shape=(10**9, 80, 250), dtype="u1",
                          chunks=(52, 80, 250), compression="gzip")
        h5.create_dataset("events/deform", shape=(10**9,), dtype="f8", chunks=(1000,),
                          compression="gzip")


def test_a_file_declaring_1e9_unwritten_images_is_refused_in_bounded_memory(archive,
                                                                            tmp_path):
    src, good, bad, other = archive
    _declared_images(bad)
    assert bad.stat().st_size < 64 * 1024
    run, peak = _run_measured(["convert", str(src), "-o", str(tmp_path / "dst"), "-q",
                               "--workers", "2"])
    assert peak < TREE_LIMIT, f"process tree peaked at {peak / 2**20:.0f} MiB"
    assert run.returncode == EXIT_FAILED_FILES, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "FAILED" in ln and "bad.rtdc" in ln)
    assert "declares" in line and "stores only 0" in line and "events/" in line, line
    assert (tmp_path / "dst" / "good.rtdc").exists()


def test_info_refuses_declared_data_before_reading_it(archive):
    src, good, bad, other = archive
    _declared_images(bad)
    from dcbulk.read.layout import file_summary
    line, ok = file_summary(bad)
    assert not ok and "declares" in line, line


def _huge_contour(path: Path, points: int = 2 * 10**8) -> None:
    """Event 0's contour: ``points`` points, every chunk written (zeros, gzip)."""
    chunk = (2**19, 2)
    zeros = np.zeros(chunk, dtype="i2")
    with h5py.File(path, "a") as h5:
        group = h5.require_group("events/contour")
        for i in range(N):
            group.create_dataset(str(i), data=np.array([[1, 2], [3, 4]], dtype="i2"))
        del group["0"]
        dset = group.create_dataset("0", shape=(points, 2), dtype="i2", chunks=chunk,
                                    compression="gzip")
        import zlib
        raw = zlib.compress(zeros.tobytes())
        for start in range(0, points, chunk[0]):
            dset.id.write_direct_chunk((start, 0), raw)


def test_a_contour_of_2e8_points_fails_its_file_in_bounded_memory(archive, tmp_path):
    src, good, bad, other = archive
    _huge_contour(bad)
    assert bad.stat().st_size < 16 * 1024**2
    run, peak = _run_measured(["convert", str(src), "-o", str(tmp_path / "dst"), "-q",
                               "--workers", "2"])
    assert peak < TREE_LIMIT, f"process tree peaked at {peak / 2**20:.0f} MiB"
    assert run.returncode == EXIT_FAILED_FILES, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "FAILED" in ln and "bad.rtdc" in ln)
    assert "events/contour/0" in line and "limit" in line, line


def test_a_variable_length_log_with_one_long_line_stays_compact(archive, tmp_path):
    src, good, bad, other = archive
    lines = [f"line {i}" for i in range(400)]
    lines[200] = "x" * (2 * 1024**2)
    with h5py.File(bad, "a") as h5:
        h5["logs"].create_dataset("long", data=lines, dtype=h5py.string_dtype())
        h5["logs"].create_dataset("short", data=lines[:200], dtype=h5py.string_dtype())
    run, peak = _run_measured(["convert", str(bad), "-o", str(tmp_path / "dst"), "-q",
                               "--workers", "2", "--verify"])
    assert peak < TREE_LIMIT, f"process tree peaked at {peak / 2**20:.0f} MiB"
    assert run.returncode == EXIT_OK, run.stdout + run.stderr
    out = tmp_path / "dst" / "bad.rtdc"
    assert out.stat().st_size < 2 * bad.stat().st_size
    with h5py.File(out) as h5:
        log = h5["logs/long"]
        assert log.dtype.kind == "O"  # variable-length, as in the source
        assert [ln.decode() for ln in log[:]] == lines
        assert h5["logs/short"].dtype == np.dtype("S8")  # dcnum's fixed width where it pays
    import dclab
    with dclab.new_dataset(out) as ds:
        assert ds.logs["long"][200] == lines[200]


def test_a_file_basin_outside_the_archive_tree_is_kept_with_one_warning(archive, tmp_path,
                                                                        client, caplog):
    src, good, bad, other = archive
    with dcbulk.write.HDF5Writer(bad, mode="a") as hw:
        hw.store_basin(name="original", paths=[str(other)], features=["area_um"])
    with caplog.at_level("WARNING", logger="dcbulk"):
        report = convert_archive([src], tmp_path / "dst", client=client)
    assert report.ok, report.failed
    lines = [r.getMessage() for r in caplog.records if "outside the archive tree" in
             r.getMessage()]
    assert len(lines) == 1 and str(bad) in lines[0] and str(other) in lines[0], lines
    with h5py.File(tmp_path / "dst" / "bad.rtdc") as h5:
        assert len(h5["basins"]) == 1  # kept


def test_a_file_basin_in_the_tree_that_the_run_does_not_convert_is_named(archive, tmp_path,
                                                                         client, caplog):
    """A basin file inside the archive tree that the run does not convert (another suffix,
    or left out by ``--include`` or a glob) went without a word: the output reached its
    features there, so deleting the originals lost them. It is one warning line; a basin
    file the run converts too is not named."""
    src, good, bad, other = archive
    target = src / "target.h5"
    target.write_bytes(good.read_bytes())
    with dcbulk.write.HDF5Writer(bad, mode="a") as hw:
        hw.store_basin(name="t", paths=[str(target)], features=["area_um"])
        hw.store_basin(name="g", paths=[str(good)], features=["area_um"])
    with caplog.at_level("WARNING", logger="dcbulk"):
        report = convert_archive([src], tmp_path / "dst", client=client)
    assert report.ok, report.failed
    lines = [r.getMessage() for r in caplog.records if "file basin" in r.getMessage()]
    assert lines == [f"{bad}: file basin {target} is not one of this run's sources; the output "
                     f"reaches its features there (keep it, or convert it too)"], lines


def test_an_all_nan_feature_is_converted_and_verified_without_numpy_warnings(tmp_path, capsys):
    """A scalar feature whose every value is NaN printed numpy's 'All-NaN slice encountered'
    and 'Mean of empty slice' warnings (four lines naming dcbulk's source) on the terminal of
    convert, split and verify; its statistics are NaN, silently."""
    src = small_rtdc(tmp_path / "src" / "n.rtdc", 20, seed=4)
    with h5py.File(src, "a") as h5:
        h5["events/area_um"][:] = np.nan
        for key in ("min", "max", "mean"):
            h5["events/area_um"].attrs.pop(key, None)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # (filtered: the statistics are computed from the output's rows)
        assert main(["convert", str(src.parent), "-o", str(tmp_path / "dst"), "-q",
                     "--filter", "deform > 0"]) == EXIT_OK
        assert main(["verify", "-q", str(tmp_path / "dst")]) == EXIT_OK
    assert "RuntimeWarning" not in capsys.readouterr().err
    with h5py.File(tmp_path / "dst" / "n.rtdc") as h5:
        attrs = h5["events/area_um"].attrs
        assert all(np.isnan(attrs[key]) for key in ("min", "max", "mean"))


def test_a_basin_that_the_source_cannot_resolve_either_is_said_so(tmp_path, capsys):
    """A source whose file basin resolves nowhere was copied faithfully, and verify then
    said 'does not resolve' as if the copy had broken it; the line now says the source's
    does not resolve either (a basin to a file that is gone is still worth a line)."""
    src = small_rtdc(tmp_path / "src" / "b.rtdc", 20, seed=5)
    other = small_rtdc(tmp_path / "other" / "o.rtdc", 20, seed=5)
    with dcbulk.write.HDF5Writer(src, mode="a") as hw:
        hw.store_basin(name="gone", paths=[str(tmp_path / "nowhere.rtdc")],
                       features=["area_um"])
        hw.store_basin(name="there", paths=[str(other)], features=["area_um"])
    assert main(["convert", str(src.parent), "-o", str(tmp_path / "dst"), "-q"]) == EXIT_OK
    capsys.readouterr()
    assert main(["verify", "-q", str(tmp_path / "dst")]) == EXIT_FAILED_FILES
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "basin" in ln]
    assert len(lines) == 1 and "basin 'gone' does not resolve" in lines[0] and lines[0].endswith(
        "; the source's does not resolve either"), lines
    other.rename(other.with_name("moved.rtdc"))  # now the source's 'there' is broken too
    assert main(["verify", "-q", str(tmp_path / "dst")]) == EXIT_FAILED_FILES
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "basin 'there'" in ln]
    assert len(lines) == 1 and lines[0].endswith("either"), lines
    other.with_name("moved.rtdc").rename(other)
    with h5py.File(tmp_path / "dst" / "b.rtdc", "a") as h5:  # only the output's paths broken
        for key in list(h5["basins"]):  # (stored under the MD5 of the text, as the writer)
            lines = [ln.replace(str(other).encode(), b"/x.rtdc").replace(b"../other/o.rtdc",
                                                                           b"x.rtdc")
                     for ln in h5["basins"][key][:]]
            del h5["basins"][key]
            store_basin_text(h5["basins"], hashlib.md5(b"\n".join(lines)).hexdigest(),
                             b"\n".join(lines).decode(), set_default_filter_kwargs())
    assert main(["verify", "-q", str(tmp_path / "dst")]) == EXIT_FAILED_FILES
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "basin 'there'" in ln]
    assert len(lines) == 1 and lines[0].endswith("])"), lines
