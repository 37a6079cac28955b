#!/usr/bin/env python
"""Benchmark dcbulk against dclab-compress and dcnum (not a test; nothing is asserted).

Single responsibility: time and measure (wall time, peak RSS of the whole process tree, CPU
seconds) whole-file recompression (``compress``), 50 % condensing (``condense``) and the
memory growth with input size (``memory``), verify that every output decodes equal to the
source, and print the figures next to the project's targets. Scratch data lives in
``--workdir`` (default ``/tmp/dcbulk-bench``), never in the repository.

Every variant runs once per round (``--repeat`` rounds, interleaved so that slow drift of a
shared machine hits all variants alike); the table shows the best round, the speed-ups also
per round. dcbulk "cluster up" gets a fresh, warmed 2-worker cluster per run (only
``convert`` is timed); "serial" runs dcbulk's own tasks inline in one process, so
serial / (workers x parallel) is the parallel efficiency. dclab, dcnum and dcbulk with its
own cluster run in processes of their own (whole process tree sampled every 0.1 s).

The measuring, verification and table helpers live in ``bench_common.py`` (same folder).

Examples::

    python scripts/benchmark.py                 # compress, 20,000 events (~1.2 GB raw)
    python scripts/benchmark.py all --repeat 3
    python scripts/benchmark.py memory --base-events 2000
    # measure a fixed commit while others edit the tree:
    git archive HEAD src | tar -x -C /tmp/snap && PYTHONPATH=/tmp/snap/src python scripts/benchmark.py

dclab, dcnum 0.31 and psutil are needed (``pip install dcbulk[bench]``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from bench_common import (MiB, Cluster, TreeSampler, best, chunk_identity, dataset_features,
                          describe_filters, ensure_source, have_bokeh, load_text, make_row,
                          paired, print_features, print_table, raw_nbytes, run_subprocess,
                          summarize_stream, verify, warm_cache)

logger = logging.getLogger(__name__)

TARGETS = {"dclab": 1.8, "dcnum": 1.6, "condense": 1.8, "growth": 1.2}


def child(kind: str, *params: str) -> list[str]:
    """Command line that runs this script's hidden ``_child`` sub-command."""
    return [sys.executable, os.path.abspath(__file__), "_child", kind, json.dumps(params)]


# -- dcbulk in this process ---------------------------------------------------------------------

def dcbulk_once(args, src: Path, out: Path, label: str, raw: int, *, mapping=None,
                report_html: Path | None = None) -> tuple[dict, object]:
    """Start and warm a cluster, then time only ``dcbulk.convert`` on it; row and report."""
    import dcbulk
    from distributed import get_task_stream, performance_report
    cl = Cluster(args.workdir, args.workers)
    try:
        out.unlink(missing_ok=True)
        warm_cache(src, args.idle_wait)
        ctx = (performance_report(filename=str(report_html)) if report_html
               else contextlib.nullcontext())
        with ctx, get_task_stream(client=cl.client) as ts:
            with TreeSampler(os.getpid()) as smp:
                report = dcbulk.convert(src, out, client=cl.client, mapping=mapping,
                                        max_task_bytes=args.max_task_bytes)
    finally:
        cl.close()
    print(f"    dcbulk cluster up: {report.wall_seconds:.2f} s; CPU s: workers "
          f"{smp.cpu - smp.root_cpu:.2f}, scheduler+client {smp.root_cpu:.2f}; "
          f"{summarize_stream(ts.data, report.wall_seconds, args.workers)}")
    return make_row(label, smp.wall, smp, out, raw, report.wall_seconds), report


def run_rounds(args, src: Path, variants: dict[str, tuple], *, mapping=None,
               report_html: Path | None = None) -> tuple[dict[str, list[dict]], object]:
    """Run every variant once per round, ``--repeat`` rounds (interleaved against drift).

    ``variants`` maps key -> (label, output, raw bytes, command); a command of None is
    dcbulk on a cluster that is already up (started before and closed after its run, so
    that no idle cluster runs beside the other variants).
    """
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    report = None
    for rnd in range(args.repeat):
        print(f"  round {rnd + 1}:")
        for key, (label, out, raw, cmd) in variants.items():
            if cmd is None:
                row, report = dcbulk_once(
                    args, src, out, label, raw, mapping=mapping,
                    report_html=report_html if rnd == args.repeat - 1 else None)
            else:
                out.unlink(missing_ok=True)
                warm_cache(src, args.idle_wait)
                res, smp = run_subprocess(cmd)
                row = make_row(label, smp.wall, smp, out, raw, res.get("seconds"))
            runs[key].append(row)
    return runs, report


# -- sub-commands ----------------------------------------------------------------------------------

def print_efficiency(rows: dict[str, dict], workers: int) -> None:
    """Parallel efficiency of the cluster run against dcbulk's own serial (inline) run."""
    serial, par = rows["serial"]["inner"], rows["dcbulk"]["inner"]
    print(f"  dcbulk serial / dcnum: {serial / rows['dcnum']['inner']:.2f} (same work per byte "
          f"if ~1); parallel efficiency serial / ({workers} x cluster-up): "
          f"{serial / (workers * par):.0%}")


def cmd_compress(args) -> None:
    src = ensure_source(args.workdir, args.events)
    raw = raw_nbytes(src)
    feats = dataset_features(src)
    odir = args.workdir / "out"
    print(f"\n== compress: {src.name}, {args.events} events, {raw / MiB:.0f} MiB raw, "
          f"{len(feats)} features, load {load_text()} ==")
    outs = {k: odir / f"compress-{k}.rtdc"
            for k in ("dclab", "dcnum", "serial", "dcbulk-start", "dcbulk")}
    dclab = str(Path(sys.executable).with_name("dclab-compress"))
    variants = {
        "dclab": ("dclab-compress (whole command)", outs["dclab"], raw,
                  [dclab, str(src), str(outs["dclab"])]),
        "dcnum": ("dcnum copy_features+copy_metadata", outs["dcnum"], raw,
                  child("dcnum", str(src), str(outs["dcnum"]), "")),
        "serial": ("dcbulk serial (inline, 1 process)", outs["serial"], raw,
                   child("inline", str(src), str(outs["serial"]), "")),
        "dcbulk-start": (f"dcbulk convert, own cluster ({os.cpu_count()}w)",
                         outs["dcbulk-start"], raw,
                         child("dcbulk", str(src), str(outs["dcbulk-start"]), "", "auto",
                               str(args.max_task_bytes))),
        "dcbulk": (f"dcbulk convert, cluster up ({args.workers}w)", outs["dcbulk"], raw, None)}
    html = args.workdir / "dask-performance-compress.html" if have_bokeh() else None
    runs, report = run_rounds(args, src, variants, report_html=html)
    rows = {k: best(v) for k, v in runs.items()}
    print(f"\n  best of {args.repeat} rounds; 'timed s' = time inside the process (dcnum: the copy; "
          "dcbulk: convert()); 'other CPU s' = busy CPU of other processes on the machine")
    print_table(list(rows.values()))
    t_bulk, t_start = rows["dcbulk"]["inner"], rows["dcbulk-start"]["wall"]
    t_dcnum = rows["dcnum"]["inner"]
    print(f"  speed-up dclab-compress / dcbulk: {rows['dclab']['wall'] / t_bulk:.2f}x "
          f"(target >= {TARGETS['dclab']}x; incl. cluster start "
          f"{rows['dclab']['wall'] / t_start:.2f}x); {paired(runs, 'dclab')}")
    print(f"  speed-up dcnum / dcbulk:          {t_dcnum / t_bulk:.2f}x "
          f"(target >= {TARGETS['dcnum']}x; dcnum whole process vs dcbulk incl. start "
          f"{rows['dcnum']['wall'] / t_start:.2f}x); {paired(runs, 'dcnum')}")
    print_efficiency(rows, args.workers)
    print("  per-feature worker seconds (dcbulk, cluster up, last round):")
    print_features(report)
    print(f"  dask performance report: {html or 'skipped: bokeh>=3.1 not importable'}")
    print("  filters:")
    for key, out in outs.items():
        print(f"    {key:<13} {describe_filters(out)}")
    t0 = time.perf_counter()
    sample = feats if args.verify == "all" else [f for f in ("image", "mask", "deform") if f in feats]
    for key, text in verify(src, outs, sample).items():
        print(f"  verify {key:<13} {text}")
    print(f"  dcbulk vs dcnum stored chunks: {chunk_identity(outs['dcbulk'], outs['dcnum'], feats)}")
    print(f"  (verification took {time.perf_counter() - t0:.1f} s)")


def cmd_condense(args) -> None:
    src = ensure_source(args.workdir, args.events)
    raw = raw_nbytes(src)
    feats = dataset_features(src)
    rng = np.random.default_rng(7)
    mapping = np.sort(rng.choice(args.events, args.events // 2, replace=False))
    map_path = args.workdir / f"mapping-{args.events}.npy"
    np.save(map_path, mapping)
    outs = {k: args.workdir / "out" / f"condense-{k}.rtdc" for k in ("dcnum", "serial", "dcbulk")}
    print(f"\n== condense: {mapping.size} of {args.events} events (sorted random), "
          f"load {load_text()} ==")
    half = raw * mapping.size // args.events
    variants = {
        "dcnum": ("dcnum copy_features(mapping)", outs["dcnum"], half,
                  child("dcnum", str(src), str(outs["dcnum"]), str(map_path))),
        "serial": ("dcbulk serial (inline, 1 process)", outs["serial"], half,
                   child("inline", str(src), str(outs["serial"]), str(map_path))),
        "dcbulk": ("dcbulk convert(mapping), cluster up", outs["dcbulk"], half, None)}
    runs, report = run_rounds(args, src, variants, mapping=mapping)
    rows = {k: best(v) for k, v in runs.items()}
    print(f"\n  best of {args.repeat} rounds")
    print_table(list(rows.values()))
    print(f"  speed-up dcnum / dcbulk (mapped): "
          f"{rows['dcnum']['inner'] / rows['dcbulk']['inner']:.2f}x "
          f"(target >= {TARGETS['condense']}x); {paired(runs, 'dcnum')}")
    print_efficiency(rows, args.workers)
    print("  per-feature worker seconds (dcbulk, last round):")
    print_features(report)
    sample = feats if args.verify == "all" else [f for f in ("image", "mask", "deform", "index")
                                                  if f in feats]
    for key, text in verify(src, outs, sample, mapping=mapping,
                            renumbered=("serial", "dcbulk")).items():
        print(f"  verify {key:<7} {text}")
    print(f"  dcbulk vs dcnum stored chunks: "
          f"{chunk_identity(outs['dcbulk'], outs['dcnum'], [f for f in feats if f != 'index'])}")


def cmd_memory(args) -> None:
    print(f"\n== memory: dcbulk peak RSS (all processes, fresh cluster each), load {load_text()} ==")
    results = []
    for n in (args.base_events, 10 * args.base_events):
        src = ensure_source(args.workdir, n)
        out = args.workdir / "out" / f"memory-{n}.rtdc"
        out.unlink(missing_ok=True)
        warm_cache(src, args.idle_wait)
        res, smp = run_subprocess(child("dcbulk", str(src), str(out), "", str(args.workers),
                                        str(args.max_task_bytes)))
        results.append((n, raw_nbytes(src), smp.peak, res))
        print(f"  {n:>7} events {results[-1][1] / MiB:>7.0f} MiB raw: peak {smp.peak / MiB:.0f} MiB "
              f"(after cluster start {res['baseline'] / MiB:.0f} MiB, +{(smp.peak - res['baseline']) / MiB:.0f} "
              f"MiB while converting), convert {res['seconds']:.2f} s, wall {smp.wall:.2f} s")
        out.unlink(missing_ok=True)
    (_, _, p1, r1), (_, _, p10, r10) = results
    print(f"  peak RSS growth 10x / 1x input: {p10 / p1:.3f}x (target < {TARGETS['growth']}x); "
          f"growth above the idle cluster: {(p10 - r10['baseline']) / max(1, p1 - r1['baseline']):.2f}x")


def run_child(kind: str, params: Sequence[str]) -> None:
    """Hidden sub-command: one measured variant in a process of its own."""
    if kind == "dcnum":
        from dcnum.write import copy_features, copy_metadata, set_default_filter_kwargs
        src, dst, map_path = params
        t0 = time.perf_counter()
        with h5py.File(src, "r") as h_src, h5py.File(dst, "w") as h_dst:
            feats = [k for k, v in h_src["events"].items() if isinstance(v, h5py.Dataset)]
            mapping = (np.load(map_path) if map_path
                       else np.arange(h_src["events"][feats[0]].shape[0]))
            copy_features(h_src, h_dst, feats, mapping=mapping,
                          ds_kwds=set_default_filter_kwargs())
            if not map_path:
                copy_metadata(h_src, h_dst)
        print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0}))
    elif kind == "inline":  # dcbulk's own pipeline, every task in this one process
        from dcbulk.codec import parse_compression
        from dcbulk.engine.writer import write_output
        from dcbulk.plan import plan_conversion
        from dcbulk.read.inspect import inspect_source
        src, dst, map_path = params
        t0 = time.perf_counter()
        plan = plan_conversion(inspect_source(src), dst, codec=parse_compression("zstd:5"),
                               mapping=np.load(map_path) if map_path else None)
        write_output(plan, inline=True)
        print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0}))
    elif kind == "dcbulk":
        from distributed import Client

        import dcbulk
        from dcbulk.engine.client import make_local_cluster
        src, dst, map_path, workers, task_bytes = params
        mapping = np.load(map_path) if map_path else None
        if workers == "auto":  # the engine starts (and closes) its own LocalCluster
            t0 = time.perf_counter()
            dcbulk.convert(src, dst, mapping=mapping, max_task_bytes=int(task_bytes))
            print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0}))
            return
        with make_local_cluster(n_workers=int(workers), threads_per_worker=1) as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(int(workers))
            baseline = TreeSampler(os.getpid()).sample()
            t0 = time.perf_counter()
            dcbulk.convert(src, dst, client=client, mapping=mapping,
                           max_task_bytes=int(task_bytes))
            seconds = time.perf_counter() - t0
        print("RESULT " + json.dumps({"seconds": seconds, "baseline": baseline}))
    else:
        raise SystemExit(f"unknown child kind {kind!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="compress",
                        choices=["compress", "condense", "memory", "all", "_child"])
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench"))
    parser.add_argument("--events", type=int, default=20_000,
                        help="events of the compress/condense input (default 20,000 ~ 1.2 GB)")
    parser.add_argument("--base-events", type=int, default=2_000,
                        help="events of the 1x memory input (10x is also converted)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-task-bytes", type=int, default=16 * MiB)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; best is shown")
    parser.add_argument("--idle-wait", type=float, default=60.0,
                        help="before each run, wait up to this many s for CPU use < 15%%")
    parser.add_argument("--verify", choices=["all", "sample"], default="all",
                        help="compare all features or only image, mask, deform (and index)")
    args = parser.parse_args(argv)
    import distributed  # noqa: F401  (configures its loggers on import; quieten them after)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.command == "_child":
        run_child(args.rest[0], json.loads(args.rest[1]))
        return 0
    (args.workdir / "out").mkdir(parents=True, exist_ok=True)
    import dcbulk
    print(f"dcbulk {dcbulk.__version__} from {Path(dcbulk.__file__).parent}, "
          f"{os.cpu_count()} CPUs, workdir {args.workdir}")
    steps = {"compress": [cmd_compress], "condense": [cmd_condense], "memory": [cmd_memory],
             "all": [cmd_compress, cmd_condense, cmd_memory]}[args.command]
    for step in steps:
        step(args)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
