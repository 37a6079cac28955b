"""Converting whole archives: :func:`convert_archive`, the convert job run by the executor.

Resumable, each file isolated, many outputs at once: see :mod:`.executor` (planning once,
executing the plan), :mod:`.resume` (what is finished) and :mod:`.filetask` (the convert
job on a worker).
"""
from __future__ import annotations

from collections.abc import Iterable

from ..arguments import flag_args
from .executor import Progress, run_job
from .filetask import ConvertJob
from .job import INLINE_BYTES
from .options import make_options
from .report import ArchiveReport

__all__ = ["convert_archive"]


def convert_archive(sources: Iterable, output_dir, *, include: str = "*.rtdc",
                    features=None, filter: str | None = None, compression: str = "zstd:5",
                    client=None, resume: bool = True, force: bool = False,
                    max_open_outputs: int | None = None, basin_to_source: bool = False,
                    dry_run: bool = False, inline_bytes: int = INLINE_BYTES, verify: bool = False,
                    follow_external: bool = False,
                    progress: Progress | None = None, timeout: float | None = None,
                    follow_links: bool = False) -> ArchiveReport:
    """Convert every source of an archive into ``output_dir``, mirroring the tree.

    Parameters
    ----------
    sources
        Files, directories (walked recursively) or glob patterns.
    output_dir
        Where outputs (and ``dcbulk-manifest.jsonl``, ``.dcbulk.lock``) go; one run at a
        time (a second one raises :class:`~dcbulk.errors.OutputLockedError`).
    include
        File-name pattern for files found in directories.
    features, filter, compression, basin_to_source
        Conversion options: feature selection, event filter expression over scalar
        features (e.g. ``"deform < 0.1"``), output filters, basin back to the source.
    client
        A ``distributed.Client``; by default a LocalCluster sized to the machine.
    resume
        Skip files the manifest records as finished (unchanged source, output present).
        ``False`` redoes them, which needs ``force`` where outputs exist (else
        :class:`~dcbulk.errors.OutputExistsError` before any work).
    force
        Redo every file, overwrite outputs and accept changed options.
    max_open_outputs
        Output files being written at once (default: the cluster's threads + 2).
    dry_run
        Only decide what would be done (status ``planned`` or ``skipped``).
    inline_bytes
        Files with at most this many uncompressed bytes are always encoded by their writer
        task; larger ones too while the remaining files keep every thread busy.
    progress
        Called as ``progress(result, done_count, total_count)`` after each file.
    verify
        Compare each output with its source before recording it as done (a mismatch fails
        the file and removes its output).
    follow_external
        Follow HDF5 external links, soft links out of their group, virtual datasets and
        external raw storage in sources (by default a file holding one fails with one line
        naming it; see :mod:`dcbulk.read.policy`).
    timeout
        Seconds one file's task may run (from when it starts on its worker); a file that
        exceeds it fails alone, without output. A task that never returns is abandoned
        (its future cancelled); its worker thread cannot be stopped and may go on running,
        but it commits no output after the limit and writes no manifest line.
    follow_links
        Walk symbolic links in source directories that lead out of the directory given
        (by default they are skipped with one warning line each).

    Returns
    -------
    ArchiveReport
        One entry per source, failures with their reason.
    """
    flag_args(verify=verify)
    options = make_options(features=features, filter=filter, compression=compression,
                           basin_to_source=basin_to_source, follow_external=follow_external)
    return run_job(ConvertJob(verify=verify), sources, output_dir, options, include=include,
                   resume=resume, force=force, dry_run=dry_run, client=client,
                   progress=progress, max_open_outputs=max_open_outputs,
                   inline_bytes=inline_bytes, timeout=timeout, follow_links=follow_links)
