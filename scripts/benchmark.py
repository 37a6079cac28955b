#!/usr/bin/env python
"""Benchmark dcbulk against what a user can do without it (not a test; nothing is asserted).

Single responsibility: run the comparisons of issue 11 on this machine and print wall time,
CPU seconds of every process (split into dcbulk's client+scheduler process and its
workers), peak RSS and the ratios measured in the same run:

- ``compress``: one large uncompressed file -> zstd:5+Fletcher-32: dcnum ``copy_features``
  in one process, ``dclab-compress``, dcbulk on a running, warmed 2-worker cluster (only
  ``convert`` timed) and the whole ``dcbulk convert`` command (cluster start included);
- ``mapping``: the same file with a 50 % random boolean filter: dcnum vs dcbulk;
- ``archive``: ~1.5 GB in ~30 files: the whole ``dcbulk convert`` command vs the dcnum loop
  in one process and the same loop as two processes side by side; ``tiny``: the same for
  1 000 files of 10-40 events, zstd level 1 (``compress --events 50``: one 50-event file, whole command
  vs ``dclab-compress``);
- ``memory``: peak RSS of the whole command for 1x and 10x the input;
- ``table``: ratio and throughput of every ``--compression`` choice on the demo archive.

Other sub-commands are dispatched to ``bench_verify.py`` (``verify``), ``bench_modes.py``
(``modes``) and ``bench_perfile.py`` (``perfile``: one file's CPU, dcbulk vs dcnum, alternating
in one process) in this folder, through their ``main(argv)``. Scratch data lives in
``--workdir`` (default ``/tmp/dcbulk-bench``). On a shared machine prefer the CPU seconds and
the same-run ratios; wall times are noisy.

Examples::

    python scripts/benchmark.py compress --events 24000
    python scripts/benchmark.py archive
    python scripts/benchmark.py all
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (MiB, TreeSampler, byte_compile_dcbulk, chunk_identity,  # noqa: E402
                          dcnum_copy, ensure_archive, ensure_source, equal_to_source,
                          machine_scaling,
                          print_rows, ratio_line, row, run_subprocess, split_by_size,
                          tree_bytes, warm_cache)

CHOICES = ["zstd:5", "zstd:1", "zstd:9", "gzip:4", "lz4", "blosc2-zstd:5", "blosc2-lz4:5",
           "bitshuffle-zstd:5", "bitshuffle-lz4", "none"]


def child(kind: str, *params) -> list[str]:
    """Command line running this script's hidden ``_child`` sub-command (long parameters,
    such as 1 000 file pairs, go through a temporary file: one argument is at most 128 KiB)."""
    text = json.dumps(params)
    if len(text) > 64 * 1024:
        fd, path = tempfile.mkstemp(prefix="dcbulk-bench-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        text = "@" + path
    return [sys.executable, os.path.abspath(__file__), "_child", kind, text]


def _child_params(text: str):
    """The parameters :func:`child` passed (read, and removed, from their file if need be)."""
    if not text.startswith("@"):
        return json.loads(text)
    path = Path(text[1:])
    params = json.loads(path.read_text())
    path.unlink()
    return params


def dcbulk_cmd(args, *rest: str) -> list[str]:
    exe = Path(sys.executable).with_name("dcbulk")
    shape = [] if args.workers is None else ["--workers", str(args.workers)]
    shape += [] if args.threads is None else ["--threads-per-worker", str(args.threads)]
    return [str(exe), "convert", *rest, *shape, "-q", "--force"]


def _shape(args) -> str:
    from dcbulk.engine.client import local_shape
    workers, threads = local_shape(args.workers, args.threads)
    return (f"cluster {workers} worker process(es) x {threads} thread(s); the whole command "
            f"as dcbulk decides" + ("" if args.workers is None and args.threads is None
                                    else " (a cluster: --workers/--threads given)"))


def command_row(args, label: str, warm, src: Path, dst: Path, raw: int, *extra: str) -> dict:
    """Run the whole ``dcbulk convert SRC -o DST`` command (cluster start included)."""
    shutil.rmtree(dst, ignore_errors=True)
    warm_cache(warm, args.idle_wait)
    _, smp = run_subprocess(dcbulk_cmd(args, str(src), "-o", str(dst), *extra))
    workers = smp.cpu - smp.root_cpu
    cpu = ({"client+scheduler": smp.root_cpu, "workers": workers} if workers > 0.05
           else {"dcbulk's process, no cluster": smp.root_cpu})
    return row(label, smp, raw, out_bytes=tree_bytes(dst.rglob("*.rtdc")), cpu=cpu)


def raw_bytes(path: Path) -> int:
    import h5py
    with h5py.File(path, "r") as h5:
        names: list[str] = []
        h5["events"].visititems(lambda n, o: names.append(n) if hasattr(o, "dtype") else None)
        return sum(h5["events"][n].nbytes for n in names)


def _mapping(path: Path, seed: int = 7) -> Path:
    import h5py
    with h5py.File(path, "r") as h5:
        n = h5["events/image"].shape[0]
    out = path.with_suffix(".map50.npy")
    np.save(out, np.random.default_rng(seed).random(n) < 0.5)
    return out


def _api_row(label: str, res: dict, smp: TreeSampler, raw: int, out: Path) -> dict:
    r = row(label, smp, raw, seconds=res["convert_s"], out_bytes=out.stat().st_size,
            cpu={"client+scheduler": res["cpu_root"], "workers": res["cpu_workers"],
                 "cluster start (wall)": res["start_s"]})
    r["cpu"] = res["cpu_root"] + res["cpu_workers"]  # CPU seconds of the convert call only
    return r


def cmd_compress(args, *, mapped: bool = False) -> list[dict]:
    src = ensure_source(args.workdir, args.events)
    raw = raw_bytes(src)
    mpath = _mapping(src) if mapped else None
    mp = str(mpath) if mpath else ""
    keep = np.flatnonzero(np.load(mpath)) if mpath else None
    print(f"{'mapping 50 %' if mapped else 'compress'}: {src.name}, {src.stat().st_size / 1e6:.0f} MB"
          f" ({raw / 1e6:.0f} MB raw), {_shape(args)}")
    outs = {k: args.workdir / f"out-{k}.rtdc" for k in ("dcnum", "dclab", "api")}
    rows = {}
    for rnd in range(args.repeat):
        for o in outs.values():
            o.unlink(missing_ok=True)
        warm_cache(src, args.idle_wait)
        res, smp = run_subprocess(child("dcnum", [[str(src), str(outs["dcnum"])]], mp))
        rows.setdefault("dcnum", []).append(
            row("dcnum copy_features (1 process)", smp, raw, seconds=res["seconds"],
                out_bytes=outs["dcnum"].stat().st_size))
        if not mapped:
            warm_cache(src, args.idle_wait)
            exe = Path(sys.executable).with_name("dclab-compress")
            _, smp = run_subprocess([str(exe), str(src), str(outs["dclab"])])
            rows.setdefault("dclab", []).append(
                row("dclab-compress", smp, raw, out_bytes=outs["dclab"].stat().st_size))
        warm_cache(src, args.idle_wait)
        res, smp = run_subprocess(child("api", str(src), str(outs["api"]), mp, args.workers,
                                        args.threads))
        rows.setdefault("api", []).append(
            _api_row("dcbulk.convert, cluster up (warm)", res, smp, raw, outs["api"]))
        if not mapped:
            rows.setdefault("cmd", []).append(command_row(
                args, "dcbulk convert (whole command)", src, src, args.workdir / "out-cmd", raw))
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in rows.items()}
    print_rows(list(best.values()))
    print(f"  dcbulk equal to source: {equal_to_source(src, outs['api'], keep, renumbered=True)}; "
          f"vs dcnum: {chunk_identity(outs['api'], outs['dcnum'])}")
    print(ratio_line("dcbulk (cluster up) vs dcnum, wall", best["dcnum"], best["api"], 1.6))
    print(ratio_line("dcbulk CPU / dcnum CPU", best["api"], best["dcnum"], what="cpu"))
    if not mapped:
        print(ratio_line("dcbulk (cluster up) vs dclab-compress", best["dclab"], best["api"], 2.5))
        print(ratio_line("dcbulk whole command vs dcnum", best["dcnum"], best["cmd"]))
        print(ratio_line("dcbulk whole command vs dclab-compress", best["dclab"], best["cmd"],
                         1.0))
    return list(best.values())


def _two_loops(files: list[Path], root: Path, dst: Path) -> tuple[dict, float, float, float]:
    """The dcnum loop as two processes side by side (halves of about equal bytes)."""
    procs = []
    for i, part in enumerate(split_by_size(files, 2)):
        cmd = child("dcnum", [[str(f), str(dst / f.relative_to(root))] for f in part], "")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    t0 = time.perf_counter()
    samplers = [TreeSampler(p.pid) for p in procs]
    for s in samplers:
        s.__enter__()
    for p, s in zip(procs, samplers):
        p.communicate()
        s.__exit__(None, None, None)
        if p.returncode:
            raise RuntimeError("dcnum loop failed")
    return samplers, time.perf_counter() - t0, sum(s.cpu for s in samplers), \
        sum(s.peak for s in samplers)


def cmd_archive(args) -> list[dict]:
    tiny = args.what == "tiny"
    n_files, events = ((1000, (10, 40)) if tiny
                       else (args.files, (args.min_events, args.max_events)))
    root = args.workdir / ("tiny-archive" if tiny else "archive")
    # tiny files as an acquisition writes them: compressed (zstd 1: both tools decode and
    # encode every feature); uncompressed, each would hold whole 1000-row chunks (9 MB)
    files = ensure_archive(root, n_files, events, seed=5,
                           compression="zstd:1" if tiny else "none")
    raw = sum(raw_bytes(f) for f in files)
    size = tree_bytes(files)
    print(f"archive: {len(files)} files, {size / 1e9:.2f} GB ({raw / 1e9:.2f} GB raw), "
          f"{_shape(args)}")
    rows: dict[str, list[dict]] = {}
    for rnd in range(args.repeat):
        dst = args.workdir / "archive-dcbulk"
        rows.setdefault("cmd", []).append(command_row(
            args, "dcbulk convert (whole command)", files, root, dst, raw))
        one = args.workdir / "archive-dcnum1"
        shutil.rmtree(one, ignore_errors=True)
        warm_cache(files, args.idle_wait)
        pairs = [[str(f), str(one / f.relative_to(root))] for f in files]
        res, smp = run_subprocess(child("dcnum", pairs, ""))
        rows.setdefault("one", []).append(row("dcnum loop, 1 process", smp, raw))
        two = args.workdir / "archive-dcnum2"
        shutil.rmtree(two, ignore_errors=True)
        warm_cache(files, args.idle_wait)
        samplers, wall, cpu, peak = _two_loops(files, root, two)
        r = row("dcnum loop, 2 processes side by side", samplers[0], raw, seconds=wall)
        r.update(cpu=cpu, peak_mib=peak / MiB, whole=wall)
        rows.setdefault("two", []).append(r)
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in rows.items()}
    print_rows(list(best.values()))
    sample = files[len(files) // 2]
    print(f"  sample output equal to source: "
          f"{equal_to_source(sample, dst / sample.relative_to(root))}; vs dcnum: "
          f"{chunk_identity(dst / sample.relative_to(root), one / sample.relative_to(root))}")
    print(ratio_line("dcbulk command vs 2 dcnum loops side by side", best["two"], best["cmd"],
                     None if tiny else 1.0))
    print(ratio_line("dcbulk command vs dcnum loop (1 process)", best["one"], best["cmd"],
                     1.5 if tiny else 1.7))
    print(f"  CPU s dcbulk / dcnum loop: {best['cmd']['cpu'] / best['one']['cpu']:.2f} "
          f"(target <= 1.1)")
    return list(best.values())


def cmd_memory(args) -> list[dict]:
    rows = []
    for factor in (1, 10):
        src = ensure_source(args.workdir, args.base_events * factor)
        rows.append(command_row(args, f"dcbulk convert, {factor}x "
                                f"({src.stat().st_size / 1e6:.0f} MB)", src, src,
                                args.workdir / f"mem-{factor}", raw_bytes(src)))
    print("memory:")
    print_rows(rows)
    print(f"  peak RSS 10x / 1x: {rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f} (target < 1.2)")
    return rows


def cmd_table(args) -> list[dict]:
    """Ratio and throughput of every --compression choice on the demo archive."""
    root = args.workdir / "demo-archive"
    files = ensure_archive(root, 12, (100, 2000), seed=1)  # what `dcbulk demo` writes
    raw = sum(raw_bytes(f) for f in files)
    print(f"compression table: demo archive, {len(files)} files, {raw / 1e6:.0f} MB raw")
    print("| `--compression` | ratio (raw / output) | MB/s (raw, whole command) | CPU s |")
    print("|---|---|---|---|")
    rows = []
    for spec in args.choices:
        r = command_row(args, spec, files, root, args.workdir / f"demo-{spec.replace(':', '')}",
                        raw, "--compression", spec)
        rows.append(r)
        print(f"| `{spec}` | {r['ratio']:.2f} | {r['mb_s']:.0f} | {r['cpu']:.1f} |", flush=True)
    return rows


def run_child(kind: str, params: Sequence) -> None:
    """Hidden sub-command: one measured variant in a process of its own."""
    if kind == "dcnum":  # the 10-line loop a user writes today
        pairs, map_path = params
        keep = np.load(map_path) if map_path else None
        t0 = time.perf_counter()
        for src, dst in pairs:
            dcnum_copy(src, dst, keep)
        print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0}))
    elif kind == "api":  # dcbulk.convert on a cluster that is already up
        import psutil
        from distributed import Client

        import dcbulk
        from dcbulk.engine.client import make_local_cluster
        src, dst, map_path, workers, threads = params
        mapping = np.load(map_path) if map_path else None
        t0 = time.perf_counter()
        with make_local_cluster(n_workers=workers, threads_per_worker=threads) as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(len(cluster.workers))
            start = time.perf_counter() - t0
            # warm the workers (imports, first HDF5 use) with a tiny mapped conversion
            dcbulk.convert(src, dst + ".warm.rtdc", client=client, overwrite=True,
                           features=["deform", "image"], mapping=np.arange(10))
            os.unlink(dst + ".warm.rtdc")
            me = psutil.Process()

            def cpu() -> tuple[float, float]:
                own = me.cpu_times()
                kids = sum(c.cpu_times().user + c.cpu_times().system
                           for c in me.children(recursive=True))
                return own.user + own.system, kids

            c0, t1 = cpu(), time.perf_counter()
            dcbulk.convert(src, dst, client=client, mapping=mapping)
            seconds, c1 = time.perf_counter() - t1, cpu()
        print("RESULT " + json.dumps({"start_s": start, "convert_s": seconds,
                                      "cpu_root": c1[0] - c0[0],
                                      "cpu_workers": c1[1] - c0[1]}))
    else:
        raise SystemExit(f"unknown child kind {kind!r}")


def _external(module: str, argv: Sequence[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(f"scripts/{module}.py is not available: {exc}") from exc
    return int(mod.main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        run_child(argv[1], _child_params(argv[2]))
        return 0
    if argv[:1] == ["verify"]:
        return _external("bench_verify", argv[1:])
    if argv[:1] == ["modes"]:
        return _external("bench_modes", argv[1:])
    if argv[:1] == ["perfile"]:
        return _external("bench_perfile", argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", default="compress",
                   choices=["compress", "mapping", "archive", "tiny", "memory", "table", "all"])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench"))
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: dcbulk's local default shape)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default: "
                   "dcbulk's local default shape)")
    p.add_argument("--events", type=int, default=24000, help="events of the large file")
    p.add_argument("--files", type=int, default=30, help="files of the archive")
    p.add_argument("--min-events", type=int, default=300)
    p.add_argument("--max-events", type=int, default=1500)
    p.add_argument("--base-events", type=int, default=2000, help="memory: the 1x file")
    p.add_argument("--choices", nargs="+", default=CHOICES, help="table: --compression values")
    p.add_argument("--repeat", type=int, default=1, help="rounds (best one is shown)")
    p.add_argument("--idle-wait", type=float, default=0.0,
                   help="wait up to this many s for an idle machine before each run")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    todo = ["compress", "mapping", "archive", "memory"] if args.what == "all" else [args.what]
    byte_compile_dcbulk()
    print(machine_scaling(), flush=True)
    for what in todo:
        if what == "mapping":
            cmd_compress(args, mapped=True)
        else:
            {"compress": cmd_compress, "archive": cmd_archive, "tiny": cmd_archive,
             "memory": cmd_memory, "table": cmd_table}[what](args)
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
