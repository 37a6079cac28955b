"""``dcbulk convert``: the convert job (:class:`~dcbulk.bulk.ConvertJob`) as a sub-command."""
from __future__ import annotations

from ..bulk import ConvertJob
from ..command import Command

__all__ = ["COMMAND"]

COMMAND = Command(
    name="convert", help="convert files, directories or globs into DST",
    description="Convert .rtdc files (directories are walked, the tree is mirrored in DST). "
    "Re-running resumes: finished files are skipped.",
    job=lambda ns: ConvertJob(verify=ns.verify),
    options=("features", "filter", "basin_to_source", "resume", "max_open_outputs",
             "verify", "follow_external"))
