"""Archive-wide reprocessing: a user function turns each file's features into new features.

:func:`reprocess` is :func:`~dcbulk.convert_archive` with another file task
(:class:`ReprocessJob`): on a worker it reads the source's features lazily
(:func:`~dcbulk.read_features`), calls the user's function, and stores the returned dask
arrays with :func:`~dcbulk.store_features` (one writer, encode tasks on the workers), with
the source's metadata and basins and a basin back to the source. Discovery, the manifest,
resume, progress and per-file isolation are the archive's own; the function's identity
joins the options fingerprint, so a changed function redoes the finished files.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from ..arguments import feature_names
from ..bulk import ArchiveReport, Job, Target, make_options, run_job
from ..bulk.job import INLINE_BYTES
from ..engine import Report, check_new_features, read_features, store_features
from ..errors import DcbulkError, PlanError, one_line
from ..plan import ExtraMetadata
from ..provenance import job_provenance
from ..read.inspect import inspect_source
from .common import CHUNKS_PER_BLOCK, func_identity, job_result

__all__ = ["ReprocessJob", "reprocess"]


def _check_new(new, info, name: str) -> dict:
    """``new``, what the function ``name`` returned for the source ``info``, if it can be
    stored: a non-empty dict of arrays with one row per event, of names the source does not
    have (the output's own feature would hide the source's, which its basin reaches), whose
    names and dtypes :func:`~dcbulk.engine.check_new_features` accepts (here without '/': a
    name is no path)."""
    import dask.array as da  # here, not at the top: dask.array (and scipy) cost ~0.2 s per process
    if not isinstance(new, dict) or not new:
        raise PlanError(f"{name} must return a non-empty dict of feature name -> array, "
                        f"got {type(new).__name__}")
    for feat, arr in new.items():
        if not isinstance(arr, (da.Array, np.ndarray)):
            raise PlanError(f"{name} returned {type(arr).__name__} for '{feat}' "
                            f"(need a dask or numpy array)")
        if arr.ndim == 0 or arr.shape[0] != info.n_events:
            raise PlanError(f"{name} returned '{feat}' of shape {arr.shape}, but the file "
                            f"has {info.n_events} events")
    had = sorted(set(new) & set(info.features))
    if had:
        names = ", ".join(f"'{feat}'" for feat in had)
        raise PlanError(f"{name} returned {names}, which {info.path} has already; the "
                        f"output's own {names} would hide the source's (dclab and dcnum "
                        f"read it first); return it under a name the source does not have")
    check_new_features(new, name, nested=False)  # a name, not a path; no Python objects
    return new


class ReprocessJob(Job):
    """The job of :func:`reprocess`.

    Parameters
    ----------
    func
        Called as ``func(features)`` with a dict of dask arrays; returns a dict of new
        features (dask or numpy arrays, one row per event).
    features
        Features handed to ``func`` (``None``: all the source provides, basins included;
        they are lazy, so the ones ``func`` does not touch are never read).
    """

    name = "reprocess"
    verb = "reprocessed"

    def __init__(self, func: Callable, features=None):
        if not callable(func):
            raise PlanError(f"reprocess needs a function, got {type(func).__name__}")
        self.func = func
        names = feature_names(features)
        self.features = list(names) if names else None
        self.fingerprint = {"mode": "reprocess", "func": func_identity(func),
                            "features": self.features}

    def _log(self, options, features: list[str]) -> ExtraMetadata:
        """The ``dcbulk-reprocess`` provenance log's mode, options and details."""
        return ExtraMetadata(provenance=job_provenance(
            "reprocess", options=options.fingerprint_dict(),
            details={**self.fingerprint, "new features": features}))

    def _read(self, info):
        names = self.features or [n for n in info.features if not n.startswith("basinmap")]
        return read_features(info, names, chunks_per_block=CHUNKS_PER_BLOCK)

    def make(self, target: Target, options, *, overwrite: bool,
             inline_bytes: int = INLINE_BYTES) -> Report:
        """Run the function on one source and store its features (a task on a worker)."""
        t0 = time.perf_counter()
        source, output = target.source.path, target.output
        name = self.fingerprint["func"]["name"]
        info = inspect_source(source)
        try:
            new = _check_new(self.func(self._read(info)), info, name)
        except DcbulkError:
            raise
        # the user's function: a per-file failure, also sys.exit() (it killed the worker
        # four times over, then failed with dask's KilledWorker)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            return Report(source=source, output=output, error=f"{name} failed on "
                          f"{source}: {type(exc).__name__}: {one_line(exc)}",
                          error_type=type(exc))
        store = dict(metadata_from=source, basins=True, compression=options.codec,
                     overwrite=overwrite, extra=self._log(options, sorted(new)))
        if sum(arr.nbytes for arr in new.values()) <= inline_bytes:
            # small: computed and written by this task alone; it never waits for a task
            # queued behind a worker thread another file's function blocks
            report = store_features(new, output, inline=True, **store)
        else:
            from distributed import worker_client
            with worker_client() as client:  # leaves the thread pool while the writer runs
                report = store_features(new, output, client=client, **store)
        return job_result(info, report, t0)


def reprocess(sources: Iterable, output_dir, func: Callable, *, features=None,
              client=None, resume: bool = True, force: bool = False,
              compression: str = "zstd:5", include: str = "*.rtdc",
              max_open_outputs: int | None = None, dry_run: bool = False,
              progress=None, timeout: float | None = None,
              follow_links: bool = False) -> ArchiveReport:
    """Add features computed by ``func`` to every file of an archive, on the cluster.

    Parameters
    ----------
    sources
        Files, directories (walked recursively) or glob patterns.
    output_dir
        Where the outputs (mirroring the source tree) and the manifest go.
    func
        ``func(features) -> dict``: receives the file's features as lazy dask arrays
        (:func:`~dcbulk.read_features`) and returns new features as dask (or numpy) arrays
        of the same length, under names the source does not have (a file whose function
        returns one, e.g. ``deform``, fails in one line: the output's own feature would hide
        the source's). It runs on a worker; the arrays are computed there and stored by the
        output's one writer. Its qualified name and a hash of its code are recorded
        in the manifest: after the function's code changes (same name; edited body, defaults
        or captured values), the files it made are redone (the manifest logs it); another
        function, like other changed options, is refused unless ``force``.
    features
        The features ``func`` receives (default: all the file provides).
    client
        A ``distributed.Client`` (default: a LocalCluster sized to the machine).
    resume, force
        As for :func:`~dcbulk.convert_archive`.
    compression, include, max_open_outputs, dry_run, progress
        As for :func:`~dcbulk.convert_archive`.
    timeout
        Seconds one file may take (from when its task starts; ``func`` included): a file
        that exceeds it fails alone, without output. A ``func`` that never returns is
        abandoned; its worker thread cannot be stopped and keeps running (and holding that
        thread) until it returns, but it commits no output and writes no manifest line.
    follow_links
        As for :func:`~dcbulk.convert_archive`.

    Returns
    -------
    ArchiveReport
        Each output holds the new features, the source's metadata and basins, and a basin
        to the source, so every other feature stays reachable (dclab and dcnum).
    """
    return run_job(ReprocessJob(func, features), sources, output_dir,
                   make_options(compression=compression, basin_to_source=True), include=include, resume=resume,
                   force=force, dry_run=dry_run, client=client, progress=progress,
                   max_open_outputs=max_open_outputs, timeout=timeout,
                   follow_links=follow_links)
