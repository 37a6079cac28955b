#!/usr/bin/env python
"""Benchmark ``dcbulk verify`` (not a test): the archive benchmark data, verified

1. by ``dcbulk.verify`` of the converted output directory (through its manifest) on a
   LocalCluster of ``--workers`` single-threaded workers, and
2. by a serial h5py + numpy comparison loop in one process (every output dataset read in
   full and compared with the source's), the baseline a user would write.

Prints wall and CPU seconds of both (CPU: this process plus, for dcbulk, the workers) and
their ratio, and the serial loop as two processes side by side (halves of about equal bytes
read: what two cores give this work here, the anchor of a 2-core target). Then, as a user
runs them (each a process of its own, its whole process tree
sampled): ``dcbulk verify OUT_DIR`` (dcbulk chooses its own process or a LocalCluster; start
included) against the serial loop as a script, for the archive and for its largest output
alone. The cluster is the one ``dcbulk verify`` starts
(``dcbulk.engine.client.make_local_cluster``: its workers keep large malloc buffers instead of
dask's ``MALLOC_TRIM_THRESHOLD_=65536``, which made glibc mmap every HDF5 chunk buffer, about
40 % more CPU here); ``--worker-env KEY=VALUE`` adds to the workers' environment. Uses the
archive of ``scripts/benchmark.py archive`` (same defaults: 30 files, 20..900 events, seed 5),
converted once with ``convert_archive`` into the work directory.

    python scripts/bench_verify.py --workers 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu_self() -> float:
    t = os.times()
    return t.user + t.system


def serial_loop(pairs: list[tuple[str, str]]) -> int:
    """Read every output dataset fully and compare it with the source's; return mismatches."""
    bad = 0

    def walk(group, prefix=""):
        for key in group:
            obj = group[key]
            if isinstance(obj, h5py.Dataset):
                yield prefix + key, obj
            elif key != "contour":
                yield from walk(obj, f"{prefix}{key}/")

    for out, src in pairs:
        with h5py.File(out, "r") as o, h5py.File(src, "r") as s:
            for name, dset in walk(o["events"]):
                if name.startswith("basinmap") or name not in s["events"]:
                    continue
                if not np.array_equal(dset[:], s["events"][name][:]):
                    bad += 1
            for key, val in s.attrs.items():
                if key not in o.attrs:
                    bad += 1
    return bad


_SERIAL_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from bench_verify import serial_loop
args = sys.argv[2:]
sys.exit(serial_loop(list(zip(args[::2], args[1::2]))))
"""


def _loop_command(pairs: list[tuple[str, str]]) -> list[str]:
    return [sys.executable, "-c", _SERIAL_SCRIPT, str(Path(__file__).resolve().parent),
            *[p for pair in pairs for p in pair]]


def two_loops(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Wall and CPU seconds of the serial loop as two processes side by side, each over
    pairs of about half the bytes read (output and source)."""
    from bench_common import TreeSampler, split_by_size
    halves = split_by_size(pairs, 2, lambda pair: sum(os.path.getsize(f) for f in pair))
    t0 = time.perf_counter()
    procs = [subprocess.Popen(_loop_command(half)) for half in halves]
    samplers = [TreeSampler(p.pid).__enter__() for p in procs]
    for proc, smp in zip(procs, samplers):
        proc.wait()
        smp.__exit__(None, None, None)
    return time.perf_counter() - t0, sum(s.cpu for s in samplers)


def whole_commands(label: str, target: Path, pairs: list[tuple[str, str]]) -> None:
    """``dcbulk verify TARGET`` and the serial loop over ``pairs``, each as a process."""
    from bench_common import run_subprocess
    bindir = Path(sys.executable).parent
    _, dc = run_subprocess([str(bindir / "dcbulk"), "verify", "-q", str(target)])
    _, loop = run_subprocess(_loop_command(pairs))
    print(f"  whole commands, {label}: dcbulk verify wall {dc.wall:6.2f} s  cpu {dc.cpu:6.2f} s"
          f" | serial loop script wall {loop.wall:6.2f} s  cpu {loop.cpu:6.2f} s | "
          f"{loop.wall / dc.wall:.2f}x")


def _worker_cpu(client) -> float:
    def cpu():
        import psutil
        t = psutil.Process().cpu_times()
        return t.user + t.system
    return sum(client.run(cpu).values())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--archive-files", type=int, default=30)
    p.add_argument("--archive-events", default="20:900", metavar="LO:HI")
    p.add_argument("--archive-seed", type=int, default=5)
    p.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the worker processes (dask's "
                   "distributed.nanny.pre-spawn-environ), e.g. MALLOC_MMAP_THRESHOLD_=33554432")
    args = p.parse_args(argv)
    import dask
    env = dict(item.split("=", 1) for item in args.worker_env)
    from bench_common import byte_compile_dcbulk, ensure_archive, machine_scaling
    from distributed import Client

    import dcbulk
    from dcbulk.engine.client import make_local_cluster
    from dcbulk.bulk.manifest import Manifest
    byte_compile_dcbulk()
    print(machine_scaling(), flush=True)
    lo, hi = (int(x) for x in args.archive_events.split(":"))
    root = args.workdir / f"archive-{args.archive_files}f-{lo}-{hi}ev-s{args.archive_seed}-raw"
    files = ensure_archive(root, args.archive_files, (lo, hi), args.archive_seed)
    out_dir = args.workdir / "verify-out" / root.name
    raw = sum(f.stat().st_size for f in files)
    # the cluster ``dcbulk verify`` starts (its workers' malloc settings, WORKER_ENVIRON)
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in env.items()}), \
            make_local_cluster(n_workers=args.workers, threads_per_worker=1) as lc, \
            Client(lc) as client:
        report = dcbulk.convert_archive([str(root)], out_dir, client=client)
        if not report.ok:
            print(f"conversion failed: {report.failed}")
            return 1
        manifest = Manifest.load(out_dir, read_only=True)
        pairs = [(str(out_dir / r.output), r.source) for r in manifest.records.values()]
        dcbulk.verify(out_dir, client=client)  # warm-up: imports on the workers
        c0, w0, t0 = _cpu_self(), _worker_cpu(client), time.perf_counter()
        result = dcbulk.verify(out_dir, client=client)
        wall_dc = time.perf_counter() - t0
        cpu_client, cpu_workers = _cpu_self() - c0, _worker_cpu(client) - w0
        cpu_dc = cpu_client + cpu_workers
    if not result.ok:
        print("\n".join(result.problems[:10]))
        return 1
    c0, t0 = _cpu_self(), time.perf_counter()
    bad = serial_loop(pairs)
    wall_serial, cpu_serial = time.perf_counter() - t0, _cpu_self() - c0
    print(f"verify benchmark: {len(pairs)} files, {raw / 1e6:,.0f} MB raw sources "
          f"({'ok' if result.ok and not bad else 'MISMATCH'})")
    print(f"  dcbulk.verify, {args.workers} workers: wall {wall_dc:6.2f} s  cpu {cpu_dc:6.2f} s "
          f"(workers {cpu_workers:.2f}, client+scheduler {cpu_client:.2f})")
    print(f"  serial h5py+numpy loop:     wall {wall_serial:6.2f} s  cpu {cpu_serial:6.2f} s")
    wall_two, cpu_two = two_loops(pairs)
    print(f"  serial loop, 2 processes side by side: wall {wall_two:6.2f} s  cpu {cpu_two:6.2f} s"
          f" ({wall_serial / wall_two:.2f}x one loop: the 2-core limit of this work here)")
    print(f"  speed-up (wall, serial / dcbulk): {wall_serial / wall_dc:.2f}x (target >= 1.6x); "
          f"cpu dcbulk / serial: {cpu_dc / cpu_serial:.2f}; "
          f"vs 2 loops side by side: {wall_two / wall_dc:.2f}x")
    whole_commands(f"{len(pairs)} files", out_dir, pairs)
    largest = max(pairs, key=lambda pair: os.path.getsize(pair[0]))
    whole_commands(f"largest output ({os.path.getsize(largest[0]) / 1e6:,.0f} MB)",
                   Path(largest[0]), [largest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
