#!/usr/bin/env python
"""Benchmark dcbulk's modes against dclab's commands (not a test; nothing is asserted).

Single responsibility: time ``split`` and ``join`` on one large file, ``condense`` and
``reprocess`` on an archive, each against what a user runs today (``dclab-split``,
``dclab-join``, a ``dclab-condense`` loop, a serial h5py/dcnum loop for a per-event image
statistic), one run each, and print wall and CPU seconds (whole process trees, sampled with
``bench_common.TreeSampler``) and their ratios. Every variant runs in a process of its own;
dcbulk runs as the ``dcbulk`` command as a user runs it (dcbulk decides where: threads of its
own process or a LocalCluster; ``--workers N`` asks for a cluster of N workers; start
included) and as ``dcbulk.modes.<mode>`` on a started, warmed cluster (the
call alone: what a long archive job sees per file). Scratch data lives in ``--workdir``.

Examples::

    python scripts/bench_modes.py all
    python scripts/bench_modes.py split --events 20000
    python scripts/bench_modes.py condense --files 24

Targets (issue 12): >= 2x dclab-split and >= 1.8x dclab-join on a large file, >= 3x a
dclab-condense loop on an archive.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from bench_common import (byte_compile_dcbulk, ensure_archive, load_text, machine_scaling,
                          run_subprocess)

TARGETS = {"split": 2.0, "join": 1.8, "condense": 3.0, "reprocess": None}
PY = sys.executable
BIN = Path(sys.executable).parent

_CONDENSE_LOOP = """
import sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from dclab.cli import condense
out = Path(sys.argv[1])
for i, src in enumerate(sys.argv[2:]):
    condense(path_in=src, path_out=out / f"{i:04d}-{Path(src).name}",
             store_ancillary_features=False)
"""

_REPROCESS_LOOP = """
import sys, os
import h5py, hdf5plugin, numpy as np
from dcnum.write import HDF5Writer, copy_metadata
out = sys.argv[1]
for i, src in enumerate(sys.argv[2:]):
    with h5py.File(src, "r") as h5:
        image = h5["events/image"]
        n, step = image.shape[0], 1000
        vals = np.concatenate([image[a:a + step].mean(axis=(1, 2)) for a in range(0, n, step)])
        dst = os.path.join(out, f"{i:04d}-{os.path.basename(src)}")
        with HDF5Writer(dst, mode="w") as hw:
            copy_metadata(h5, hw.h5)
            hw.store_feature_chunk("userdef1", vals)
            hw.store_basin(name="source", paths=[os.path.abspath(src)],
                           features=sorted(h5["events"]), description="source")
"""

_DCBULK_WARM = """
import json, sys, time
import dcbulk, dcbulk.modes
from dcbulk.engine.client import make_local_cluster
from dcbulk.synth import make_rtdc
from distributed import Client

def image_mean(features):
    return {"userdef1": features["image"].mean(axis=(1, 2))}

if __name__ == "__main__":
    mode, workers, out, kwargs, sources = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], \
        json.loads(sys.argv[4]), sys.argv[5:]
    with Client(make_local_cluster(n_workers=workers, dashboard_address=None)) as cl:
        tiny = make_rtdc(out + "-warmup.rtdc", 200, seed=1, overwrite=True)
        dcbulk.convert(tiny, out + "-warmup-out.rtdc", client=cl, overwrite=True)
        if mode == "reprocess":
            kwargs["func"] = image_mean
        if mode == "join":
            sources, out = sources, out + "/joined.rtdc"
        t0 = time.perf_counter()
        report = getattr(dcbulk.modes, mode)(sources, out, client=cl, **kwargs)
        inner = time.perf_counter() - t0
        assert report.ok, [f.error for f in report.failed]
    print("RESULT " + json.dumps({"inner": inner}))
"""


def measure(label: str, cmd: Sequence[str]) -> dict:
    result, smp = run_subprocess([str(c) for c in cmd])
    inner = f"   (the call alone: {result['inner']:.2f} s)" if "inner" in result else ""
    print(f"  {label:<44s} wall {smp.wall:8.2f} s   CPU {smp.cpu:8.2f} s   "
          f"peak RSS {smp.peak / 2**20:7.0f} MiB{inner}", flush=True)
    return {"label": label, "wall": smp.wall, "cpu": smp.cpu, "inner": result.get("inner")}


def _workers(args) -> list:
    """The command's ``--workers`` option, when one was asked for."""
    return [] if args.workers is None else ["--workers", args.workers]


def _where(args) -> str:
    return "dcbulk's choice" if args.workers is None else f"{args.workers} workers"


def warm(args, mode: str, out: Path, kwargs: dict, sources) -> dict:
    """dcbulk.modes.<mode> on a started, warmed cluster: ``inner`` is the call alone."""
    import json
    return measure(f"  dcbulk.modes.{mode}, cluster up", [
        PY, "-c", _DCBULK_WARM, mode, json.dumps(args.workers), fresh(out), json.dumps(kwargs),
        *sources])


def ratios(name: str, ref: dict, mine: dict, up: dict | None = None) -> None:
    target = TARGETS.get(name)
    goal = f" (target >= {target}x)" if target else ""
    print(f"  {name}: wall {ref['label'].split()[0]} / dcbulk = {ref['wall'] / mine['wall']:.2f}x"
          f"{goal}; CPU ratio {ref['cpu'] / max(mine['cpu'], 1e-9):.2f}x")
    if up is not None and up.get("inner"):
        print(f"  {name}: wall {ref['label'].split()[0]} / dcbulk with the cluster up = "
              f"{ref['wall'] / up['inner']:.2f}x")


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def large_file(args) -> Path:
    from dcbulk.synth import make_rtdc
    path = args.workdir / f"large-{args.events}ev.rtdc"
    if not path.exists():
        print(f"  generating {path} ...", flush=True)
        make_rtdc(path, args.events, seed=5, trace_length=200)
    return path


def check_same(mine: list[Path], theirs: list[Path], features=("deform", "image")) -> str:
    for a, b in zip(sorted(mine), sorted(theirs)):
        with h5py.File(a) as ha, h5py.File(b) as hb:
            for feat in features:
                if not np.array_equal(ha["events"][feat][:], hb["events"][feat][:]):
                    return f"DIFFERENT: {a.name} {feat}"
    return f"{len(mine)} outputs equal to dclab's in {', '.join(features)}"


def cmd_split(args) -> None:
    src = large_file(args)
    n = args.events // 4
    print(f"\n== split {args.events} events into files of {n}, load {load_text()} ==")
    ref = measure("dclab-split", [BIN / "dclab-split", src, "--path_out",
                                  fresh(args.workdir / "split-dclab"), "--split-events", n])
    mine = measure(f"dcbulk split ({_where(args)})",
                   [BIN / "dcbulk", "split", src, "-o", fresh(args.workdir / "split-dcbulk"),
                    "--events-per-file", n, *_workers(args), "-q"])
    up = warm(args, "split", args.workdir / "split-warm", {"events_per_file": n}, [src])
    ratios("split", ref, mine, up)
    print("  " + check_same(list((args.workdir / "split-dcbulk").glob("*.rtdc")),
                            list((args.workdir / "split-dclab").glob("*.rtdc"))))


def cmd_join(args) -> None:
    src = large_file(args)
    pieces = sorted((args.workdir / "split-dcbulk").glob("*.rtdc"))
    if len(pieces) < 2:
        cmd_split(args)
        pieces = sorted((args.workdir / "split-dcbulk").glob("*.rtdc"))
    print(f"\n== join {len(pieces)} pieces of {src.name}, load {load_text()} ==")
    out = fresh(args.workdir / "join")
    ref = measure("dclab-join", [BIN / "dclab-join", *pieces, "-o", out / "dclab.rtdc"])
    mine = measure(f"dcbulk join ({_where(args)})",
                   [BIN / "dcbulk", "join", *pieces, "-o", out / "dcbulk.rtdc",
                    *_workers(args), "-q"])
    up = warm(args, "join", args.workdir / "join-warm", {}, pieces)
    ratios("join", ref, mine, up)
    print("  " + check_same([out / "dcbulk.rtdc"], [out / "dclab.rtdc"]))


def archive(args) -> tuple[Path, list[Path]]:
    root = args.workdir / f"archive-{args.files}"
    return root, ensure_archive(root, args.files,
                                (args.archive_events // 4, args.archive_events), 3)


def cmd_condense(args) -> None:
    root, files = archive(args)
    print(f"\n== condense {len(files)} files, load {load_text()} ==")
    ref = measure("dclab-condense loop (no ancillaries)",
                  [PY, "-c", _CONDENSE_LOOP, fresh(args.workdir / "cond-dclab"), *files])
    mine = measure(f"dcbulk condense ({_where(args)})",
                   [BIN / "dcbulk", "condense", root, "-o",
                    fresh(args.workdir / "cond-dcbulk"), *_workers(args), "-q"])
    up = warm(args, "condense", args.workdir / "cond-warm", {}, [root])
    ratios("condense", ref, mine, up)


def cmd_reprocess(args) -> None:
    root, files = archive(args)
    print(f"\n== reprocess {len(files)} files (per-event image mean), load {load_text()} ==")
    ref = measure("serial h5py + dcnum loop",
                  [PY, "-c", _REPROCESS_LOOP, fresh(args.workdir / "rep-serial"), *files])
    mine = warm(args, "reprocess", args.workdir / "rep-dcbulk", {}, [root])
    ratios("reprocess", ref, mine, mine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="all",
                        choices=("all", "split", "join", "condense", "reprocess"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench-modes"))
    parser.add_argument("--workers", type=int, default=None,
                        help="ask for a cluster of N workers (default: dcbulk decides)")
    parser.add_argument("--events", type=int, default=8000, help="events of the large file")
    parser.add_argument("--files", type=int, default=16, help="files of the archive")
    parser.add_argument("--archive-events", type=int, default=2000,
                        help="events of the archive's largest file")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("figures are provisional on a shared machine: re-run on a quiet one")
    byte_compile_dcbulk()
    print(machine_scaling(), flush=True)
    steps = {"split": cmd_split, "join": cmd_join, "condense": cmd_condense,
             "reprocess": cmd_reprocess}
    for name, step in steps.items():
        if args.what in ("all", name):
            step(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
