"""The resume manifest of an output directory: which sources are finished, and how.

``<output_dir>/dcbulk-manifest.json`` records, per source relative path, the source's size and
modification time, the output's size and SHA-256, and whether the conversion succeeded, plus the
conversion options (and their fingerprint) the outputs were made with. :meth:`Manifest.decide`
tells a re-run which sources to skip. The file is always replaced atomically; saves are batched
in time (``save_interval``), so a killed run loses at most the last seconds of records, whose
sources are then simply converted again. The JSON holds one record per line, so ``grep`` works.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import types
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from ..errors import ManifestError, SourceNotFoundError
from ..partials import clean_partials, stale_partials, write_atomic
from .records import (FORMAT_VERSION, STATUSES, Decision, ManifestRecord, canonical_options,
                      file_sha256, options_fingerprint, parse_document, render_document, utc_now)
from .sources import SourceEntry, output_path

# FORMAT_VERSION, Decision, ManifestRecord, file_sha256, options_fingerprint and the partial-file
# helpers live in records.py and dcbulk.partials; they stay importable from here.
__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "Decision", "Manifest", "ManifestRecord",
           "clean_partials", "file_sha256", "options_fingerprint", "stale_partials"]

logger = logging.getLogger(__name__)

#: file name of the manifest inside the output directory
MANIFEST_NAME = "dcbulk-manifest.json"


class Manifest:
    """The records of one output directory; create with :meth:`load`.

    Parameters
    ----------
    output_dir : str or path-like
        The output directory; the manifest lives in it as :data:`MANIFEST_NAME`.
    save_interval : float
        Seconds between automatic saves after records change: the first change after a save is
        written at once, later ones are collected and written by a timer at most this many
        seconds later. ``0`` saves on every change. :meth:`flush` or :meth:`close` (also at the
        end of a ``with`` block) writes what is pending.

    Examples
    --------
    >>> with Manifest.load(out) as manifest:                    # doctest: +SKIP
    ...     manifest.check_options(options, force=False)
    ...     for entry in entries:
    ...         decision = manifest.decide(entry)
    ...         if decision.action == "convert":
    ...             ...  # convert, then:
    ...             manifest.record_done(entry, events=n, size=decision.size,
    ...                                  mtime_ns=decision.mtime_ns)
    """

    def __init__(self, output_dir: str | PathLike, *, save_interval: float = 2.0,
                 read_only: bool = False) -> None:
        self._read_only = read_only
        self._output_dir = os.path.abspath(os.fspath(output_dir))
        self._save_interval = float(save_interval)
        self._options: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._created = utc_now()
        self._records: dict[str, ManifestRecord] = {}
        self._lines: dict[str, str] = {}  # relpath -> serialized record (records are frozen)
        self._lock = threading.RLock()
        self._dirty = False
        self._last_save = float("-inf")
        self._timer: threading.Timer | None = None
        self._timer_error: BaseException | None = None

    def __getstate__(self):
        raise TypeError("a Manifest belongs to the client process and cannot be pickled")

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def load(cls, output_dir: str | PathLike, *, save_interval: float = 2.0,
             read_only: bool = False) -> Manifest:
        """Read the manifest of ``output_dir``; an empty one when there is none.

        A ``read_only`` manifest (dry runs) accepts changes in memory but never writes.

        Raises
        ------
        ManifestError
            When the file cannot be read, is not valid JSON, has an unknown format version or
            holds a malformed record; the message names the file.
        """
        manifest = cls(output_dir, save_interval=save_interval, read_only=read_only)
        path = manifest.path
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return manifest
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from exc
        options, created, records = parse_document(path, raw)
        manifest._options = options
        manifest._fingerprint = (options_fingerprint(options) if options is not None else None)
        manifest._created = str(created or manifest._created)
        for relpath, data in records.items():
            try:
                manifest._set(relpath, ManifestRecord.from_dict(data))
            except ValueError as exc:
                raise ManifestError(f"{path}: record '{relpath}': {exc}") from exc
        manifest._dirty = False
        return manifest

    @property
    def output_dir(self) -> str:
        """Absolute path of the output directory."""
        return self._output_dir

    @property
    def path(self) -> str:
        """Path of the manifest file."""
        return os.path.join(self._output_dir, MANIFEST_NAME)

    @property
    def options(self) -> dict[str, Any] | None:
        """The options (as stored, JSON-normalized) of the current run, or None."""
        return None if self._options is None else json.loads(json.dumps(self._options))

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of :attr:`options`, or None."""
        return self._fingerprint

    @property
    def records(self) -> Mapping[str, ManifestRecord]:
        """Read-only view of the records by source relative path."""
        return types.MappingProxyType(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, relpath: object) -> bool:
        return relpath in self._records

    def counts(self) -> dict[str, int]:
        """Number of records per status."""
        counts = dict.fromkeys(STATUSES, 0)
        for record in self._records.values():
            counts[record.status] += 1
        return counts

    # -- options -------------------------------------------------------------------------
    def check_options(self, options: Mapping[str, Any], force: bool = False) -> None:
        """Adopt ``options`` for this run, refusing to mix outputs of different options.

        Raises
        ------
        ManifestError
            When finished outputs were made with other options and ``force`` is False; lists
            the differing keys. With ``force`` the new options are adopted and those outputs
            are reconverted (:meth:`decide` answers ``"options changed"``).
        """
        fingerprint = options_fingerprint(options)
        normalized = json.loads(canonical_options(options))
        with self._lock:
            if fingerprint == self._fingerprint:
                return
            stale = sum(1 for r in self._records.values()
                        if r.status == "done" and r.fingerprint != fingerprint)
            if stale:
                old = self._options or {}
                diffs = [f"{key}: {old.get(key, '<unset>')!r} -> "
                         f"{normalized.get(key, '<unset>')!r}"
                         for key in sorted(set(old) | set(normalized))
                         if old.get(key, "<unset>") != normalized.get(key, "<unset>")]
                if not force:
                    raise ManifestError(
                        f"{self.path}: {stale} finished output(s) were made with other options "
                        f"({'; '.join(diffs) or 'fingerprints differ'}); use the same options "
                        f"or another output directory, or pass --force (force=True) to "
                        f"reconvert them with the new options")
                logger.warning("%s: options changed (%s); %d finished output(s) will be "
                               "reconverted", self.path, "; ".join(diffs), stale)
            self._options, self._fingerprint = normalized, fingerprint
            self._changed()

    # -- decisions and records -----------------------------------------------------------
    def decide(self, entry: SourceEntry, output_dir: str | PathLike | None = None) -> Decision:
        """Whether ``entry`` must be converted (see :class:`Decision` for the reasons).

        Skips only a ``done`` record of the current options whose source has the recorded
        size and mtime and whose output exists with the recorded size; checksums are not
        recomputed (see :meth:`verify`).
        """
        try:
            st = os.stat(entry.path)
        except FileNotFoundError as exc:
            raise SourceNotFoundError(f"{entry.path}: source vanished") from exc
        out = output_path(entry, self._output_dir if output_dir is None else output_dir)

        def answer(reason: str) -> Decision:
            action = "skip" if reason == "finished" else "convert"
            return Decision(action, reason, entry.relpath, st.st_size, st.st_mtime_ns)

        record = self._records.get(entry.relpath)
        if record is None:
            return answer("unrecorded output exists" if os.path.lexists(out) else "new")
        if record.status != "done":
            return answer("previously failed")
        if self._fingerprint is not None and record.fingerprint != self._fingerprint:
            return answer("options changed")
        if (record.size, record.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return answer("source changed")
        try:
            out_size = os.stat(out).st_size
        except FileNotFoundError:
            return answer("output missing")
        if out_size != record.output_size:
            return answer("output size differs")
        return answer("finished")

    def record_done(self, entry: SourceEntry, *, output: str | PathLike | None = None,
                    output_size: int | None = None, checksum: str | None = None,
                    events: int | None = None, seconds: float | None = None,
                    identifier: str | None = None, size: int | None = None,
                    mtime_ns: int | None = None) -> ManifestRecord:
        """Record a finished output (call after it was renamed into place).

        Parameters
        ----------
        entry : SourceEntry
            The source.
        output : str or path-like, optional
            The output file, inside the output directory; default :func:`output_path`.
        output_size : int, optional
            The size the caller expects; the file's actual size is what gets recorded (a
            mismatch is logged).
        checksum : str, optional
            SHA-256 hex digest of the output; computed with :func:`file_sha256` when None.
        events, seconds, identifier
            Number of events written, conversion time, measurement identifier.
        size, mtime_ns : int, optional
            The source's size and ``st_mtime_ns`` as read for the conversion (e.g.
            :attr:`Decision.size`/:attr:`Decision.mtime_ns`), so a source modified during its
            conversion is redone next time; stat'ed now when None.

        Raises
        ------
        ManifestError
            If the output does not exist or lies outside the output directory.
        """
        out = (output_path(entry, self._output_dir) if output is None
               else os.path.abspath(os.fspath(output)))
        rel = os.path.relpath(out, self._output_dir).replace(os.sep, "/")
        if rel.startswith("../") or rel == "..":
            raise ManifestError(f"{out}: output lies outside {self._output_dir}")
        try:
            out_size = os.stat(out).st_size
        except FileNotFoundError as exc:
            raise ManifestError(f"{out}: cannot record as done, the output does not exist"
                                ) from exc
        if output_size is not None and output_size != out_size:
            logger.warning("%s: %d bytes on disk, %d reported; recording the size on disk",
                           out, out_size, output_size)
        if size is None or mtime_ns is None:
            size, mtime_ns = self._stat(entry)
        record = ManifestRecord(
            source=entry.path, size=size, mtime_ns=mtime_ns, status="done", output=rel,
            fingerprint=self._fingerprint or "", identifier=identifier, output_size=out_size,
            output_sha256=checksum or file_sha256(out), events=events, seconds=seconds,
            finished_at=utc_now())
        self._update(entry.relpath, record)
        return record

    def record_failed(self, entry: SourceEntry, error: BaseException | str, *,
                      seconds: float | None = None, size: int | None = None,
                      mtime_ns: int | None = None) -> ManifestRecord:
        """Record a failed conversion; an exception is stored as ``"Type: message"``."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        if size is None or mtime_ns is None:
            try:
                size, mtime_ns = self._stat(entry)
            except SourceNotFoundError:
                size, mtime_ns = -1, -1
        record = ManifestRecord(
            source=entry.path, size=size, mtime_ns=mtime_ns, status="failed",
            output=entry.relpath, fingerprint=self._fingerprint or "", seconds=seconds,
            error=str(error), finished_at=utc_now())
        self._update(entry.relpath, record)
        return record

    def verify(self, relpath: str) -> bool:
        """Recompute the output's SHA-256: True when it exists and matches the record."""
        record = self._records.get(relpath)
        if record is None:
            raise ManifestError(f"{self.path}: no record for '{relpath}'")
        if record.status != "done" or not record.output_sha256:
            return False
        try:
            return file_sha256(os.path.join(self._output_dir, record.output)) \
                == record.output_sha256
        except FileNotFoundError:
            return False

    @staticmethod
    def _stat(entry: SourceEntry) -> tuple[int, int]:
        try:
            st = os.stat(entry.path)
        except FileNotFoundError as exc:
            raise SourceNotFoundError(f"{entry.path}: source vanished") from exc
        return st.st_size, st.st_mtime_ns

    def _set(self, relpath: str, record: ManifestRecord) -> None:
        self._records[relpath] = record
        self._lines[relpath] = (json.dumps(relpath) + ":"
                                + json.dumps(record.to_dict(), separators=(",", ":")))

    def _update(self, relpath: str, record: ManifestRecord) -> None:
        with self._lock:
            self._set(relpath, record)
            self._changed()

    # -- saving --------------------------------------------------------------------------
    def _changed(self) -> None:
        """Mark unsaved changes; save now or arm the timer (lock held)."""
        self._dirty = True
        if self._read_only:
            return
        retry, self._timer_error = self._timer_error is not None, None
        wait = self._last_save + self._save_interval - time.monotonic()
        if wait <= 0 or retry:  # a failed timed save is retried (and raises) here
            self.save()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._timer_save)
            self._timer.daemon = True
            self._timer.start()

    def _timer_save(self) -> None:
        with self._lock:
            self._timer = None
            if self._dirty:
                try:
                    self.save()
                except Exception as exc:  # reported with the next change or flush
                    logger.error("%s: saving the manifest failed: %s", self.path, exc)
                    self._timer_error = exc

    def _serialize(self) -> bytes:
        return render_document(created=self._created, options=self._options,
                               fingerprint=self._fingerprint, lines=self._lines)

    def save(self) -> None:
        """Write the manifest now: temp file in the output directory, fsync, ``os.replace``.

        Raises
        ------
        ManifestError
            When the file cannot be written (the temp file is removed), or the manifest
            was loaded read-only.
        """
        if self._read_only:
            raise ManifestError(f"{self.path}: loaded read-only (dry run), not saved")
        with self._lock:
            data = self._serialize()
            os.makedirs(self._output_dir, exist_ok=True)
            try:
                write_atomic(self.path, data)
            except OSError as exc:
                raise ManifestError(f"{self.path}: cannot write manifest ({exc})") from exc
            self._dirty = False
            self._last_save = time.monotonic()

    def flush(self) -> None:
        """Write pending changes (if any) and disarm the timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_error = None  # the save below retries (and raises) if need be
            if self._dirty and not self._read_only:
                self.save()

    close = flush

    def stale_partials(self, output_dir: str | PathLike | None = None) -> list[Path]:
        """:func:`stale_partials` of ``output_dir`` (default: this manifest's directory)."""
        return stale_partials(self._output_dir if output_dir is None else output_dir)

    def clean_partials(self, output_dir: str | PathLike | None = None) -> list[Path]:
        """:func:`clean_partials`, never racing this manifest's own timed save."""
        with self._lock:
            return clean_partials(self._output_dir if output_dir is None else output_dir)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Manifest {self.path} records={len(self._records)}>"
