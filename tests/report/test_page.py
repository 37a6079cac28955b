"""The live dcbulk page in dask's dashboard: registered, listed, served over HTTP while a real
conversion runs on a LocalCluster, and its numbers equal to the run's report."""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

import dcbulk
from dcbulk.bulk import convert_archive
from dcbulk.cli import EXIT_FAILED_FILES, main
from dcbulk.monitor import (ROUTE, RunState, dashboard_page, live_page, observers, page_doc,
                            page_url)

from fixtures import synthetic_archive


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


def _json(url: str) -> dict:
    return json.loads(_get(url)[1])


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return synthetic_archive(tmp_path_factory.mktemp("page-archive"), 8, events=(200, 800),
                             seed=4, bad_files=2)


def test_state_counts_bytes_and_fan_out():
    from types import SimpleNamespace as R
    now = [100.0]
    state = RunState(total_files=4, total_bytes=1000, clock=lambda: now[0])
    seen = []
    progress = observers(None, state, lambda r, d, t: seen.append((r.status, d, t)))
    now[0] = 102.0
    progress(R(source="a", status="done", bytes_in=300, bytes_out=100, raw_bytes=600), 1, 4)
    progress(R(source="b", status="skipped", bytes_in=200), 2, 4)
    progress(R(source="c", status="failed", bytes_in=100, error="OSError: bad\nsecond"), 3, 4)
    snap = state.snapshot()
    assert seen == [("done", 1, 4), ("skipped", 2, 4), ("failed", 3, 4)]
    assert snap["counts"] == {"done": 1, "skipped": 1, "failed": 1}
    assert snap["remaining"] == 1
    assert (snap["bytes_in"], snap["bytes_out"], snap["ratio"]) == (300, 100, 6.0)
    assert snap["bytes_left"] == 1000 - 200 - 300 - 100
    assert snap["rate_bytes_per_second"] == 150.0  # 300 bytes in 2 s
    assert snap["eta_seconds"] == pytest.approx(400 / 150)
    assert snap["failures"] == [{"source": "c", "error": "OSError: bad second"}]
    assert sum(snap["throughput"]["mb_per_second"]) == pytest.approx(300 / 1e6)
    state.end("interrupted")
    assert state.snapshot()["eta_seconds"] is None
    assert observers(None, None) is None


def test_file_tasks_are_named_by_their_outputs():
    """The page names in-flight tasks of the executor and verify by their output's name
    (both name them with dcbulk.taskkey.file_key; verify's index carries its call's token)."""
    from dcbulk.bulk.executor import file_key
    out = "/data/out/2024/M001_data.rtdc"
    state = RunState(outputs=[out])
    for key in (file_key(out, 7), file_key(out, "0a1b2c3d3")):
        assert state.names[key.rpartition("-")[0]] == "M001_data.rtdc"


def test_page_url_next_to_the_dashboard():
    assert page_url("http://node:8787/status") == "http://node:8787" + ROUTE
    assert page_url("http://node:8787/proxy/x/") == "http://node:8787/proxy/x" + ROUTE
    assert page_url(None) is None


def test_page_served_while_files_are_in_flight_and_after(archive, tmp_path):
    from bokeh.document import Document
    from bokeh.models import Div
    from distributed import Client

    from dcbulk.engine.client import make_local_cluster
    root, good = archive
    with dashboard_page():
        cluster = make_local_cluster(n_workers=2, threads_per_worker=1)
    try:
        with Client(cluster) as client:
            planned = convert_archive([root], tmp_path / "out", dry_run=True)
            state = RunState(total_files=len(good) + 2,
                             outputs=[f.output for f in planned.files])
            with live_page(state, client, cluster) as url:
                assert url == page_url(client.dashboard_link)
                base = url[:-len(ROUTE)]
                listed = _json(base + "/individual-plots.json")
                assert ROUTE in listed.values()
                assert any("Dcbulk" in name for name in listed)
                status, body = _get(url)  # the Bokeh app's page
                assert status == 200 and b"dcbulk" in body and b"bokeh" in body.lower()
                before = _json(base + "/dcbulk/run.json")
                assert before["counts"] == {"done": 0, "skipped": 0, "failed": 0}
                assert before["remaining"] == len(good) + 2

                result: dict = {}

                def run() -> None:
                    result["report"] = convert_archive(
                        [root], tmp_path / "out", client=client, max_open_outputs=3,
                        inline_bytes=0, progress=observers(state))

                worker = threading.Thread(target=run)
                worker.start()
                during = []
                while worker.is_alive():
                    snap = _json(base + "/dcbulk/run.json")
                    if snap["in_flight"]:
                        during.append(snap)
                    time.sleep(0.02)
                worker.join()
                report = result["report"]
                after = _json(base + "/dcbulk/run.json")

                # while running: files in flight, named as the archive's files
                assert during, "no snapshot saw a file in flight"
                names = {p.name for p in good} | {p.name for p in root.rglob("*.rtdc")}
                for snap in during:
                    assert {f["file"] for f in snap["in_flight"]} <= names
                    assert all(f["worker"].startswith("tcp://") for f in snap["in_flight"])
                    settled = sum(snap["counts"].values())
                    assert settled + snap["remaining"] == len(good) + 2
                    assert settled < len(good) + 2
                # after: the numbers of the run's report
                doc = report.to_dict()
                assert after["in_flight"] == []
                assert after["remaining"] == 0
                assert after["counts"] == {s: doc["counts"][s]
                                           for s in ("done", "skipped", "failed")}
                assert after["counts"]["done"] == len(good)
                assert after["counts"]["failed"] == 2
                assert after["bytes_in"] == doc["bytes_in"] > 0
                assert after["bytes_out"] == doc["bytes_out"] > 0
                assert sorted(f["source"] for f in after["failures"]) == sorted(
                    f.source for f in report.failed)
                assert all("\n" not in f["error"] and f["error"] for f in after["failures"])

                # the Bokeh document shows the same numbers (built on the scheduler's loop)
                document = Document()

                async def build() -> None:
                    page_doc(cluster.scheduler, {}, document)
                client.sync(build)
                text = " ".join(m.text for m in document.select({"type": Div}))
                assert f"{len(good)} done, 0 skipped, 2 failed, 0 remaining" in text

            # verify reports to the page the same way: one settled verdict per output
            # (the two failed sources have no output: one line each, nothing read)
            vstate = RunState(command="verify", total_files=len(good) + 2,
                              outputs=[f.output for f in report.files])
            with live_page(vstate, client, cluster):
                verdicts = dcbulk.verify(tmp_path / "out", client=client, progress=vstate)
                snap = _json(base + "/dcbulk/run.json")
            assert len(verdicts.files) == len(good) + 2
            assert sorted(f.source for f in verdicts.failed) == sorted(
                f.source for f in report.failed)
            assert all("has no output here: it failed" in f.problems[0]
                       for f in verdicts.failed)
            assert (snap["command"], snap["remaining"]) == ("verify", 0)
            assert snap["counts"] == {"done": len(good), "skipped": 0, "failed": 2}
            assert snap["bytes_in"] == sum(os.path.getsize(f.output) + os.path.getsize(f.source)
                                           for f in verdicts.files
                                           if f.status == "done")  # what the checks read
            # the plugin leaves with the block
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(base + "/dcbulk/run.json")
            assert err.value.code == 404
    finally:
        cluster.close()


def test_page_on_a_dask_jobqueue_cluster(tmp_path):
    """dask-jobqueue clusters run their scheduler in dcbulk's process: the page is there."""
    from dcbulk.cluster.config import jobqueue
    jobqueue()  # as dcbulk imports it: Python's SIGINT handler stays, for the other tests
    from dask_jobqueue.local import LocalCluster as JobQueueLocal
    from distributed import Client
    with dashboard_page():
        cluster = JobQueueLocal(cores=1, processes=1, memory="1GiB",
                                log_directory=str(tmp_path / "logs"))
    try:
        with Client(cluster) as client:
            state = RunState(command="condense", total_files=3)
            with live_page(state, client, cluster) as url:
                assert url is not None
                snap = _json(url[:-len(ROUTE)] + "/dcbulk/run.json")
                assert (snap["command"], snap["remaining"]) == ("condense", 3)
    finally:
        cluster.close()


def test_foreign_scheduler_gets_one_line_and_the_run_goes_on(client, archive, tmp_path,
                                                              capsys):
    root, good = archive
    report = tmp_path / "r.json"
    status = main(["convert", str(root), "-o", str(tmp_path / "out"), "--scheduler",
                   client.scheduler.address, "--report", str(report)])
    assert status == EXIT_FAILED_FILES
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "dcbulk dashboard page is not available" in ln]
    assert len(lines) == 1 and "does not own" in lines[0]
    doc = json.loads(report.read_text())
    assert doc["page"] is None and doc["counts"]["done"] == len(good)


def test_cli_names_the_page(archive, tmp_path, capsys):
    root, good = archive
    report = tmp_path / "r.json"
    status = main(["convert", str(root), "-o", str(tmp_path / "out"), "--workers", "2",
                   "--report", str(report)])
    assert status == EXIT_FAILED_FILES
    text = capsys.readouterr()
    page = json.loads(report.read_text())["page"]
    assert page.startswith("http://") and page.endswith(ROUTE)
    assert f"dcbulk page: {page}" in text.err
    assert f"; page: {page}; log: " in text.out
    vreport = tmp_path / "v.json"
    assert main(["verify", str(tmp_path / "out"), "--workers", "2", "--report",
                 str(vreport)]) == EXIT_FAILED_FILES  # the two failed sources: no output
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    doc = json.loads(vreport.read_text())
    assert doc["counts"]["equal"] == len(good) and doc["counts"]["mismatched"] == 2
    assert doc["page"].endswith(ROUTE)
    assert summary.endswith(f"; page: {doc['page']}")
