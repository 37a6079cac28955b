"""Bulk conversion of whole archives: finding sources, remembering finished outputs, running
many outputs at once (:mod:`.archive`), each made by one file task (:mod:`.filetask`)."""
from __future__ import annotations

from .archive import ArchiveReport, FileResult, convert_archive
from .filetask import ArchiveOptions, convert_file, filter_mapping, run_file_job
from .lock import output_lock
from .manifest import (MANIFEST_NAME, Decision, Manifest, ManifestRecord, clean_partials,
                       file_sha256, head_sha256, options_fingerprint, stale_partials)
from .sources import SourceEntry, discover_sources, output_path

__all__ = [
    "ArchiveOptions",
    "ArchiveReport",
    "FileResult",
    "convert_archive",
    "convert_file",
    "filter_mapping",
    "run_file_job",
    "MANIFEST_NAME",
    "Decision",
    "Manifest",
    "ManifestRecord",
    "SourceEntry",
    "clean_partials",
    "discover_sources",
    "file_sha256",
    "head_sha256",
    "options_fingerprint",
    "output_lock",
    "output_path",
    "stale_partials",
]
