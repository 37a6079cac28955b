#!/usr/bin/env python
"""Benchmark ``dcbulk process`` against the serial loop of dcnum jobs (not a test).

An archive of N synthetic measurements (``dcbulk.synth``, cells dcnum's ``thresh`` segmenter
finds) is processed twice with dcnum's default pipeline: by the loop a user writes today
(one ``DCNumPipelineJob`` after the other in one process, ``num_procs`` = the cores) and by
the whole ``dcbulk process`` command (cluster start included). ``chipstream-cli -r`` is
timed too when it is on PATH. The outputs are compared feature by feature, then the closing
note gives events per second and what a 100-node SLURM run of 10 000 such measurements
would take at that rate (nodes like this machine, one job per node at a time).

    python scripts/bench_process.py [--files 8] [--events 1000] [--dir /tmp/bench-process]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (reading dcnum's zstd outputs)
import numpy as np


def _serial(sources: list[Path], src_root: Path, dst: Path, basin: str) -> tuple[float, int]:
    from dcnum.logic import DCNumJobRunner, DCNumPipelineJob
    events = 0
    t0 = time.perf_counter()
    for src in sources:
        out = dst / src.relative_to(src_root).with_name(src.stem + "_dcn.rtdc")
        job = DCNumPipelineJob(path_in=src, path_out=out, num_procs=os.cpu_count() or 1,
                               basin_strategy=basin)
        with DCNumJobRunner(job) as runner:
            runner.run()
        with h5py.File(out, "r") as h5:
            events += int(h5.attrs["experiment:event count"])
    return time.perf_counter() - t0, events


def _same(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        if sorted(ha["events"]) != sorted(hb["events"]):
            return False
        return all(np.array_equal(ha["events"][k][:], hb["events"][k][:]) for k in ha["events"])


def _load() -> str:
    return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--basin-strategy", default="drain", choices=("drain", "tap"))
    parser.add_argument("--dir", default="/tmp/dcbulk-bench-process")
    parser.add_argument("--workers", type=int, default=None,
                        help="dcbulk's local workers (default: process's own shape, one "
                             "worker with every core as a thread)")
    ns = parser.parse_args(argv)
    from dcbulk.synth import make_rtdc
    root = Path(ns.dir)
    shutil.rmtree(root, ignore_errors=True)
    src = root / "archive"
    sources = []
    for k in range(ns.files):
        path = src / f"day{k % 2}" / f"M{k:03d}_data.rtdc"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_rtdc(path, ns.events, seed=100 + k)
        sources.append(path)
    print(f"{ns.files} measurements x {ns.events} events, {os.cpu_count()} cores; "
          f"before: {_load()}", flush=True)

    serial_s, events = _serial(sources, src, root / "serial", ns.basin_strategy)
    print(f"serial dcnum loop (num_procs={os.cpu_count()}): {serial_s:.1f} s, "
          f"{events / serial_s:.0f} events/s; {_load()}", flush=True)

    cmd = [sys.executable, "-m", "dcbulk.cli", "process", str(src), "-o", str(root / "dcbulk"),
           "--basin-strategy", ns.basin_strategy, "-q"]
    cmd += [] if ns.workers is None else ["--workers", str(ns.workers)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    dcbulk_s = time.perf_counter() - t0
    if run.returncode:
        print(run.stdout + run.stderr)
        return 1
    shape = "" if ns.workers is None else f", --workers {ns.workers}"
    print(f"dcbulk process (whole command{shape}): {dcbulk_s:.1f} s, {events / dcbulk_s:.0f} events/s "
          f"({serial_s / dcbulk_s:.2f}x the serial loop); {_load()}", flush=True)

    same = all(_same(root / "serial" / p.relative_to(src).with_name(p.stem + "_dcn.rtdc"),
                     root / "dcbulk" / p.relative_to(src).with_name(p.stem + "_dcn.rtdc"))
               for p in sources)
    print(f"outputs identical (every feature, every value): {same}")
    if shutil.which("chipstream-cli"):
        t0 = time.perf_counter()
        subprocess.run(["chipstream-cli", "-r", str(src), str(root / "chipstream")],
                       capture_output=True)
        cs = time.perf_counter() - t0
        print(f"chipstream-cli -r: {cs:.1f} s, {events / cs:.0f} events/s")
    else:
        print("chipstream-cli: not installed (not a dependency); not timed")
    rate = events / dcbulk_s
    per_measurement = events / ns.files
    hours = 10_000 * per_measurement / (100 * rate) / 3600
    print(f"closing note: {rate:.0f} events/s per {os.cpu_count()}-core node; 10 000 "
          f"measurements of {per_measurement:.0f} events on 100 such SLURM nodes: "
          f"{hours:.2f} h ({10_000 * per_measurement / rate / 3600:.1f} h on one node)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
