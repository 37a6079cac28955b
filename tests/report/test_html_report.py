"""The offline HTML report (``--html-report``) and dask's performance report, rendered in real
headless Chromium with no network: plots drawn, every file in the table; also for runs with
failures and an interrupted run. Size for 100 000 files without converting them."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from dcbulk.cli import EXIT_FAILED_FILES, EXIT_INTERRUPTED, EXIT_OK, main
from dcbulk.monitor import RunState
from dcbulk.monitor.chromium import DRAWN, render
from dcbulk.monitor.report_html import TABLE_ROWS, render_html_report

from fixtures import synthetic_archive

#: plots of the report: throughput, file size, ratio, time per file
REPORT_PLOTS = 4


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return synthetic_archive(tmp_path_factory.mktemp("report-archive"), 6, events=(100, 400),
                             seed=6, bad_files=2)


def _synthetic_state(n: int) -> RunState:
    now = [0.0]
    state = RunState(total_files=n, total_bytes=n * 10**7, clock=lambda: now[0],
                     options={"compression": "zstd:5"}, manifest="/out/dcbulk-manifest.jsonl")
    for i in range(n):
        now[0] += 0.05
        failed = i % 101 == 0
        state(SimpleNamespace(
            source=f"/data/archive/run-{i:06d}.rtdc", output=f"/out/run-{i:06d}.rtdc",
            status="failed" if failed else "done", bytes_in=10**5 + (i * 7919) % 10**8,
            bytes_out=0 if failed else 10**6, raw_bytes=0 if failed else 4 * 10**6,
            ratio=None if failed else 2 + (i % 400) / 100, seconds=0.1 + (i % 300) / 10,
            error="NotHDF5Error: not a readable\nHDF5 file" if failed else None), i + 1, n)
    state.json_report = "/out/report.json"
    state.end("finished")
    return state


def test_report_of_100000_files_stays_small():
    small = render_html_report(_synthetic_state(10))
    big = render_html_report(_synthetic_state(100_000))
    assert len(big.encode()) < 2_000_000, len(big.encode())
    assert len(big.encode()) - len(small.encode()) < 600_000  # plots aggregated, table capped
    assert big.count("<tr class='file-row") == TABLE_ROWS
    assert big.count("<tr class='file-row failed'>") == 991  # failures first: all 991 here
    assert f"{TABLE_ROWS} of 100000 settled files listed" in big
    assert "/out/report.json" in big and "/out/dcbulk-manifest.jsonl" in big
    assert "99009 done, 0 skipped, 991 failed, 0 remaining of 100000" in big
    for html in (small, big):  # nothing to fetch: no script or stylesheet from elsewhere
        assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?https?:", html)


def test_report_of_a_run_where_every_file_failed_is_drawn_without_warnings(tmp_path, capsys,
                                                                           caplog):
    """Every file failed: each plot had no renderer, and Bokeh printed a W-1000
    (MISSING_RENDERERS) warning line per plot on the terminal."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.rtdc").write_bytes(b"not HDF5")
    assert main(["convert", str(tmp_path / "bad"), "-o", str(tmp_path / "o"), "-q",
                 "--html-report", str(tmp_path / "r.html")]) == EXIT_FAILED_FILES
    err = capsys.readouterr().err + caplog.text  # Bokeh's lines are logging's
    assert "MISSING_RENDERERS" not in err and "W-1000" not in err, err
    assert "0 done, 0 skipped, 1 failed" in (tmp_path / "r.html").read_text()


def _check_rendered(path, *, files: int, must_show: list[str], png) -> dict:
    seen = render(path.as_uri(), until=f"{DRAWN} >= {REPORT_PLOTS}", screenshot=str(png))
    assert seen["ready"], f"the plots were not drawn offline: {seen}"
    assert seen["drawn"] >= REPORT_PLOTS
    assert seen["file_rows"] == files
    for text in must_show:
        assert text in seen["text"]
    _assert_png_not_blank(png)
    return seen


def _assert_png_not_blank(png) -> None:
    import zlib
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # decompress the image data: a blank page is one colour, which compresses to almost nothing
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    assert len(set(raw[::97])) > 8, "the screenshot is blank"
    assert len(data) > 20_000


@pytest.mark.browser
def test_html_report_of_a_run_with_failures_opens_offline(chromium, archive, tmp_path, capsys):
    root, good = archive
    html = tmp_path / "run.html"
    status = main(["convert", str(root), "-o", str(tmp_path / "out"), "--workers", "2",
                   "--html-report", str(html), "--report", str(tmp_path / "r.json")])
    assert status == EXIT_FAILED_FILES
    capsys.readouterr()
    seen = _check_rendered(html, files=len(good) + 2, png=tmp_path / "run.png", must_show=[
        f"{len(good)} done, 0 skipped, 2 failed, 0 remaining of {len(good) + 2}",
        "NotHDF5Error", "B001_broken-truncated.rtdc", "zstd:5", "dcbulk-manifest.jsonl"])
    assert "finished" in seen["text"]
    # resumed: every file skipped, the report says so
    assert main(["convert", str(root), "-o", str(tmp_path / "out"), "--workers", "2",
                 "--html-report", str(html)]) == EXIT_FAILED_FILES
    capsys.readouterr()
    seen = render(html.as_uri(), until=f"{DRAWN} >= 1")
    assert f"0 done, {len(good)} skipped, 2 failed" in seen["text"]
    assert seen["file_rows"] == len(good) + 2


@pytest.mark.browser
def test_html_report_of_an_interrupted_run(chromium, tmp_path):
    root, good = synthetic_archive(tmp_path / "arch", 8, events=(400, 900), seed=9)
    dst, html = tmp_path / "out", tmp_path / "int.html"
    cmd = [sys.executable, "-m", "dcbulk.cli", "convert", str(root), "-o", str(dst),
           "--workers", "1", "--max-open-outputs", "1", "--quiet", "--html-report", str(html)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    try:
        while (len(list(dst.rglob("*.rtdc"))) < 2 and time.monotonic() < deadline
               and proc.poll() is None):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(120) == EXIT_INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = len(list(dst.rglob("*.rtdc")))
    assert 2 <= done < len(good)
    seen = render(html.as_uri(), until=f"{DRAWN} >= {REPORT_PLOTS}",
                  screenshot=str(tmp_path / "int.png"))
    assert seen["ready"] and seen["drawn"] >= REPORT_PLOTS
    assert "interrupted" in seen["text"]
    # with one output open at a time, the first was recorded before the second was begun
    assert 1 <= seen["file_rows"] <= done
    assert f"{len(good) - seen['file_rows']} files did not settle" in seen["text"]
    _assert_png_not_blank(tmp_path / "int.png")


@pytest.mark.browser
def test_performance_report_opens_offline(chromium, archive, tmp_path, capsys):
    root, good = archive
    perf = tmp_path / "perf.html"
    assert main(["convert", *map(str, good), "-o", str(tmp_path / "out"), "--workers", "2",
                 "--quiet", "--performance-report", str(perf)]) == EXIT_OK
    capsys.readouterr()
    seen = render(perf.as_uri(), until=f"{DRAWN} >= 3", screenshot=str(tmp_path / "perf.png"))
    assert seen["ready"], f"dask's performance report draws nothing offline: {seen}"
    _assert_png_not_blank(tmp_path / "perf.png")


@pytest.mark.browser
def test_demo_writes_an_html_report(chromium, tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--files", "3", "--events", "60",
                 "--workers", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    html = tmp_path / "demo" / "report.html"
    assert f"HTML report: {html}" in out
    seen = render(html.as_uri(), until=f"{DRAWN} >= {REPORT_PLOTS}")
    assert seen["ready"] and seen["file_rows"] == 3
    assert "3 done, 0 skipped, 0 failed, 0 remaining of 3" in seen["text"]
