"""Resume: what an earlier run left in the output, and what this run must still make.

The one module that decides, for every target of a run, whether it is finished (skip),
must be made (and whether its existing output may be replaced), or is blocked by an output
that is not this archive's: :func:`decide` (the manifest's record against the source and
the output on disk), :func:`settle` (that decision, adopting outputs a killed run finished
but could not record, through their provenance logs), :func:`refuse_overwrite` and
:func:`adopt_options` (the options fingerprint, including a reprocess function whose code
changed). The executor (:mod:`.executor`) calls these once per run, while it holds the
output directory's lock.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h5py

from ..errors import OutputExistsError, SourceNotFoundError
from ..partials import output_exists
from ..provenance import matches_source, provenance_of
from ..read.files import open_h5_readonly
from ..read.identifier import get_measurement_identifier
from .job import Target
from .manifest import Manifest
from .records import HEAD_BYTES, Decision, ManifestRecord, canonical_options, head_sha256
from .report import FileResult

__all__ = ["Step", "adopt_options", "adopt_output", "decide", "refuse_overwrite", "settle"]


@dataclass(frozen=True)
class Step:
    """A target the run makes: ``overwrite`` when its existing output may be replaced."""

    target: Target
    overwrite: bool
    reason: str


def decide(manifest: Manifest, target: Target) -> Decision:
    """Whether ``target`` must be made (see :class:`~dcbulk.bulk.records.Decision`).

    Skips only a ``done`` record of the current options whose source has the recorded
    size, mtime and first/last-MiB hash and whose output exists with the recorded size;
    output checksums are not recomputed (``dcbulk verify`` does that). A missing output, or
    one whose size is not the recorded one, is made again, as is one whose source has only a
    new mtime while its digest covers all of it (``"mtime changed"``: the same bytes); a
    recorded output that is there while its source changed otherwise (or may have: a new mtime
    of a larger source, whose bytes between its first and last MiB are not hashed) is
    ``"source changed"``, which :func:`settle` keeps unless forced.
    """
    entry, out = target.source, target.output
    try:
        st = os.stat(entry.path)
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"{entry.path}: source vanished") from exc

    def answer(reason: str, change: str | None = None) -> Decision:
        action = "skip" if reason == "finished" else "convert"
        return Decision(action, reason, entry.relpath, st.st_size, st.st_mtime_ns, change)

    record = manifest.records.get(entry.relpath)
    if record is None:
        return answer("unrecorded output exists" if output_exists(out) else "new")
    if record.status != "done":
        return answer("previously failed")
    if manifest.fingerprint is not None and record.fingerprint != manifest.fingerprint:
        return answer("options changed")
    try:
        out_size = os.stat(out).st_size
    except FileNotFoundError:
        return answer("output missing")
    if out_size != record.output_size:
        return answer("output size differs")
    try:
        head = head_sha256(entry.path)
    except OSError as exc:
        raise SourceNotFoundError(f"{entry.path}: cannot read ({exc.strerror})") from exc
    if (record.size, record.head_sha256) == (st.st_size, head):
        if record.mtime_ns == st.st_mtime_ns:
            return answer("finished")
        if st.st_size <= 2 * HEAD_BYTES:  # the digest covers every byte: the same content
            return answer("mtime changed")
    return answer("source changed", _change(record, entry.path, st.st_size, head))


def _change(record: ManifestRecord, path: str, size: int, head: str) -> str:
    """What changed of a recorded source: its size, measurement identifier, content (its
    first or last MiB), or only its modification time."""
    changes = []
    if size != record.size:
        changes.append(f"size {record.size} -> {size} bytes")
    now = _identifiers(path)
    if record.identifier and now and record.identifier not in now:
        changes.append(f"measurement identifier {record.identifier} -> {now[0]}")
    if changes:
        return ", ".join(changes)
    if head != record.head_sha256:
        return "content: its first or last MiB differ"
    return ("modification time only; its size and first and last MiB are as recorded, "
            "the bytes between them may differ")


def _identifiers(path: str) -> tuple[str, ...]:
    """The source's measurement identifier as dclab and as dcnum compute it (the manifest
    holds the one its mode's writer took), or none where it cannot be read."""
    try:
        with open_h5_readonly(path) as h5:
            found = (get_measurement_identifier(h5, compat="dclab"),
                     get_measurement_identifier(h5, compat="dcnum"))
    except (OSError, ValueError, KeyError):
        return ()
    return tuple(i for i in found if i)


def _kept(target: Target, change: str | None) -> FileResult:
    """A recorded output whose source changed since it was made: kept, the file fails."""
    error = (f"{target.output}: its source has changed since the output was made ({change}); "
             f"the output is kept, --force makes it again")
    return FileResult(target.source.path, target.output, "failed", bytes_in=target.size,
                      reason="source changed", error=error)


def _blocked(target: Target, *, recorded: bool = True) -> FileResult:
    why = ("and is not a finished output of this archive" if recorded else
           "(this mode keeps no manifest: a finished output cannot be told from another file)")
    error = OutputExistsError(f"{target.output}: exists {why}; use --force to replace it")
    return FileResult(target.source.path, target.output, "failed", bytes_in=target.size,
                      reason="output exists", error=str(error))


def settle(target: Target, manifest: Manifest | None, fingerprint: dict, *, resume: bool,
           force: bool, record: bool,
           finished: Callable[[str, str], bool] | None = None) -> FileResult | Step:
    """What the run does with ``target``: a settled result (skipped, or failed because an
    output that is not this archive's is in the way), or a :class:`Step` to make it.

    Without a manifest (jobs that are not resumable) an existing output is replaced only
    with ``force``. With ``record`` False (dry runs) nothing is entered in the manifest.
    ``finished`` is the job's :meth:`~dcbulk.bulk.job.Job.finished` (see :func:`adopt_output`).
    """
    if manifest is None:
        exists = output_exists(target.output)
        if exists and not force:
            return _blocked(target, recorded=False)
        return Step(target, overwrite=force, reason="replace" if exists else "new")
    decision = decide(manifest, target)
    if resume and not force and decision.action == "skip":
        return FileResult(target.source.path, target.output, "skipped",
                          bytes_in=decision.size, reason=decision.reason)
    if decision.reason == "unrecorded output exists" and not force:
        if resume and adopt_output(target, fingerprint, manifest, record=record,
                                   finished=finished):
            return FileResult(target.source.path, target.output, "skipped",
                              bytes_in=decision.size,
                              reason="finished (found by its provenance log)")
        return _blocked(target)
    if decision.reason == "source changed" and not force:
        return _kept(target, decision.change)
    # outputs recorded in the manifest are this archive's own: a missing one, one whose size
    # is not the recorded one, or one of other options (refused without force) is replaced
    return Step(target, overwrite=force or target.source.relpath in manifest,
                reason=decision.reason)


def adopt_output(target: Target, fingerprint: dict, manifest: Manifest, *,
                 record: bool = True,
                 finished: Callable[[str, str], bool] | None = None) -> bool:
    """Record an output that a killed run finished but could not enter in the manifest.

    Outputs appear under their final name only when complete (atomic rename), so an output
    one of whose provenance logs names this source (path, size, mtime) and these options
    (``fingerprint``, the options' fingerprint dict) is a finished result, whatever the mode
    (:func:`dcbulk.provenance.matches_source`). An output without such a log (dcnum's) is
    adopted when ``finished(source, output)`` (the job's hook) accepts it. With ``record``
    False (dry runs) nothing is written.
    """
    entry, out = target.source, target.output
    if not os.path.isfile(out):
        return False
    try:
        with h5py.File(out, "r") as h5:
            docs = provenance_of(h5)
            events = int(h5.attrs.get("experiment:event count", 0))
    except (OSError, ValueError, KeyError):
        return False
    st = os.stat(entry.path)
    doc = next((d for d in docs if matches_source(d, entry.path, fingerprint)), None)
    if doc is None and finished is not None and not docs and finished(entry.path, out):
        doc = {}
    if doc is None:
        return False
    if record:
        manifest.record_done(entry, output=out, output_size=os.path.getsize(out),
                             events=events, seconds=0.0,
                             identifier=doc.get("source identifier"), size=st.st_size,
                             mtime_ns=st.st_mtime_ns)
    return True


def refuse_overwrite(targets: Iterable[Target]) -> None:
    """``resume=False`` without ``force`` must not replace outputs: fail before any work.

    Raises
    ------
    OutputExistsError
        Naming the first existing output and how many more there are.
    """
    existing = [t.output for t in targets if output_exists(t.output)]
    if existing:
        more = f" and {len(existing) - 1} more output(s)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]}{more} exist; --no-resume (resume=False) redoes finished files only "
            f"together with --force (force=True), which replaces them")


def _without_code(options: dict | None) -> dict | None:
    if not options or not isinstance(options.get("job"), dict):
        return options
    job = dict(options["job"])
    job["func"] = {k: v for k, v in (job.get("func") or {}).items() if k != "code"}
    return {**options, "job": job}


def adopt_options(manifest: Manifest, fingerprint: dict, *, force: bool) -> None:
    """Let the manifest take this run's options (also in memory only, for dry runs).

    Options that differ from the finished outputs' are refused unless ``force``
    (:meth:`~dcbulk.bulk.manifest.Manifest.check_options`). A job function whose code
    changed (same name and options otherwise, e.g. an edited reprocess function) is
    accepted without ``force``: the manifest logs the change, and the outputs made with the
    old code, this archive's own, are made again (:func:`decide`: "options changed").
    """
    old = manifest.options
    new = json.loads(canonical_options(fingerprint))
    code_only = old is not None and old != new and _without_code(old) == _without_code(new)
    manifest.check_options(fingerprint, force=force or code_only)
