"""Shared helpers of the benchmark scripts (not a test; nothing is asserted).

Single responsibility: measure (process-tree RSS and CPU seconds per process, subprocess
runs, page-cache warming), prepare inputs, compare outputs bit for bit, and print rows and
ratios. The sub-commands that use them live in ``benchmark.py`` (others add theirs in
``bench_verify.py`` and ``bench_modes.py``).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading)
import numpy as np
import psutil

MiB = 1024**2


class TreeSampler:
    """Sample RSS (summed, peak) and CPU seconds of a process and all its descendants.

    A daemon thread samples every ``interval`` seconds; CPU seconds are kept per process
    (processes that exit between two samples lose at most one interval), so that the
    root (client, scheduler, nannies of a LocalCluster) and its children (workers) can be
    told apart.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for proc in procs:
            proc = self._procs.setdefault(proc.pid, proc)
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self._cpu[proc.pid] = times.user + times.system
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self._t0 = time.perf_counter()
        self._sys0 = psutil.cpu_times()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._t0
        sys1 = psutil.cpu_times()
        self.machine_busy = sum(getattr(sys1, f) - getattr(self._sys0, f)
                                for f in ("user", "system", "nice", "irq", "softirq"))

    @property
    def cpu(self) -> float:
        return sum(self._cpu.values())

    @property
    def root_cpu(self) -> float:
        return self._cpu.get(self.root.pid, 0.0)


def run_subprocess(cmd: Sequence[str], env: dict | None = None) -> tuple[dict, TreeSampler]:
    """Run ``cmd`` sampling its process tree; return its last ``RESULT {json}`` line."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    with TreeSampler(proc.pid) as smp:
        out, err = proc.communicate()
    if proc.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd[:5])} failed ({proc.returncode}):\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    return (json.loads(lines[-1][7:]) if lines else {}), smp


def warm_cache(paths: Path | Iterable[Path], idle_wait: float = 0.0) -> None:
    """Read files once (page cache); then wait up to ``idle_wait`` s for an idle machine."""
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        with open(path, "rb") as fd:
            while fd.read(16 * MiB):
                pass
    t0 = time.perf_counter()
    while idle_wait and psutil.cpu_percent(interval=1.0) > 15 \
            and time.perf_counter() - t0 < idle_wait:
        pass


def load_text() -> str:
    """The machine's load averages (1, 5, 15 min), to print beside a measurement."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def byte_compile_dcbulk() -> None:
    """Byte-compile dcbulk's modules, as ``pip install`` does.

    An editable install under ``PYTHONDONTWRITEBYTECODE`` (set on this project's machines)
    has no ``.pyc`` files, so every dcbulk process (each dask worker too) would compile every
    module it imports at its start: ~0.45 s a process here, which an installed dcbulk (and
    dclab, the reference) does not pay. Python reads the files written here either way.
    """
    import compileall

    import dcbulk
    compileall.compile_dir(os.path.dirname(dcbulk.__file__), quiet=1)


_SCALING_SCRIPT = """
import sys, time
import numcodecs, numpy as np
block = np.random.default_rng(0).normal(100, 8, (52, 80, 250)).clip(0, 255).astype(np.uint8)
codec, t0, n = numcodecs.Zstd(level=5), time.perf_counter(), 0
while time.perf_counter() - t0 < float(sys.argv[1]):
    codec.encode(block)
    n += 1
print(n * block.nbytes / (time.perf_counter() - t0))
"""


def machine_scaling(seconds: float = 3.0) -> str:
    """What two busy processes get of this machine: the limit of any 2-process speed-up here.

    One process encodes image chunks with zstd 5 (the engine's work) for ``seconds``, then
    two at once; on a machine whose two cores are its own, the pair encodes ~2x as much.
    """
    def rates(n: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _SCALING_SCRIPT, str(seconds)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [float(p.communicate()[0]) for p in procs]

    alone, together = rates(1)[0], sum(rates(2))
    return (f"machine: zstd 5 on image chunks {alone / MiB:.0f} MiB/s in one process, "
            f"{together / MiB:.0f} MiB/s in two side by side: a 2-process limit of "
            f"{together / alone:.2f}x here (load {load_text()})")


def ensure_source(workdir: Path, n_events: int, seed: int = 42) -> Path:
    """An uncompressed synthetic file of ``n_events`` (reused when it exists)."""
    from dcbulk.synth import make_rtdc
    path = workdir / f"synth-{n_events}ev-s{seed}-raw.rtdc"
    with contextlib.suppress(OSError, KeyError):
        with h5py.File(path, "r") as h5:
            if h5["events/image"].shape[0] == n_events:
                return path
    workdir.mkdir(parents=True, exist_ok=True)
    make_rtdc(path, n_events, seed=seed, compression="none", with_traces=False, overwrite=True)
    return path


def ensure_archive(root: Path, n_files: int, events: tuple[int, int], seed: int,
                   compression: str = "none") -> list[Path]:
    """The files of a synthetic archive (regenerated unless it matches), uncompressed by
    default."""
    import shutil

    from dcbulk.synth import make_archive
    marker = root.with_name(root.name + ".json")
    params = {"n_files": n_files, "events": list(events), "seed": seed}
    if compression != "none":
        params["compression"] = compression
    with contextlib.suppress(OSError, ValueError, KeyError):
        doc = json.loads(marker.read_text())
        files = [root / rel for rel in doc["files"]]
        if doc["params"] == params and all(
                f.stat().st_size == doc["files"][str(f.relative_to(root))] for f in files):
            return files
    shutil.rmtree(root, ignore_errors=True)
    files = make_archive(root, n_files, events=events, seed=seed, compression=compression)
    marker.write_text(json.dumps({"params": params, "files": {
        str(f.relative_to(root)): f.stat().st_size for f in files}}))
    return files


def split_by_size(files: Sequence, parts: int, size=lambda p: p.stat().st_size) -> list[list]:
    """Split files (or items of ``size(item)`` bytes) into ``parts`` lists of about equal
    bytes (largest first to the lightest)."""
    out: list[list] = [[] for _ in range(parts)]
    load = [0] * parts
    for f in sorted(files, key=lambda p: (-size(p), str(p))):
        i = load.index(min(load))
        out[i].append(f)
        load[i] += size(f)
    return [sorted(part) for part in out]


def dcnum_copy(src: str | Path, dst: str | Path, keep: np.ndarray | None = None) -> None:
    """The 10-line loop a user writes today with dcnum: every feature (``keep``: a boolean
    filter over the events), trace groups chunk by chunk, then the metadata."""
    from dcnum.write import HDF5Writer, copy_features, copy_metadata, set_default_filter_kwargs
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(src, "r") as h_src, h5py.File(dst, "w") as h_dst:
        ev = h_src["events"]
        feats = [k for k, v in ev.items() if isinstance(v, h5py.Dataset)]
        n = ev[feats[0]].shape[0]
        mapping = np.flatnonzero(keep) if keep is not None else np.arange(n)
        copy_features(h_src, h_dst, feats, mapping=mapping, ds_kwds=set_default_filter_kwargs())
        writer = HDF5Writer(h_dst, ds_kwds=set_default_filter_kwargs())
        for group in [k for k, v in ev.items() if isinstance(v, h5py.Group) and k != "contour"]:
            for name, ds in ev[group].items():
                step = 10 * writer.get_best_nd_chunks(ds.shape[1:], ds.dtype)[0]
                for a in range(0, ds.shape[0], step):
                    writer.store_feature_chunk(name, ds[a:a + step], group_name=f"events/{group}")
        copy_metadata(h_src, h_dst)


def tree_bytes(files: Iterable[Path]) -> int:
    return sum(Path(f).stat().st_size for f in files)


def event_datasets(path: Path) -> list[str]:
    """Every dataset below ``events`` (group members as ``group/name``), contours excluded."""
    names: list[str] = []
    with h5py.File(path, "r") as h5:
        h5["events"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                                and not n.startswith("contour/") else None)
    return sorted(names)


def equal_to_source(src: Path, out: Path, mapping: np.ndarray | None = None,
                    renumbered: bool = False) -> str:
    """Compare every feature of ``out`` with ``src[mapping]``, 64 MiB at a time."""
    bad = []
    feats = event_datasets(src)
    with h5py.File(src, "r") as hs, h5py.File(out, "r") as ho:
        for feat in feats:
            sds, ods = hs["events"][feat], ho["events"].get(feat)
            n = sds.shape[0] if mapping is None else mapping.size
            if ods is None or ods.shape[0] != n:
                bad.append(f"{feat}(missing/shape)")
                continue
            step = max(1, 64 * MiB // max(1, sds[0:1].nbytes))
            for a in range(0, n, step):
                b = min(a + step, n)
                if feat == "index" and renumbered and mapping is not None:
                    want = np.arange(a + 1, b + 1)
                elif mapping is None:
                    want = sds[a:b]
                else:
                    idx = mapping[a:b]
                    want = sds[int(idx.min()):int(idx.max()) + 1][idx - idx.min()]
                got = ods[a:b]
                if feat == "mask":
                    got, want = got.astype(bool), np.asarray(want).astype(bool)
                if not np.array_equal(got, want):
                    bad.append(feat)
                    break
    return f"{len(feats) - len(bad)}/{len(feats)} features equal" + (
        f"; DIFFER: {', '.join(bad)}" if bad else "")


def chunk_identity(path_a: Path, path_b: Path) -> str:
    """How many stored chunks of the common features of two files are byte-identical."""
    same = total = 0
    with h5py.File(path_a, "r") as ha, h5py.File(path_b, "r") as hb:
        for feat in set(event_datasets(path_a)) & set(event_datasets(path_b)):
            da, db = ha["events"][feat], hb["events"][feat]
            if da.chunks is None or da.chunks != db.chunks or da.shape != db.shape:
                continue
            for start in range(0, da.shape[0], da.chunks[0]):
                off = (start,) + (0,) * (da.ndim - 1)
                total += 1
                same += da.id.read_direct_chunk(off)[1] == db.id.read_direct_chunk(off)[1]
    return f"{same}/{total} chunks byte-identical"


def row(label: str, smp: TreeSampler, raw: int, *, seconds: float | None = None,
        out_bytes: int | None = None, cpu: dict | None = None) -> dict:
    """A result row: wall (or the variant's own timing), CPU seconds, peak RSS, throughput."""
    wall = seconds if seconds is not None else smp.wall
    return {"label": label, "wall": wall, "cpu": smp.cpu, "root_cpu": smp.root_cpu,
            "peak_mib": smp.peak / MiB, "mb_s": raw / 1e6 / wall if wall else float("nan"),
            "ratio": raw / out_bytes if out_bytes else None, "cpu_split": cpu or {},
            "machine_busy": smp.machine_busy, "whole": smp.wall}


def print_rows(rows: Sequence[dict]) -> None:
    print(f"  {'variant':44s} {'wall s':>7s} {'MB/s':>7s} {'CPU s':>7s} {'peak MiB':>9s}  "
          "CPU split / notes")
    for r in rows:
        split = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_split"].items())
        print(f"  {r['label']:44s} {r['wall']:7.2f} {r['mb_s']:7.0f} {r['cpu']:7.2f} "
              f"{r['peak_mib']:9.0f}  {split}"
              + (f" (whole process {r['whole']:.2f} s)" if abs(r['whole'] - r['wall']) > .05
                 else ""))


def ratio_line(name: str, num: dict, den: dict, target: float | None = None,
               what: str = "wall") -> str:
    value = num[what] / den[what] if den[what] else float("nan")
    tgt = f" (target >= {target}x: {'met' if value >= target else 'MISSED'})" if target else ""
    return f"  {name}: {value:.2f}x{tgt}"
