"""The pairs ``dcbulk verify DIR`` checks: each finished output its directory's manifest
records, at the place the run puts it (a record naming another place is a verdict, never
followed), with its source and the run's options, and a verdict for every other ``.rtdc``
file, every source without output and what a run that did not end left there."""
from __future__ import annotations

import os
import shlex

from ..bulk.inprocess import markers
from ..bulk.manifest import Manifest
from ..bulk.records import ManifestRecord
from ..bulk.sources import SourceEntry, output_path
from ..errors import ManifestError, PlanError, UsageError
from ..partials import is_partial
from ..verify.checks import VerifyPair
from .process import output_relpath

__all__ = ["pairs_from_manifest"]


def pairs_from_manifest(output_dir: str) -> list[VerifyPair]:
    """The finished outputs of an output directory and their sources and options, and
    every other ``.rtdc`` file in it (checked as 'not in the manifest')."""
    output_dir = os.path.abspath(output_dir)
    manifest = Manifest.load(output_dir, read_only=True)
    if not os.path.isfile(manifest.path):
        raise ManifestError(f"{output_dir}: no dcbulk manifest; verify its files by name "
                            f"(dcbulk verify {os.path.join(output_dir, '*.rtdc')})")
    options = manifest.options or {}
    feats = options.get("features")
    job = options.get("job") or {}
    mode = job.get("mode")
    if mode not in (None, "process", "condense"):  # None: convert
        raise UsageError(f"{output_dir}: made by a dcbulk mode ({mode}), not converted or "
                         f"condensed; its outputs are not copies of their sources, so there "
                         f"is nothing to verify them against")
    processed = mode == "process"
    pairs = []
    for relpath, rec in manifest.records.items():
        if rec.status != "done":
            continue
        out = _place(output_dir, relpath, mode)
        if out is None or rec.output != _relative(out, output_dir):
            pairs.append(_elsewhere(manifest, relpath, rec, out))
            continue
        if os.path.islink(out):  # never written through one: replaced since (its source?)
            pairs.append(VerifyPair(output=out, source=rec.source, verdict=(
                f"{out}: is a symbolic link (to {os.readlink(out)}), not the output that was "
                f"written here")))
            continue
        pairs.append(VerifyPair(output=out, source=rec.source,
                                features=tuple(feats) if feats else None,
                                filter=options.get("filter"), size=rec.output_size,
                                source_size=rec.size, source_identifier=rec.identifier,
                                source_head=rec.head_sha256,
                                sha256=rec.output_sha256,
                                follow_external=bool(options.get("follow_external")),
                                processed=processed, compression=options.get("compression"),
                                condensed=mode == "condense",
                                ancillary=bool(job.get("ancillary")),
                                basin_to_source=(bool(options.get("basin_to_source"))
                                                 or mode == "condense"),
                                logged=not processed, mode=mode or "convert"))
    recorded = {p.output for p in pairs}
    rtdc, partials = _files_below(output_dir)
    pairs += [VerifyPair(output=path, source="", verdict=(
        f"{path}: not in its directory's manifest, so nothing says what it must equal; not "
        f"checked (verify it by name)")) for path in rtdc if path not in recorded]
    return sorted(pairs + _without_output(manifest, partials), key=lambda p: p.output)


def _place(output_dir: str, relpath: str, mode: str | None) -> str | None:
    """Where the run puts the output of the source recorded as ``relpath`` (the job's
    naming: ``process`` appends ``_dcn``), or None for a relative path no run places."""
    rel = output_relpath(relpath) if mode == "process" else relpath
    try:
        return output_path(SourceEntry("", rel, output_dir), output_dir)
    except PlanError:
        return None


def _relative(path: str, output_dir: str) -> str:
    """``path`` relative to ``output_dir``, POSIX style, as the manifest records it."""
    return os.path.relpath(path, output_dir).replace(os.sep, "/")


def _elsewhere(manifest: Manifest, relpath: str, rec: ManifestRecord,
               out: str | None) -> VerifyPair:
    """The verdict on a record whose output is not where the run puts it (another place,
    absolute, or outside the directory): one problem, the file it names never read."""
    if out is None:
        return VerifyPair(output=manifest.path, source=rec.source, verdict=(
            f"{manifest.path}: the record of {rec.source} has the relative path {relpath!r}, "
            f"which no output of this directory has; not followed"))
    return VerifyPair(output=out, source=rec.source, verdict=(
        f"{out}: the manifest records the output of {rec.source} as {rec.output!r}, not "
        f"here where the run puts it; not followed"))


def _without_output(manifest: Manifest, partials: list[str]) -> list[VerifyPair]:
    """One settled pair per source the manifest says has no output here: its conversion
    failed, or a run planned it and never recorded it (killed, or still running), and one
    for the ``partials`` (files below the directory) or marker such a run leaves."""
    pairs = []
    for relpath, rec in manifest.records.items():
        if rec.status != "done":  # labelled by its key, never by the record's output
            pairs.append(VerifyPair(output=os.path.join(manifest.output_dir, relpath),
                                    source=rec.source, verdict=(
                f"{rec.source}: has no output here: it failed ({rec.error})"
                + _gone(rec.source, manifest.output_dir))))
    for relpath, source in manifest.planned.items():
        if relpath not in manifest.records:
            pairs.append(VerifyPair(output=os.path.join(manifest.output_dir, relpath),
                                    source=source, verdict=(
                f"{source}: has no output here: a run set out to make it and never "
                f"recorded it (killed, or still running); re-run its command"
                + _gone(source, manifest.output_dir))))
    left = partials + markers(manifest.output_dir)
    if left:
        pairs.append(VerifyPair(output=str(left[0]), source="", verdict=(
            f"{manifest.output_dir}: {len(left)} file(s) of a run that did not end (e.g. "
            f"{left[0]}); re-run its command to finish it")))
    return pairs


def _gone(source: str, output_dir: str) -> str:
    """What a line about a source without output adds when the source is gone too."""
    return "" if os.path.lexists(source) else (
        f"; its source is gone too (if left out on purpose: dcbulk forget "
        f"{shlex.quote(output_dir)} {shlex.quote(source)})")


def _files_below(directory: str) -> tuple[list[str], list[str]]:
    """The ``.rtdc`` files below ``directory`` (hidden ones too) and its partial files
    (sorted), in one walk."""
    rtdc, partials = [], []
    for root, _dirs, files in os.walk(directory):
        rtdc += [os.path.join(root, f) for f in files if f.endswith(".rtdc")]
        partials += [os.path.join(root, f) for f in files if is_partial(f)]
    return rtdc, sorted(partials)
