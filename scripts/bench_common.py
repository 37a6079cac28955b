"""Shared helpers of the benchmark scripts (not a test; nothing is asserted).

Single responsibility: measure (process-tree RSS and CPU sampling, subprocess runs, page-cache
warming with an idle wait), prepare inputs, verify outputs bit for bit, start a warmed
in-process cluster, and format result rows and ratios. The sub-commands that use them live
in ``benchmark.py``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading)
import numpy as np
import psutil

logger = logging.getLogger(__name__)

MiB = 1024**2
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


def warm_cache(paths: Path | Iterable[Path], idle_wait: float = 60.0) -> None:
    """Read files once (page cache), then wait up to ``idle_wait`` s for an idle machine."""
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
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


def event_datasets(path: Path) -> list[str]:
    """Every dataset below ``events``, group members as ``group/name`` (e.g. ``trace/fl1_raw``)."""
    names: list[str] = []
    with h5py.File(path, "r") as h5:
        h5["events"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                                else None)
    return sorted(names)


def events_nbytes(path: Path) -> int:
    """Uncompressed bytes of all datasets below ``events`` (traces included)."""
    with h5py.File(path, "r") as h5:
        return sum(h5["events"][n].size * h5["events"][n].dtype.itemsize
                   for n in event_datasets(path))


def ensure_archive(root: Path, n_files: int, events: tuple[int, int], seed: int) -> list[Path]:
    """Return the files of an uncompressed synthetic archive (regenerated unless it matches).

    A sibling ``<root>.json`` records the parameters and the files' sizes; a mismatch (or a
    missing/changed file) makes the archive be written anew.
    """
    import shutil

    from dcbulk.synth import make_archive
    marker = root.with_name(root.name + ".json")
    params = {"n_files": n_files, "events": list(events), "seed": seed}
    with contextlib.suppress(OSError, ValueError, KeyError):
        doc = json.loads(marker.read_text())
        files = [root / rel for rel in doc["files"]]
        if doc["params"] == params and all(f.stat().st_size == doc["files"][str(f.relative_to(root))]
                                           for f in files):
            return files
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    files = make_archive(root, n_files, events=events, seed=seed, compression="none")
    marker.write_text(json.dumps({"params": params, "files": {
        str(f.relative_to(root)): f.stat().st_size for f in files}}))
    print(f"  generated {root} ({n_files} files) in {time.perf_counter() - t0:.1f} s")
    return files


def split_by_size(files: Sequence[Path], parts: int) -> list[list[Path]]:
    """Split files into ``parts`` lists of about equal bytes (largest first to the lightest)."""
    out: list[list[Path]] = [[] for _ in range(parts)]
    load = [0] * parts
    for f in sorted(files, key=lambda p: (-p.stat().st_size, str(p))):
        i = load.index(min(load))
        out[i].append(f)
        load[i] += f.stat().st_size
    return [sorted(part) for part in out]

def n_events_of(path: Path) -> int:
    with h5py.File(path, "r") as h5:
        return int(h5["events/image"].shape[0])


def rtdc_bytes(root: Path) -> tuple[int, int]:
    """(number, total size) of the ``.rtdc`` files below ``root``."""
    sizes = [p.stat().st_size for p in root.rglob("*.rtdc")] if root.exists() else []
    return len(sizes), sum(sizes)


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


def timed(row: dict, metric: str = "timed") -> float:
    """A row's seconds: ``"timed"`` (inside the process, else wall) or ``"wall"``."""
    return row["inner"] if metric == "timed" and row["inner"] is not None else row["wall"]


def paired(runs: dict[str, list[dict]], num: str, den: str = "dcbulk", *,
           metric: tuple[str, str] = ("timed", "timed")) -> str:
    """Per-round ratios ``num / den`` (``metric`` of each, see :func:`timed`) and their median."""
    ratios = [timed(a, metric[0]) / timed(b, metric[1]) for a, b in zip(runs[num], runs[den])]
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


def summarize_archive_stream(data: list, wall: float, n_workers: int,
                             t0: float | None = None) -> str:
    """File tasks (``dcbulk-file-*``: inspect, plan, write; small files encoded inline) and
    encode tasks per worker, idle worker slots, and the tail where workers ran out of work
    (from the first worker's last task end to the last worker's).

    ``t0`` is the epoch time (``time.time()``) when the call began: the delay to the first
    task (source discovery, manifest, submission) is shown.
    """
    busy: dict[str, float] = {}
    last: dict[str, float] = {}
    first = min((s["start"] for rec in data for s in rec["startstops"]), default=0.0)
    kinds = {"file": [0, 0.0], "encode": [0, 0.0]}
    for rec in data:
        comp = [s for s in rec["startstops"] if s["action"] == "compute"]
        sec = sum(s["stop"] - s["start"] for s in comp)
        kind = kinds["file" if "dcbulk-file" in str(rec["key"]) else "encode"]
        kind[0] += 1
        kind[1] += sec
        busy[rec["worker"]] = busy.get(rec["worker"], 0.0) + sec
        last[rec["worker"]] = max([last.get(rec["worker"], 0.0)] + [s["stop"] for s in comp])
    util = ", ".join(f"{b:.1f} s ({b / wall:.0%})" for b in sorted(busy.values()))
    tail = max(last.values()) - min(last.values()) if len(last) > 1 else 0.0
    idle = max(0.0, 1 - sum(busy.values()) / (wall * n_workers))
    return (f"{kinds['file'][0]} file tasks ({kinds['file'][1]:.1f} s), {kinds['encode'][0]} "
            f"encode tasks ({kinds['encode'][1]:.1f} s); task time per worker {util} of {wall:.1f} s "
            f"(a large file's writer task counts while it waits seceded: > 100 % possible); "
            f"idle slots {idle:.0%}; tail (one worker done, other busy) {tail:.2f} s"
            + (f"; first task {first - t0:.2f} s after the call" if t0 is not None else ""))


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


# -- tables --------------------------------------------------------------------------------------

def make_row(label: str, wall: float, smp: TreeSampler, out: Path | None, raw: int,
             inner: float | None = None, *, size: int | None = None) -> dict:
    """One table row; ``size`` (bytes written) defaults to the size of the file ``out``."""
    if size is None:
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


def best(rows: list[dict]) -> dict:
    """The fastest of repeated runs (by timed seconds, else wall), with the highest peak."""
    key = min(rows, key=timed)
    return dict(key, peak=max(r["peak"] for r in rows))

