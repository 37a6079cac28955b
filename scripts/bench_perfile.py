#!/usr/bin/env python
"""Benchmark the per-file work of the engine against dcnum's (not a test; nothing is asserted).

Single responsibility: the CPU seconds one thread spends on each file -- dcbulk's inspection,
plan and writer (``write_output``, blocks computed in the writer, as a worker does for a
small file) against the dcnum loop of ``benchmark.py archive`` (``bench_common.dcnum_copy``)
-- alternating file by file in one process, so that both sides meet the same machine: on a
shared machine a whole run varies by a third from one minute to the next, while this ratio
holds to a few per cent. It is the part of a many-file run that neither cores nor a cluster
change; what a cluster adds (processes, dask's bookkeeping) is ``benchmark.py tiny``'s.

    python scripts/bench_perfile.py --workdir /tmp/dcbulk-bench --files 60
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/dcbulk-bench"))
    p.add_argument("--files", type=int, default=60, help="files of the tiny archive to use")
    p.add_argument("--compression", default="zstd:5")
    args = p.parse_args(argv)
    from bench_common import byte_compile_dcbulk, dcnum_copy, ensure_archive

    from dcbulk.codec import parse_compression
    from dcbulk.engine.writer import write_output
    from dcbulk.plan import plan_conversion
    from dcbulk.read.inspect import inspect_source
    byte_compile_dcbulk()
    # the archive of ``benchmark.py tiny`` (1 000 files of 10-40 events, zstd 1)
    files = ensure_archive(args.workdir / "tiny-archive", 1000, (10, 40), seed=5,
                           compression="zstd:1")[:args.files]
    out = args.workdir / "perfile-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    codec = parse_compression(args.compression)

    def dcbulk_file(src: Path, dst: Path) -> None:
        plan = plan_conversion(inspect_source(src), str(dst), codec=codec)
        write_output(plan, inline=True)

    for i, src in enumerate(files[:3]):  # warm: imports, first HDF5 use
        dcbulk_file(src, out / f"warm-{i}.rtdc")
        dcnum_copy(src, out / f"warm-dcnum-{i}.rtdc")
    spent = {"dcbulk": 0.0, "dcnum": 0.0}
    for i, src in enumerate(files):
        t0 = time.process_time()
        dcbulk_file(src, out / f"dcbulk-{i}.rtdc")
        t1 = time.process_time()
        dcnum_copy(src, out / f"dcnum-{i}.rtdc")
        spent["dcbulk"] += t1 - t0
        spent["dcnum"] += time.process_time() - t1
    n = len(files)
    print(f"per file, one thread, {n} files of the tiny archive alternating: dcbulk "
          f"{spent['dcbulk'] / n * 1e3:.1f} ms, dcnum {spent['dcnum'] / n * 1e3:.1f} ms "
          f"(CPU dcbulk / dcnum {spent['dcbulk'] / spent['dcnum']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
