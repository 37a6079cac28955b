#!/usr/bin/env python
"""The README's pictures: the dcbulk dashboard page during a run and the HTML report after it,
taken with headless Chromium (``dcbulk.monitor.chromium``) on a synthetic archive with two
broken files.

    python scripts/screenshots.py            # writes docs/dashboard.png and docs/report.png
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from distributed import Client

from dcbulk.bulk import convert_archive
from dcbulk.engine.client import make_local_cluster
from dcbulk.monitor import RunState, dashboard_page, live_page
from dcbulk.monitor.chromium import DRAWN, render
from dcbulk.monitor.report_html import write_html_report
from dcbulk.synth import make_archive

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DOCS, help="directory of the PNGs [docs/]")
    p.add_argument("--files", type=int, default=24)
    ns = p.parse_args(argv)
    ns.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dcbulk-shots-") as tmp:
        root = Path(tmp) / "archive"
        good = make_archive(root, ns.files, events=(200, 1500), seed=5, compression="none",
                            bad_files=2)
        with dashboard_page():
            cluster = make_local_cluster(n_workers=2, threads_per_worker=1)
        try:
            with Client(cluster) as client:
                state = RunState(total_files=len(good) + 2,
                                 total_bytes=sum(os.path.getsize(f) for f in root.rglob("*.rtdc")),
                                 options={"sources": [str(root)], "compression": "zstd:5"},
                                 manifest=str(Path(tmp) / "out" / "dcbulk-manifest.jsonl"),
                                 outputs=[f.output for f in convert_archive(
                                     [root], Path(tmp) / "out", dry_run=True).files])
                with live_page(state, client, cluster) as url:
                    run = threading.Thread(target=convert_archive, args=([root], Path(tmp) / "out"),
                                           kwargs={"client": client, "progress": state,
                                                   "max_open_outputs": 4})
                    run.start()
                    # the broken files are the smallest, so they come last: shoot at the
                    # first failure, while the last good files are still in flight
                    while not state.counts["failed"] and run.is_alive():
                        time.sleep(0.05)
                    seen = render(url, until=f"{DRAWN} >= 1", width=1100, height=900,
                                  full_page=False, screenshot=str(ns.out / "dashboard.png"))
                    print(f"dashboard page: {url}: {seen['drawn']} plot(s) drawn")
                    run.join()
        finally:
            cluster.close()
        state.end("finished")
        report = write_html_report(state, Path(tmp) / "report.html")
        seen = render(Path(report).as_uri(), until=f"{DRAWN} >= 4", width=1100, height=1300,
                      full_page=False, screenshot=str(ns.out / "report.png"))
        print(f"HTML report: {seen['drawn']} plots drawn, {seen['file_rows']} table rows")
    print(f"wrote {ns.out / 'dashboard.png'} and {ns.out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
