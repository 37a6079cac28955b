"""Running jobs over whole archives: the job model (:mod:`.job`), options parsed once
(:mod:`.options`), a run planned once (:mod:`.runplan`) and the executor that executes that
plan (:mod:`.executor`), resume (:mod:`.resume`, :mod:`.manifest`), sources and the lock."""
from __future__ import annotations

from .archive import convert_archive
from .executor import execute, execute_here, run_job
from .filetask import ConvertJob, Part
from .forget import forget
from .job import INLINE_BYTES, CheckJob, Job, Target, failed_file, run_target
from .lock import output_lock
from .manifest import MANIFEST_NAME, Manifest
from .options import ArchiveOptions, make_options
from .records import Decision, ManifestRecord, file_sha256, head_sha256, options_fingerprint
from .report import ArchiveReport, FileResult
from .runplan import CheckPlan, RunPlan, check_plan, planned
from .sources import SourceEntry, discover_sources, output_path

__all__ = [
    "ArchiveOptions",
    "ArchiveReport",
    "CheckJob",
    "CheckPlan",
    "ConvertJob",
    "Decision",
    "FileResult",
    "INLINE_BYTES",
    "Job",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestRecord",
    "Part",
    "RunPlan",
    "SourceEntry",
    "Target",
    "check_plan",
    "convert_archive",
    "discover_sources",
    "execute",
    "execute_here",
    "failed_file",
    "forget",
    "file_sha256",
    "head_sha256",
    "make_options",
    "options_fingerprint",
    "output_lock",
    "output_path",
    "planned",
    "run_job",
    "run_target",
]
