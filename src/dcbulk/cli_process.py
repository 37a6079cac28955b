"""The ``dcbulk process`` sub-command's options: dcnum's pipeline keywords, spelled as
ChipStream's ``chipstream-cli`` spells them, mapped onto :func:`dcbulk.modes.process`."""
from __future__ import annotations

import argparse
import contextlib
import functools

from .cli_options import add_source_args

__all__ = ["add_process_parser", "process_call"]


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


def add_process_parser(sub, add_cluster_args) -> None:
    """The ``process`` sub-parser (its cluster options from ``add_cluster_args``)."""
    p = sub.add_parser(
        "process", help="run dcnum's pipeline on every measurement (outputs *_dcn.rtdc)",
        description="Background correction, segmentation, feature extraction and gating "
        "with dcnum, one job per measurement on the dask workers (the tree is mirrored, "
        "outputs named <stem>_dcn.rtdc as by chipstream-cli). Options as chipstream-cli; "
        "defaults as dcnum's DCNumPipelineJob. Needs pip install 'dcbulk[dcnum]'. "
        "Re-running resumes.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="file, directory or glob")
    p.add_argument("-o", "--output", required=True, metavar="DST", help="output directory")
    p.add_argument("--include", default="*.rtdc", help="file pattern in directories [*.rtdc]")
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
    g.add_argument("-p", "--pixel-size", type=float, default=0,
                   help="set the pixel size [um] (default: each file's own)")
    g.add_argument("--limit-events", default="0",
                   help="events to analyse: N, A-B or A-B-STEP ('n' for open) [all]")
    g.add_argument("--basin-strategy", choices=("drain", "tap"), default="drain",
                   help="drain: copy the input's features into each output; tap: basins "
                   "to the input instead (small outputs; chipstream-cli's default) [drain]")
    g.add_argument("-c", "--compression", default="zstd-5",
                   help="none or zstd-1 .. zstd-9 [zstd-5]")
    p.add_argument("--resources", type=_resources, metavar="NAME=N",
                   help="worker resources each job holds [dcnum=1: one job per worker]; "
                   "e.g. GPU=1 for a GPU segmenter (workers started with --resources GPU=1)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files finished by an earlier run [on]")
    p.add_argument("--force", action="store_true",
                   help="redo all files, replace outputs, accept a changed pipeline")
    p.add_argument("--max-open-outputs", type=int, metavar="N")
    p.add_argument("--report", metavar="JSON", help="write a JSON summary per file")
    p.add_argument("--performance-report", metavar="HTML",
                   help="write dask's performance report")
    p.add_argument("--dry-run", action="store_true", help="show what would be done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_source_args(p)
    add_cluster_args(p)


def process_call(ns):
    """The function, keyword arguments and cluster settings of ``dcbulk process``.

    Returns ``(process, kwargs, settings)``: ``settings()`` is a context manager with the
    dask configuration a cluster started for this run needs (non-daemonic workers that
    offer the jobs' resources).
    """
    import dask

    from .modes.process import RESOURCE, cluster_settings, process
    from .modes.process_options import (PipelineOptions, parse_kwargs, parse_limit_events,
                                        require_dcnum)
    require_dcnum()
    data = {}
    if ns.pixel_size:
        data["pixel_size"] = ns.pixel_size
    if (mapping := parse_limit_events(ns.limit_events)) is not None:
        data["index_mapping"] = mapping
    seg = ns.segmentation_method
    pipeline = PipelineOptions(
        data_kwargs=data, background_code=ns.background_method,
        background_kwargs=parse_kwargs("background", ns.background_method,
                                       ns.background_kwargs),
        segmenter_code=seg, segmenter_kwargs=parse_kwargs("segmenter", seg,
                                                          ns.segmentation_kwargs),
        feature_kwargs=parse_kwargs("feature", "legacy", ns.feature_kwargs),
        gate_kwargs=parse_kwargs("gate", "norm", ns.gate_kwargs),
        basin_strategy=ns.basin_strategy, compression=ns.compression)
    resources = ns.resources or {RESOURCE: 1}
    kwargs = dict(pipeline=pipeline, resources=resources, include=ns.include,
                  resume=ns.resume, force=ns.force, max_open_outputs=ns.max_open_outputs,
                  timeout=ns.timeout_per_file, follow_links=ns.follow_links)
    local = not (ns.scheduler or ns.scheduler_file)
    if local and ns.workers and not ns.threads_per_worker:  # a job per worker: share the cores
        import os
        ns.threads_per_worker = max(1, (os.cpu_count() or 1) // ns.workers)
    settings = (functools.partial(dask.config.set, cluster_settings(resources=resources))
                if local else contextlib.nullcontext)
    return process, kwargs, settings
