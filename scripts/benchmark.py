#!/usr/bin/env python
"""Benchmark dcbulk against dclab-compress and dcnum (not a test; nothing is asserted).

Single responsibility: time and measure (wall time, peak RSS of the whole process tree, CPU
seconds) whole-file recompression (``compress``), 50 % condensing (``condense``), the
memory growth with input size (``memory``) and whole archives (``archive``: ~30 mixed files
against a dcnum loop, dclab-compress loops and the dcbulk command, plus the per-file overhead
on 200 tiny files), verify that every output decodes equal to the
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
    python scripts/benchmark.py archive --repeat 2
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
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from bench_common import (MiB, Cluster, TreeSampler, best, chunk_identity, dataset_features,
                          describe_filters, ensure_archive, ensure_source, event_datasets,
                          events_nbytes, have_bokeh, load_text, make_row, n_events_of, paired,
                          print_features, print_table, raw_nbytes, rtdc_bytes, run_subprocess,
                          split_by_size, summarize_archive_stream, summarize_stream, verify,
                          warm_cache)

logger = logging.getLogger(__name__)

TARGETS = {"dclab": 1.8, "dcnum": 1.6, "condense": 1.8, "growth": 1.2, "archive": 1.5,
           "archive_up": 1.8, "tiny_s": 0.2}


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


# -- archive -----------------------------------------------------------------------------------------

def _events_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    return int(lo), int(hi or lo)


def archive_up(args, jobs: list[tuple[str, Path, Path, int]]) -> list[tuple[dict, object, str]]:
    """Start and warm a cluster, then time ``convert_archive`` alone for each job in turn.

    ``jobs`` are ``(label, archive root, output root, raw bytes)``; each output root is
    emptied first. Returns (row, report, task-stream summary) per job.
    """
    import shutil

    import dcbulk
    from distributed import get_task_stream
    from dcbulk.synth import make_archive
    cl = Cluster(args.workdir, args.workers)
    results = []
    try:  # a first convert_archive also imports the bulk modules on the workers
        warm_src, warm_out = args.workdir / "warmup-archive", args.workdir / "out" / "warmup-archive"
        if not warm_src.exists():
            make_archive(warm_src, 2, events=(20, 40), seed=3, compression="none")
        shutil.rmtree(warm_out, ignore_errors=True)
        dcbulk.convert_archive([str(warm_src)], warm_out, client=cl.client)
        for label, src_root, out_root, raw in jobs:
            shutil.rmtree(out_root, ignore_errors=True)
            warm_cache(sorted(src_root.rglob("*.rtdc")), args.idle_wait)
            with get_task_stream(client=cl.client) as ts, TreeSampler(os.getpid()) as smp:
                t_epoch, t0 = time.time(), time.perf_counter()
                report = dcbulk.convert_archive([str(src_root)], out_root, client=cl.client)
                seconds = time.perf_counter() - t0
            if not report.ok or report.count("done") != len(report.files):
                raise RuntimeError(f"{label}: {report.to_dict()['counts']}, "
                                   f"{[f.error for f in report.failed][:3]}")
            stream = (f"CPU s: workers {smp.cpu - smp.root_cpu:.1f}, scheduler+client "
                      f"{smp.root_cpu:.1f}; " + summarize_archive_stream(
                          ts.data, seconds, args.workers, t_epoch))
            print(f"    {label}: {seconds:.2f} s; {stream}")
            results.append((make_row(label, smp.wall, smp, None, raw, seconds,
                                     size=rtdc_bytes(out_root)[1]), report, stream))
    finally:
        cl.close()
    return results


def _two_dcnum(root: Path, out: Path) -> list[str]:
    """Two dcnum loops side by side on halves of about equal bytes (no framework at all)."""
    loops = [shlex.join(child("dcnum-loop", str(root), str(out), f"{i}/2")) for i in range(2)]
    return ["bash", "-c", f"{loops[0]} & p0=$!; {loops[1]} & p1=$!; wait $p0 && wait $p1"]


def _dclab_scripts(args, files: list[Path], root: Path, outs: dict[str, Path]) -> tuple[Path, Path]:
    """Shell scripts: one dclab-compress per file, serially / as two concurrent loops.

    The two loops get halves of about equal bytes (:func:`split_by_size`).
    """
    dclab = shlex.quote(str(Path(sys.executable).with_name("dclab-compress")))

    def line(src: Path, out_root: Path) -> str:
        dst = out_root / src.relative_to(root)
        return (f"mkdir -p {shlex.quote(str(dst.parent))} && "
                f"{dclab} {shlex.quote(str(src))} {shlex.quote(str(dst))}")
    halves = split_by_size(files, 2)
    serial = args.workdir / "dclab-serial.sh"
    serial.write_text("set -e\n" + "\n".join(line(f, outs["dclab"]) for f in files) + "\n")
    two = args.workdir / "dclab-2x.sh"
    loops = ["(\n" + "\n".join(line(f, outs["dclab-2x"]) for f in h) + f"\n) & p{i}=$!"
             for i, h in enumerate(halves)]
    two.write_text("set -e\n" + "\n".join(loops) + "\nwait $p0 && wait $p1\n")
    return serial, two


def _verify_tree(src_files: list[Path], root: Path, outs: dict[str, Path], sample: bool
                 ) -> dict[str, str]:
    """Verify each output tree against the sources (all files, or smallest/median/largest)."""
    files = sorted(src_files, key=lambda p: p.stat().st_size)
    if sample:
        files = sorted({files[0], files[len(files) // 2], files[-1]})
    bad: dict[str, list[str]] = {k: [] for k in outs}
    for src in files:
        rel = src.relative_to(root)
        for key, text in verify(src, {k: o / rel for k, o in outs.items()},
                                event_datasets(src)).items():
            if "DIFFER" in text or "missing" in text:
                bad[key].append(f"{rel}: {text}")
    n_feat = len(event_datasets(files[0]))
    return {k: (f"{len(files) - len(bad[k])}/{len(files)} files equal ({n_feat} datasets each, "
                f"traces included)" + (f"; BAD: {bad[k][:3]}" if bad[k] else "")) for k in outs}


def cmd_archive(args) -> None:
    import shutil

    from dcbulk.bulk.archive import INLINE_BYTES
    lo, hi = args.archive_events
    root = args.workdir / f"archive-{args.archive_files}f-{lo}-{hi}ev-s{args.archive_seed}-raw"
    files = ensure_archive(root, args.archive_files, (lo, hi), args.archive_seed)
    raw_each = [events_nbytes(f) for f in files]
    raw = sum(raw_each)
    counts = [n_events_of(f) for f in files]
    tlo, thi = args.tiny_events
    tiny_root = args.workdir / f"tiny-{args.tiny_files}f-{tlo}-{thi}ev-s{args.archive_seed}-raw"
    tiny_files = ensure_archive(tiny_root, args.tiny_files, (tlo, thi), args.archive_seed)
    tiny_events = sum(n_events_of(f) for f in tiny_files)
    one_root = args.workdir / f"one-{tiny_events}ev-raw"  # the tiny archive's events in one file
    ensure_archive(one_root, 1, (tiny_events, tiny_events), args.archive_seed)
    tiny_raw = sum(events_nbytes(f) for f in tiny_files)
    one_raw = sum(events_nbytes(f) for f in one_root.rglob("*.rtdc"))
    print(f"\n== archive: {len(files)} files, {sum(counts)} events ({min(counts)}..{max(counts)} "
          f"per file), {raw / 1e6:.0f} MB raw ({raw / sum(counts) / 1e3:.1f} kB/event), "
          f"{sum(f.stat().st_size for f in files) / 1e6:.0f} MB on disk; "
          f"{sum(r > INLINE_BYTES for r in raw_each)} file(s) above dcbulk's inline limit "
          f"({INLINE_BYTES / MiB:.0f} MiB); tiny: {len(tiny_files)} files, {tiny_events} events, "
          f"{tiny_raw / 1e6:.0f} MB raw; load {load_text()} ==")
    odir = args.workdir / "out"
    outs = {k: odir / f"archive-{k}"
            for k in ("dcnum", "dcnum-2x", "dclab", "dclab-2x", "dcbulk-cli", "dcbulk")}
    touts = {k: odir / f"tiny-{k}" for k in ("dcnum", "dcnum-one", "dcbulk", "dcbulk-one")}
    serial_sh, two_sh = _dclab_scripts(args, files, root, outs)
    cli_json = args.workdir / "dcbulk-cli-report.json"
    dcbulk_exe = Path(sys.executable).with_name("dcbulk")
    cli = ([str(dcbulk_exe)] if dcbulk_exe.exists() else [sys.executable, "-m", "dcbulk.cli"])
    variants = {
        "dcnum": ("dcnum copy_* loop, 1 process", raw, child("dcnum-loop", str(root), str(outs["dcnum"]))),
        "dcnum-2x": ("2 x dcnum loops side by side", raw, _two_dcnum(root, outs["dcnum-2x"])),
        "dclab": ("dclab-compress serial loop", raw, ["bash", str(serial_sh)]),
        "dclab-2x": ("2 x dclab-compress loops side by side", raw, ["bash", str(two_sh)]),
        "dcbulk-cli": (f"dcbulk convert --workers {args.workers} (command)", raw,
                       [*cli, "convert", str(root), "-o", str(outs["dcbulk-cli"]), "--workers",
                        str(args.workers), "--report", str(cli_json)]),
        "dcbulk": (f"dcbulk convert_archive, cluster up ({args.workers}w)", raw, None)}
    tiny_variants = {
        "dcnum": ("tiny: dcnum copy_* loop", tiny_raw,
                  child("dcnum-loop", str(tiny_root), str(touts["dcnum"]))),
        "dcnum-one": ("tiny as 1 file: dcnum copy_*", one_raw,
                      child("dcnum-loop", str(one_root), str(touts["dcnum-one"])))}
    runs: dict[str, list[dict]] = {k: [] for k in [*variants, *(f"tiny-{k}" for k in tiny_variants),
                                                   "tiny-dcbulk", "tiny-dcbulk-one"]}
    streams: dict[str, str] = {}
    for rnd in range(args.repeat):
        print(f"  round {rnd + 1} (load {load_text()}):")
        for key, (label, nbytes, cmd) in variants.items():
            if cmd is None:
                (row, _, streams[key]), = archive_up(args, [(label, root, outs[key], nbytes)])
                runs[key].append(row)
                continue
            shutil.rmtree(outs[key], ignore_errors=True)
            warm_cache(files, args.idle_wait)
            res, smp = run_subprocess(cmd)
            if key == "dcbulk-cli":
                res = {"seconds": json.loads(cli_json.read_text())["wall_seconds"]}
            runs[key].append(make_row(label, smp.wall, smp, None, nbytes, res.get("seconds"),
                                      size=rtdc_bytes(outs[key])[1]))
            print(f"    {label}: wall {smp.wall:.2f} s" + (f", timed {res['seconds']:.2f} s"
                                                          if "seconds" in res else ""))
        for key, (label, nbytes, cmd) in tiny_variants.items():
            shutil.rmtree(touts[key], ignore_errors=True)
            warm_cache(tiny_files, args.idle_wait)
            res, smp = run_subprocess(cmd)
            runs[f"tiny-{key}"].append(make_row(label, smp.wall, smp, None, nbytes, res["seconds"],
                                                size=rtdc_bytes(touts[key])[1]))
            print(f"    {label}: wall {smp.wall:.2f} s, timed {res['seconds']:.2f} s")
        for (row, _, stream), key in zip(archive_up(args, [
                ("tiny: dcbulk convert_archive, up", tiny_root, touts["dcbulk"], tiny_raw),
                ("tiny as 1 file: dcbulk, up", one_root, touts["dcbulk-one"], one_raw)]),
                ("tiny-dcbulk", "tiny-dcbulk-one")):
            runs[key].append(row)
            streams[key] = stream
    rows = {k: best(v) for k, v in runs.items()}
    print(f"\n  best of {args.repeat} rounds; 'wall s' = whole command (process tree); 'timed s' = "
          "inside the process (dcnum: the loop; dcbulk command: convert_archive from its "
          "--report; cluster up: the convert_archive call)")
    print_table([rows[k] for k in variants])
    print_table([rows[k] for k in runs if k.startswith("tiny")])
    for key in outs:
        n, size = rtdc_bytes(outs[key])
        if n != len(files):
            print(f"  WARNING: {key} wrote {n} of {len(files)} files")
    w_cli, t_up = rows["dcbulk-cli"]["wall"], rows["dcbulk"]["inner"]
    dcnum_wall, dcnum_loop = rows["dcnum"]["wall"], rows["dcnum"]["inner"]
    ww, tt = ("wall", "wall"), ("timed", "timed")
    print(f"  dcnum loop / dcbulk command (both whole processes): {dcnum_wall / w_cli:.2f}x "
          f"(target >= {TARGETS['archive']}x); {paired(runs, 'dcnum', 'dcbulk-cli', metric=ww)}")
    print(f"  dcnum loop / dcbulk cluster up (loop vs call):      {dcnum_loop / t_up:.2f}x "
          f"(target >= {TARGETS['archive_up']}x); {paired(runs, 'dcnum', 'dcbulk', metric=tt)}")
    print(f"  context: 2 dcnum loops side by side (no framework; loop of the last to finish) "
          f"speed-up over 1 loop: {dcnum_loop / rows['dcnum-2x']['inner']:.2f}x = what 2 cores give "
          f"this work; dcbulk cluster up / 2 x dcnum: {t_up / rows['dcnum-2x']['inner']:.2f}")
    for key, text in (("dclab", "dclab-compress serial loop"), ("dclab-2x", "two dclab-compress loops")):
        print(f"  {text} / dcbulk command: {rows[key]['wall'] / w_cli:.2f}x "
              f"(cluster up {rows[key]['wall'] / t_up:.2f}x); "
              f"{paired(runs, key, 'dcbulk-cli', metric=ww)}")
    print(f"  dcbulk command: {w_cli:.2f} s wall, of which convert_archive "
          f"{rows['dcbulk-cli']['inner']:.2f} s (start-up/shut-down "
          f"{w_cli - rows['dcbulk-cli']['inner']:.2f} s)")
    n_tiny = len(tiny_files)
    t_tiny, t_one = rows["tiny-dcbulk"]["inner"], rows["tiny-dcbulk-one"]["inner"]
    d_tiny, d_one = rows["tiny-dcnum"]["inner"], rows["tiny-dcnum-one"]["inner"]
    print(f"  per-tiny-file overhead, dcbulk cluster up: ({t_tiny:.2f} - {t_one:.2f} s) / {n_tiny} "
          f"= {(t_tiny - t_one) / n_tiny:.3f} s/file (target < {TARGETS['tiny_s']} s); "
          f"wall / files {t_tiny / n_tiny:.3f} s/file; dcnum in-process loop {d_tiny / n_tiny:.3f} "
          f"s/file (overhead ({d_tiny:.2f} - {d_one:.2f} s) / {n_tiny} = "
          f"{(d_tiny - d_one) / n_tiny:.3f} s/file)")
    print("  dcbulk task streams (last round):")
    for key in ("dcbulk", "tiny-dcbulk", "tiny-dcbulk-one"):
        print(f"    {key}: {streams[key]}")
    biggest = max(files, key=lambda p: p.stat().st_size)
    rel = biggest.relative_to(root)
    print(f"  filters ({rel}):")
    for key, out in outs.items():
        print(f"    {key:<11} {describe_filters(out / rel)}")
    print(f"  dcbulk vs dcnum stored chunks ({rel}): "
          f"{chunk_identity(outs['dcbulk'] / rel, outs['dcnum'] / rel, event_datasets(biggest))}")
    t0 = time.perf_counter()
    for key, text in _verify_tree(files, root, outs, args.verify == "sample").items():
        print(f"  verify {key:<11} {text}")
    for key, text in _verify_tree(tiny_files, tiny_root, {k: touts[k] for k in ("dcnum", "dcbulk")},
                                  True).items():
        print(f"  verify tiny-{key:<6} {text}")
    for key, text in _verify_tree(list(one_root.rglob("*.rtdc")), one_root,
                                  {k: touts[k] for k in ("dcnum-one", "dcbulk-one")}, False).items():
        print(f"  verify tiny-{key:<6} {text}")
    print(f"  (verification took {time.perf_counter() - t0:.1f} s)")


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
    elif kind == "dcnum-loop":  # every file of an archive in this one process, dcnum's way
        from dcnum.write import HDF5Writer, copy_features, copy_metadata, set_default_filter_kwargs
        src_root, dst_root = map(Path, params[:2])
        t0 = time.perf_counter()
        files = sorted(src_root.rglob("*.rtdc"))
        if len(params) > 2:  # "i/n": the i-th of n parts of about equal bytes
            i, n = map(int, params[2].split("/"))
            files = split_by_size(files, n)[i]
        for src in files:
            dst = dst_root / src.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(src, "r") as h_src, h5py.File(dst, "w") as h_dst:
                ev = h_src["events"]
                feats = [k for k, v in ev.items() if isinstance(v, h5py.Dataset)]
                copy_features(h_src, h_dst, feats, mapping=np.arange(ev[feats[0]].shape[0]),
                              ds_kwds=set_default_filter_kwargs())
                # copy_features refuses groups: write their members with dcnum's writer,
                # in blocks of 10 of its chunks (as copy_features does)
                writer = HDF5Writer(h_dst, ds_kwds=set_default_filter_kwargs())
                for group in [k for k, v in ev.items() if isinstance(v, h5py.Group)]:
                    for name, ds in ev[group].items():
                        step = 10 * writer.get_best_nd_chunks(ds.shape[1:], ds.dtype)[0]
                        for a in range(0, ds.shape[0], step):
                            writer.store_feature_chunk(name, ds[a:a + step],
                                                       group_name=f"events/{group}")
                copy_metadata(h_src, h_dst)
        print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0, "files": len(files)}))
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
                        choices=["compress", "condense", "memory", "archive", "all", "_child"])
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench"))
    parser.add_argument("--events", type=int, default=20_000,
                        help="events of the compress/condense input (default 20,000 ~ 1.2 GB)")
    parser.add_argument("--base-events", type=int, default=2_000,
                        help="events of the 1x memory input (10x is also converted)")
    parser.add_argument("--archive-files", type=int, default=30)
    parser.add_argument("--archive-events", type=_events_range, default=(20, 900), metavar="LO:HI",
                        help="events per archive file, log-uniform (default 20:900, ~455 MB raw "
                        "with --archive-seed 5)")
    parser.add_argument("--archive-seed", type=int, default=5)
    parser.add_argument("--tiny-files", type=int, default=200,
                        help="files of the per-file overhead archive")
    parser.add_argument("--tiny-events", type=_events_range, default=(10, 20), metavar="LO:HI")
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
             "archive": [cmd_archive],
             "all": [cmd_compress, cmd_condense, cmd_memory, cmd_archive]}[args.command]
    for step in steps:
        step(args)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
