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
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading)
import numpy as np
import psutil

logger = logging.getLogger(__name__)

MiB = 1024**2
TARGETS = {"dclab": 1.8, "dcnum": 1.6, "condense": 1.8, "growth": 1.2}
_FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 32015: "zstd"}


# -- measuring ---------------------------------------------------------------------------------

class TreeSampler:
    """Sample RSS (summed) and CPU seconds of a process and all its descendants.

    Use as a context manager; a daemon thread samples every ``interval`` seconds. CPU seconds
    are counted from the first sample on (processes that exit between two samples lose at
    most one interval). System-wide busy CPU seconds are recorded too, to spot interference.
    """

    def __init__(self, pid: int, interval: float = 0.1, *, existing: bool = True) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.existing = existing  # processes of the first sample count CPU from then on
        self._first = True
        self.peak = self.last = 0
        self._procs: dict[int, psutil.Process] = {}
        self._cpu0: dict[int, float] = {}
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            proc = self._procs.setdefault(proc.pid, proc)
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu = times.user + times.system
            self._cpu0.setdefault(proc.pid, cpu if self._first and self.existing else 0.0)
            self._cpu[proc.pid] = cpu
        self._first = False
        self.last = total
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self._sys0 = psutil.cpu_times()
        self._t0 = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.wall = time.perf_counter() - self._t0
        sys1 = psutil.cpu_times()
        self.system_busy = sum(getattr(sys1, f) - getattr(self._sys0, f)
                               for f in ("user", "system", "nice", "irq", "softirq"))

    @property
    def cpu(self) -> float:
        return sum(self._cpu[p] - self._cpu0.get(p, 0.0) for p in self._cpu)

    @property
    def root_cpu(self) -> float:
        """CPU seconds of the root process alone (scheduler + client for in-process runs)."""
        pid = self.root.pid
        return self._cpu.get(pid, 0.0) - self._cpu0.get(pid, 0.0)


def run_subprocess(cmd: Sequence[str]) -> tuple[dict, TreeSampler]:
    """Run ``cmd``, sampling its process tree; return its ``RESULT`` JSON (if any)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, existing=False)
    with sampler:
        out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    return (json.loads(lines[-1][7:]) if lines else {}), sampler


def child(kind: str, *params: str) -> list[str]:
    """Command line that runs this script's hidden ``_child`` sub-command."""
    return [sys.executable, os.path.abspath(__file__), "_child", kind, json.dumps(params)]


def warm_cache(path: Path, idle_wait: float = 60.0) -> None:
    """Read a file once (page cache), then wait up to ``idle_wait`` s for an idle machine."""
    with open(path, "rb") as fd:
        while fd.read(16 * MiB):
            pass
    t0 = time.perf_counter()
    while psutil.cpu_percent(interval=1.0) > 15 and time.perf_counter() - t0 < idle_wait:
        pass
    if time.perf_counter() - t0 > 1.5:
        print(f"  (waited {time.perf_counter() - t0:.0f} s for other processes to go idle)")


def have_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def load_text() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- data ----------------------------------------------------------------------------------------

def ensure_source(workdir: Path, n_events: int, seed: int = 42) -> Path:
    """Return an uncompressed synthetic file of ``n_events`` (reused when already valid)."""
    from dcbulk.synth import make_rtdc
    path = workdir / f"synth-{n_events}ev-s{seed}-raw.rtdc"
    if path.exists():
        try:
            with h5py.File(path, "r") as h5:
                if h5["events/image"].shape[0] == n_events and h5["events/image"].chunks:
                    return path
        except (OSError, KeyError):
            pass
    t0 = time.perf_counter()
    make_rtdc(path, n_events, seed=seed, compression="none", with_traces=False, overwrite=True)
    print(f"  generated {path} in {time.perf_counter() - t0:.1f} s")
    return path


def dataset_features(path: Path) -> list[str]:
    with h5py.File(path, "r") as h5:
        return [k for k, v in h5["events"].items() if isinstance(v, h5py.Dataset)]


def raw_nbytes(path: Path) -> int:
    with h5py.File(path, "r") as h5:
        return sum(v.size * v.dtype.itemsize for v in h5["events"].values()
                   if isinstance(v, h5py.Dataset))


def filters_of(ds: h5py.Dataset) -> str:
    plist = ds.id.get_create_plist()
    parts = []
    for i in range(plist.get_nfilters()):
        code, _, values, _ = plist.get_filter(i)
        name = _FILTER_NAMES.get(code, f"filter{code}")
        parts.append(f"{name}({values[0]})" if code in (1, 32015) and values else name)
    return "+".join(parts) or "none"


def describe_filters(path: Path) -> str:
    with h5py.File(path, "r") as h5:
        count = Counter(filters_of(v) for v in h5["events"].values() if isinstance(v, h5py.Dataset))
        img = h5["events/image"]
        return (", ".join(f"{k} x{n}" for k, n in count.items())
                + f"; image chunks {img.chunks}")


# -- verification --------------------------------------------------------------------------------

def _expected_blocks(src: h5py.Dataset, n_out: int, mapping: np.ndarray | None
                     ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, rows)`` of the expected output, ~64 MiB at a time."""
    row = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    step = max(1, 64 * MiB // row)
    for a in range(0, n_out, step):
        b = min(a + step, n_out)
        if mapping is None:
            yield a, b, src[a:b]
        else:
            idx = mapping[a:b]
            yield a, b, src[int(idx[0]):int(idx[-1]) + 1][idx - idx[0]]


def verify(src: Path, outputs: dict[str, Path], features: Sequence[str],
           mapping: np.ndarray | None = None, renumbered: Sequence[str] = ()) -> dict[str, str]:
    """Compare each output with the (mapped) source, feature by feature, bit for bit.

    ``renumbered`` outputs must hold ``index`` as ``1..n`` (dcbulk, mapped) instead of the
    source's mapped index values. Returns label -> summary.
    """
    bad: dict[str, list[str]] = {k: [] for k in outputs}
    notes: dict[str, set[str]] = {k: set() for k in outputs}
    with contextlib.ExitStack() as stack:
        h_src = stack.enter_context(h5py.File(src, "r"))
        h_out = {k: stack.enter_context(h5py.File(p, "r")) for k, p in outputs.items()}
        for feat in features:
            sds = h_src["events"][feat]
            n_out = sds.shape[0] if mapping is None else mapping.size
            for label, h5 in h_out.items():
                if feat not in h5["events"] or h5["events"][feat].shape[0] != n_out:
                    bad[label].append(f"{feat}(missing/shape)")
            for a, b, exp in _expected_blocks(sds, n_out, mapping):
                for label, h5 in h_out.items():
                    if feat not in h5["events"] or f"{feat}(missing/shape)" in bad[label]:
                        continue
                    got = h5["events"][feat][a:b]
                    want = (np.arange(a + 1, b + 1, dtype=got.dtype)
                            if feat == "index" and label in renumbered else exp)
                    if got.dtype != want.dtype:
                        notes[label].add(f"{feat} dtype {got.dtype} vs {want.dtype}")
                        same = np.array_equal(got.astype(bool) if feat == "mask" else got,
                                              want.astype(bool) if feat == "mask" else want)
                    else:
                        same = np.array_equal(got, want)
                    if not same and feat not in bad[label]:
                        bad[label].append(feat)
    return {k: (f"{len(features) - len(bad[k])}/{len(features)} features equal"
                + (f"; DIFFER: {', '.join(bad[k])}" if bad[k] else "")
                + (f"; note: {'; '.join(sorted(notes[k]))}" if notes[k] else ""))
            for k in outputs}


def chunk_identity(path_a: Path, path_b: Path, features: Sequence[str]) -> str:
    """How many stored chunks (compressed bytes) of two files are byte-identical."""
    same = total = 0
    with h5py.File(path_a, "r") as ha, h5py.File(path_b, "r") as hb:
        for feat in features:
            da, db = ha["events"][feat], hb["events"][feat]
            if da.chunks is None or da.chunks != db.chunks or da.shape != db.shape:
                continue
            for start in range(0, da.shape[0], da.chunks[0]):
                off = (start,) + (0,) * (da.ndim - 1)
                total += 1
                same += da.id.read_direct_chunk(off)[1] == db.id.read_direct_chunk(off)[1]
    return f"{same}/{total} chunks byte-identical"


# -- dcbulk in this process ---------------------------------------------------------------------

class Cluster:
    """A 2-worker LocalCluster plus client in this process, warmed up with a tiny convert."""

    def __init__(self, workdir: Path, n_workers: int) -> None:
        from distributed import Client

        import dcbulk
        from dcbulk.engine.client import make_local_cluster
        from dcbulk.synth import make_rtdc
        self.cluster = make_local_cluster(n_workers=n_workers, threads_per_worker=1,
                                          dashboard_address=None)
        self.client = Client(self.cluster)
        tiny = workdir / "warmup-300ev.rtdc"
        if not tiny.exists():
            make_rtdc(tiny, 300, seed=1, compression="none", with_traces=False)
        out = workdir / "out" / "warmup.rtdc"
        dcbulk.convert(tiny, out, client=self.client, overwrite=True)
        out.unlink()

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


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
    return _row(label, smp.wall, smp, out, raw, report.wall_seconds), report


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
                row = _row(label, smp.wall, smp, out, raw, res.get("seconds"))
            runs[key].append(row)
    return runs, report


def paired(runs: dict[str, list[dict]], num: str, den: str = "dcbulk") -> str:
    """Per-round ratios ``num / den`` (timed seconds, else wall) and their median."""
    def t(r: dict) -> float:
        return r["inner"] if r["inner"] is not None else r["wall"]
    ratios = [t(a) / t(b) for a, b in zip(runs[num], runs[den])]
    return (f"per round {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"median {float(np.median(ratios)):.2f}x")


def summarize_stream(data: list, wall: float, n_workers: int) -> str:
    """Busy time per worker, task counts and mean task duration from a task stream."""
    busy: dict[str, float] = {}
    n_tasks = 0
    durations = []
    writer = 0.0
    for rec in data:
        comp = sum(s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute")
        if "dcbulk-write" in str(rec["key"]):
            writer += comp
            continue
        n_tasks += 1
        durations.append(comp)
        busy[rec["worker"]] = busy.get(rec["worker"], 0.0) + comp
    util = ", ".join(f"{b:.1f} s ({b / wall:.0%})" for b in sorted(busy.values()))
    mean = float(np.mean(durations)) if durations else float("nan")
    return (f"{n_tasks} encode tasks, mean {mean * 1e3:.0f} ms; busy per worker: {util} "
            f"of {wall:.1f} s wall; idle slots {max(0.0, 1 - sum(busy.values()) / (wall * n_workers)):.0%}; "
            f"writer task span {writer:.1f} s")


def print_features(report) -> None:
    print("    feature           mode     chunks   raw MiB  stored MiB  ratio  worker s  s/GiB")
    small = [0, 0, 0, 0.0, 0]
    rows = sorted(report.features.items(), key=lambda kv: -kv[1]["seconds"])
    for name, f in rows:
        if f["raw_bytes"] < MiB:
            small = [small[0] + 1, small[1] + f["raw_bytes"], small[2] + f["stored_bytes"],
                     small[3] + f["seconds"], small[4] + f["chunks"]]
            continue
        print(f"    {name:<17} {f['mode']:<8} {f['chunks']:>6} {f['raw_bytes'] / MiB:>9.1f} "
              f"{f['stored_bytes'] / MiB:>11.1f} {f['raw_bytes'] / max(1, f['stored_bytes']):>6.2f} "
              f"{f['seconds']:>9.2f} {f['seconds'] / (f['raw_bytes'] / 1024**3):>6.2f}")
    if small[0]:
        print(f"    {small[0]} small features   {small[4]:>12} {small[1] / MiB:>9.1f} "
              f"{small[2] / MiB:>11.2f} {small[1] / max(1, small[2]):>6.2f} {small[3]:>9.2f}")
    total = sum(f["seconds"] for f in report.features.values())
    print(f"    total worker seconds {total:.2f} (wall {report.wall_seconds:.2f} s, "
          f"compression ratio {report.compression_ratio:.2f})")


# -- sub-commands ----------------------------------------------------------------------------------

def _row(label: str, wall: float, smp: TreeSampler, out: Path | None, raw: int,
         inner: float | None = None) -> dict:
    size = out.stat().st_size if out and out.exists() else 0
    return {"label": label, "wall": wall, "inner": inner, "peak": smp.peak, "cpu": smp.cpu,
            "other": max(0.0, smp.system_busy - smp.cpu), "size": size,
            "ratio": raw / size if size else float("nan")}


def print_table(rows: list[dict]) -> None:
    print(f"  {'variant':<38} {'wall s':>7} {'timed s':>8} {'peak RSS MiB':>13} {'CPU s':>6} "
          f"{'other CPU s':>11} {'out MiB':>8} {'raw/out':>7}")
    for r in rows:
        inner = f"{r['inner']:.2f}" if r["inner"] is not None else "-"
        print(f"  {r['label']:<38} {r['wall']:>7.2f} {inner:>8} {r['peak'] / MiB:>13.0f} "
              f"{r['cpu']:>6.1f} {r['other']:>11.1f} {r['size'] / MiB:>8.1f} {r['ratio']:>7.2f}")


def print_efficiency(rows: dict[str, dict], workers: int) -> None:
    """Parallel efficiency of the cluster run against dcbulk's own serial (inline) run."""
    serial, par = rows["serial"]["inner"], rows["dcbulk"]["inner"]
    print(f"  dcbulk serial / dcnum: {serial / rows['dcnum']['inner']:.2f} (same work per byte "
          f"if ~1); parallel efficiency serial / ({workers} x cluster-up): "
          f"{serial / (workers * par):.0%}")


def best(rows: list[dict]) -> dict:
    """The fastest of repeated runs (by timed seconds, else wall), with the highest peak."""
    key = min(rows, key=lambda r: r["inner"] if r["inner"] is not None else r["wall"])
    return dict(key, peak=max(r["peak"] for r in rows))


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
