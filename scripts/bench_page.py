#!/usr/bin/env python
"""What the dcbulk dashboard page costs a run: CPU seconds of dcbulk's own process (client and
the in-process scheduler; the workers are other processes) converting an archive of tiny
files, without the page, with it (state fed, nobody looking) and with it open in headless
Chromium for the whole run.

    python scripts/bench_page.py --dir /tmp/page-bench --files 1000
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
from distributed import Client

from dcbulk.bulk import convert_archive
from dcbulk.engine.client import make_local_cluster
from dcbulk.monitor import RunState, dashboard_page, live_page, observers
from dcbulk.monitor.chromium import FLAGS, find_chromium
from dcbulk.synth import make_archive


def _cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


@contextlib.contextmanager
def _viewer(url: str):
    """Headless Chromium showing ``url`` (its websocket open) until the block ends."""
    exe = find_chromium()
    if exe is None:
        raise SystemExit("chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}",
                                 "--remote-debugging-port=0", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # the page loads and opens its websocket
            yield
        finally:
            proc.terminate()
            proc.wait(30)


def run(archive: str, out: str, mode: str, workers: int) -> tuple[float, float, int]:
    """CPU seconds of this process and wall seconds of one conversion, and files done."""
    shutil.rmtree(out, ignore_errors=True)
    page = dashboard_page() if mode != "without" else contextlib.nullcontext()
    with page:
        cluster = make_local_cluster(n_workers=workers, threads_per_worker=1)
    try:
        with Client(cluster) as client:
            state = RunState(total_files=0)
            monitor = (live_page(state, client, cluster) if mode != "without"
                       else contextlib.nullcontext())
            with monitor as url:
                viewer = _viewer(url) if mode == "viewed" else contextlib.nullcontext()
                with viewer:
                    cpu0, t0 = _cpu(), time.perf_counter()
                    report = convert_archive([archive], out, client=client,
                                             progress=observers(state if url else None))
                    cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
    finally:
        cluster.close()
    return cpu, wall, report.count("done")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "dcbulk-page-bench"))
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    ns = p.parse_args(argv)
    archive = os.path.join(ns.dir, "archive")
    if not os.path.isdir(archive):
        make_archive(archive, ns.files, events=10, seed=3, compression="none",
                     image_shape=(30, 40), with_traces=False)
    print(f"load: {os.getloadavg()}")
    for mode in ("without", "with", "viewed", "without"):
        cpu, wall, done = run(archive, os.path.join(ns.dir, "out"), mode, ns.workers)
        print(f"{mode:8s}: {done} files, dcbulk process {cpu:6.1f} CPU s, wall {wall:6.1f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
