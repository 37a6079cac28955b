"""The ``dcbulk process`` sub-command's own options: dcnum's pipeline keywords, spelled as
ChipStream's ``chipstream-cli`` spells them, the stall limit of a job and the worker
resources each job holds.

The options every job command shares (sources, ``-o``, ``--resume``, reports, cluster) are
:mod:`dcbulk.cli`'s; this module adds the rest and reads them back
(:func:`pipeline_from_args`, :func:`resources_from_args`).
"""
from __future__ import annotations

import argparse
import os

from ..errors import UsageError
from .process_options import PipelineOptions, parse_kwargs, parse_limit_events, require_dcnum
from .process_run import STALL_TIMEOUT, check_stall_timeout

__all__ = ["add_arguments", "compression_from_args", "pipeline_from_args",
           "resources_from_args"]

#: the worker resource one dcnum job holds by default (one job per worker)
DEFAULT_RESOURCES = {"dcnum": 1}


def _resources(text: str) -> dict[str, float]:
    """argparse type: ``NAME=N[,NAME=N]`` (dask's worker-resources syntax)."""
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"not NAME=N: {item!r}") from None
        if not name.strip() or out[name.strip()] <= 0:
            raise argparse.ArgumentTypeError(f"not NAME=N with N > 0: {item!r}")
    return {k: int(v) if v == int(v) else v for k, v in out.items()}


def _pixel_size(text: str) -> float:
    """argparse type: a pixel size in um, finite and > 0 (0: each file's own)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # NaN too: dcnum would make outputs of NaN areas
        raise argparse.ArgumentTypeError(f"expected a pixel size in um > 0 (0: each file's "
                                         f"own), got {text!r}")
    return value


def _seconds(text: str) -> float:
    """argparse type: seconds > 0 (``--stall-timeout``)."""
    try:
        return check_stall_timeout(float(text))
    except (ValueError, UsageError):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The pipeline's options (as chipstream-cli), ``-c/--compression``, ``--stall-timeout``
    and ``--resources``."""
    g = p.add_argument_group("pipeline (dcnum's job keywords)")
    g.add_argument("-b", "--background-method", default="sparsemed",
                   help="background method: sparsemed, rollmed, copy [sparsemed]")
    g.add_argument("-kb", dest="background_kwargs", action="append", default=[],
                   metavar="KEY=VALUE", help="background keyword (repeat for more)")
    g.add_argument("-s", "--segmentation-method", default="thresh",
                   help="segmenter: thresh, or torchmpo/torchsto with torch [thresh]")
    g.add_argument("-ks", dest="segmentation_kwargs", action="append", default=[],
                   metavar="KEY=VALUE", help="segmenter keyword, e.g. thresh=-8")
    g.add_argument("-kf", dest="feature_kwargs", action="append", default=[],
                   metavar="KEY=VALUE", help="feature keyword, e.g. haralick=False")
    g.add_argument("-kg", dest="gate_kwargs", action="append", default=[],
                   metavar="KEY=VALUE", help="gating keyword, e.g. online_gates=True")
    g.add_argument("-p", "--pixel-size", type=_pixel_size, default=0,
                   help="set the pixel size [um] (default: each file's own)")
    g.add_argument("--limit-events", default="0",
                   help="events to analyse: N, A-B or A-B-STEP ('n' for open) [all]")
    g.add_argument("--basin-strategy", choices=("drain", "tap"), default="drain",
                   help="drain: copy the input's features into each output; tap: basins "
                   "to the input instead (small outputs; chipstream-cli's default) [drain]")
    g.add_argument("-c", "--compression", default="zstd-5",
                   help="none or zstd-1 .. zstd-9 (chipstream-cli's spelling) [zstd-5]")
    p.add_argument("--stall-timeout", type=_seconds, default=STALL_TIMEOUT, metavar="SECONDS",
                   help="end a dcnum job (and its processes) that makes no progress for "
                   "this long, then run it again (3 attempts in all) [%(default)g]")
    p.add_argument("--resources", type=_resources, metavar="NAME=N",
                   help="worker resources each job holds [dcnum=1: one job per worker]; "
                   "e.g. GPU=1 for a GPU segmenter (workers started with --resources GPU=1)")


def pipeline_from_args(ns: argparse.Namespace) -> PipelineOptions:
    """The pipeline of the parsed options (one-line UsageError for a bad method or keyword).

    A local cluster of ``--workers N`` without ``--threads-per-worker`` shares the cores
    among its workers (a dcnum job per worker uses a worker's threads as its processes).
    """
    require_dcnum()
    data = {}
    if ns.pixel_size:
        data["pixel_size"] = ns.pixel_size
    if (mapping := parse_limit_events(ns.limit_events)) is not None:
        data["index_mapping"] = mapping
    seg = ns.segmentation_method
    if not (ns.scheduler or ns.scheduler_file) and ns.workers and not ns.threads_per_worker:
        ns.threads_per_worker = max(1, (os.cpu_count() or 1) // ns.workers)
    return PipelineOptions(
        data_kwargs=data, background_code=ns.background_method,
        background_kwargs=parse_kwargs("background", ns.background_method,
                                       ns.background_kwargs),
        segmenter_code=seg, segmenter_kwargs=parse_kwargs("segmenter", seg,
                                                          ns.segmentation_kwargs),
        feature_kwargs=parse_kwargs("feature", "legacy", ns.feature_kwargs),
        gate_kwargs=parse_kwargs("gate", "norm", ns.gate_kwargs),
        basin_strategy=ns.basin_strategy, compression=ns.compression)


def resources_from_args(ns: argparse.Namespace) -> dict:
    """The worker resources each job holds (``--resources``, default ``dcnum=1``)."""
    return dict(ns.resources or DEFAULT_RESOURCES)


def compression_from_args(ns: argparse.Namespace) -> str:
    """``-c/--compression`` (``zstd-5``) in dcbulk's codec spelling (``zstd:5``)."""
    return ns.compression.replace("-", ":")
