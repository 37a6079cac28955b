#!/usr/bin/env python
"""Command line front end to :mod:`dcbulk.synth`: write synthetic .rtdc data.

Examples::

    python scripts/make_archive.py OUT --files 30 --events 100:5000 --compression none --seed 1
    python scripts/make_archive.py --single FILE --events 20000
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py

from dcbulk import synth
from dcbulk.errors import DcbulkError


def _events(text: str) -> int | tuple[int, int]:
    """Parse ``N`` or ``MIN:MAX``."""
    lo, _, hi = text.partition(":")
    try:
        return (int(lo), int(hi)) if hi else int(lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None


def _shape(text: str) -> tuple[int, int]:
    """Parse ``HxW``."""
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", type=Path, help="archive directory")
    p.add_argument("--single", type=Path, metavar="FILE", help="write one file instead")
    p.add_argument("--files", type=int, default=30, help="good files in the archive")
    p.add_argument("--events", type=_events, default=None,
                   help="events per file: N or MIN:MAX (default 100:5000, single 20000)")
    p.add_argument("--compression", default="zstd:5", help="zstd:N, gzip:N or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", choices=("tree", "flat"), default="tree")
    p.add_argument("--bad-files", type=int, default=0, help="broken files to add")
    p.add_argument("--image-shape", type=_shape, default=(80, 250), metavar="HxW")
    p.add_argument("--no-traces", action="store_true", help="omit fluorescence traces")
    p.add_argument("--contour", action="store_true", help="also write contours (--single)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    return p


def _describe(path: Path, base: Path) -> tuple[int, float]:
    """Print one line per file; return (events, MB)."""
    with h5py.File(path, "r") as h5:
        n = int(h5.attrs["experiment:event count"])
    mb = path.stat().st_size / 1e6
    print(f"{str(path.relative_to(base)):50s} {n:9d} events {mb:10.1f} MB")
    return n, mb


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface; return the exit code."""
    args = _parser().parse_args(argv)
    if (args.out is None) == (args.single is None):
        print("error: give either OUT or --single FILE", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        if args.single is not None:
            n = args.events if args.events is not None else 20000
            if not isinstance(n, int):
                print("error: --single needs --events N", file=sys.stderr)
                return 2
            paths = [synth.make_rtdc(args.single, n, seed=args.seed,
                                     compression=args.compression,
                                     image_shape=args.image_shape,
                                     with_traces=not args.no_traces,
                                     with_contour=args.contour, overwrite=args.overwrite)]
            base = args.single.parent
        else:
            paths = synth.make_archive(args.out, args.files,
                                       events=args.events or (100, 5000), seed=args.seed,
                                       compression=args.compression, layout=args.layout,
                                       bad_files=args.bad_files, image_shape=args.image_shape,
                                       with_traces=not args.no_traces,
                                       overwrite=args.overwrite)
            base = args.out
    except (DcbulkError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    total_n = total_mb = 0.0
    for path in paths:
        n, mb = _describe(path, base)
        total_n += n
        total_mb += mb
    print(f"{len(paths)} files, {int(total_n)} events, {total_mb:.1f} MB in {dt:.1f} s "
          f"({total_n / dt:.0f} events/s, {total_mb / dt:.1f} MB/s)")
    if args.out is not None and args.bad_files:
        broken = sorted(p for p in args.out.rglob("*.rtdc") if synth.broken_kind(p))
        for path in broken:
            print(f"broken ({synth.broken_kind(path)}): {path.relative_to(base)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
