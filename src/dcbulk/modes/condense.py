"""Condense: every scalar feature of each file, with a basin to the source for the rest.

As ``dclab-condense``: the scalar features a file provides (its own and those of its basins;
no image, mask, trace or contour), its metadata, logs, tables and basins, plus a file basin
pointing back to the source so that images, masks and traces stay reachable. With a filter
only the matching events are kept, as dclab exports a filtered dataset (the basins then
carry the mapping, and the run identifier gets dcbulk's suffix for derived events). With
``ancillary`` dclab's ancillary scalar features (e.g. ``volume``, ``bright_perc_10``) are
computed on the workers by dclab (an optional dependency, ``pip install dcbulk[dclab]``).

Whole archives run through :func:`~dcbulk.convert_archive` with :class:`CondenseJob` as the
file task, so discovery, resume, progress and per-file isolation are the archive's own.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from ..arguments import flag_args
from ..bulk import ArchiveReport, Job, Target, make_options, run_job
from ..bulk.job import INLINE_BYTES
from ..command import Command
from ..engine import Report, read_features, store_features, write_output
from ..engine.client import current_worker
from ..errors import PlanError
from ..plan import ExtraMetadata, plan_conversion, scalar_features
from ..provenance import job_provenance
from ..read.ancillary import NO_DCLAB, ancillary_features, has_module
from ..read.filtering import event_filter
from ..read.inspect import inspect_source
from .common import CHUNKS_PER_BLOCK, job_result

__all__ = ["COMMAND", "CondenseJob", "condense", "feature_dtype", "require_module"]

def require_module(client, name: str = "dclab") -> None:
    """Raise a one-line PlanError unless ``name`` is importable on every worker."""
    found = client.run(has_module, name)
    missing = sorted(addr for addr, ok in found.items() if not ok)
    if missing:
        raise PlanError(NO_DCLAB.format(where=", ".join(missing)))


def feature_dtype(name: str) -> str:
    """The dtype dclab's writer stores ``name`` with (its ``FEATURES_UINT32``/``UINT64``
    rule; ``uint32`` for ``index``), read from dclab on the client."""
    # dclab (and scipy behind it) is heavy: imported only when a condense job is made
    from dclab.rtdc_dataset.writer import FEATURES_UINT32, FEATURES_UINT64
    if name in FEATURES_UINT32:
        return "uint32"
    if name in FEATURES_UINT64:
        return "uint64"
    raise PlanError(f"dclab's writer has no fixed dtype for feature '{name}'")


class CondenseJob(Job):
    """The job of :func:`condense` (``dcbulk condense``).

    A file with ``index`` is condensed by the conversion engine (its scalar features,
    stored chunks copied as stored, small files encoded by their writer task). Otherwise,
    or with ``ancillary``, the scalar features are read as dask arrays and stored with
    ``store_features`` (one writer, encoding on the workers; in a run made in dcbulk's own
    process, computed in the file's thread), with ``index`` written as
    ``1..n`` as dclab does and the ancillary features computed by dclab on this worker.
    With a filter (``options.filter``) the output holds the matching events only, as
    dclab's export of a filtered dataset: their scalar values (``index`` renumbered), a
    basin to the source carrying the mapping (so the source's images, masks and traces of
    exactly these events stay reachable) and a new run identifier. The ``dcbulk-condense``
    log carries what resume needs to adopt an output a killed run could not record.
    """

    name = "condense"
    verb = "condensed"
    in_process = True

    def __init__(self, *, ancillary: bool = False):
        self.ancillary = bool(ancillary)
        self.index_dtype = feature_dtype("index")  # on the client, where dclab is
        self.fingerprint = {"mode": "condense", "ancillary": self.ancillary}

    def check_cluster(self, client) -> None:
        """With ``ancillary``: dclab must be importable on every worker."""
        if self.ancillary:
            require_module(client, "dclab")

    def _log(self, options, features: list[str]) -> ExtraMetadata:
        """The ``dcbulk-condense`` provenance log's mode, options and details."""
        return ExtraMetadata(provenance=job_provenance(
            "condense", options=options.fingerprint_dict(),
            details={"ancillary": self.ancillary, "features": features}))

    def _convert(self, info, output, options, idx, scalars, *, overwrite, inline_bytes):
        """The engine's conversion of the scalar features (with this job's log)."""
        opts = replace(options, features=tuple(scalars), basin_to_source=True)
        plan = plan_conversion(info, output, features=opts.features, mapping=idx,
                               codec=options.codec, basin_to_source=True,
                               options=opts.fingerprint_dict())
        plan = replace(plan, extra=self._log(options, list(scalars)))
        return write_output(plan, inline=sum(g.nbytes for g in plan.groups) <= inline_bytes,
                            overwrite=overwrite)

    def _arrays(self, info, idx, scalars) -> tuple[dict, list[str]]:
        """The scalar features of the kept events as dask arrays (index, ancillaries added)
        and the names of those that are the source's own features."""
        import dask.array as da  # here, not at the top: dask.array (and scipy) cost ~0.2 s per process
        arrays = dict(read_features(info, scalars, mapping=idx,
                                    chunks_per_block=CHUNKS_PER_BLOCK)) if scalars else {}
        own = list(arrays)
        n_out = info.n_events if idx is None else int(idx.size)
        if ("index" not in arrays or idx is not None) and n_out:
            # an enumeration, as dclab writes it (also of a filtered export)
            arrays["index"] = da.arange(1, n_out + 1, dtype=self.index_dtype)
            own = [name for name in own if name != "index"]
        if self.ancillary:
            arrays.update({name: value if idx is None else value[idx] for name, value
                           in ancillary_features(info.path, arrays).items()})
        return arrays, own

    def make(self, target: Target, options, *, overwrite: bool,
             inline_bytes: int = INLINE_BYTES) -> Report:
        """Condense one source (a task on a worker, or a thread of dcbulk's process)."""
        t0 = time.perf_counter()
        source, output = target.source.path, target.output
        info = inspect_source(source)
        mask = event_filter(info, options.filter)
        idx = None if mask is None else np.flatnonzero(mask)
        scalars = scalar_features(info)
        if "index" in scalars and not self.ancillary:
            report = self._convert(info, output, options, idx, scalars,
                                   overwrite=overwrite, inline_bytes=inline_bytes)
            return job_result(info, report, t0)
        arrays, own = self._arrays(info, idx, scalars)
        if not arrays:
            raise PlanError(f"{info.path}: no scalar features to condense")
        kwargs = dict(metadata_from=info.path, basins=True, mapping=idx,
                      compression=options.codec, overwrite=overwrite, source_features=own,
                      extra=self._log(options, sorted(arrays)))
        if current_worker() is None:  # a run in dcbulk's process: computed in this thread
            return job_result(info, store_features(arrays, output, inline=True, **kwargs), t0)
        from distributed import worker_client
        with worker_client() as client:
            report = store_features(arrays, output, client=client, **kwargs)
        return job_result(info, report, t0)


def condense(sources: Iterable, output_dir, *, ancillary: bool = False,
             filter: str | None = None, compression: str = "zstd:5", client=None,
             resume: bool = True, force: bool = False, include: str = "*.rtdc",
             max_open_outputs: int | None = None, dry_run: bool = False,
             progress=None, timeout: float | None = None,
             follow_links: bool = False) -> ArchiveReport:
    """Condense every file of an archive into ``output_dir`` (the tree is mirrored).

    Parameters
    ----------
    sources
        Files, directories (walked recursively) or glob patterns.
    output_dir
        Where the condensed files and the manifest go.
    ancillary
        Also compute dclab's ancillary scalar features on the workers (needs dclab there).
    compression, client, resume, force, include, max_open_outputs, dry_run, progress
        As for :func:`~dcbulk.convert_archive`.
    timeout, follow_links
        As for :func:`~dcbulk.convert_archive` (seconds per file, from when its task
        starts; symbolic links out of the source directories).
    filter
        Keep only the matching events (a ``--filter`` expression, as for
        :func:`~dcbulk.convert_archive`): each output is then a filtered subset of its
        source (basin to the source with the mapping, new run identifier).

    Raises
    ------
    PlanError
        ``ancillary`` while dclab is missing on a worker (one line naming the workers).
    """
    flag_args(ancillary=ancillary)
    options = make_options(filter=filter, compression=compression, basin_to_source=True)
    return run_job(CondenseJob(ancillary=ancillary), sources, output_dir, options,
                   include=include, resume=resume, force=force, dry_run=dry_run,
                   client=client, progress=progress, max_open_outputs=max_open_outputs,
                   timeout=timeout, follow_links=follow_links)


def _arguments(parser) -> None:
    parser.add_argument("--ancillary", action="store_true", help="also compute dclab's "
                        "ancillary features (needs dclab on the workers)")
    # every output has a basin to its source: the run's options say so, as condense()'s do
    parser.set_defaults(basin_to_source=True)


COMMAND = Command(
    name="condense", help="scalar features only, with a basin to each source",
    description="As dclab-condense, for whole archives: every scalar feature, metadata and "
    "basins, and a basin to the source for images, masks and traces. Re-running resumes.",
    job=lambda ns: CondenseJob(ancillary=ns.ancillary),
    options=("filter", "resume", "max_open_outputs"),
    add_arguments=_arguments)
