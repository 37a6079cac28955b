"""The resume manifest of an output directory: which sources are finished, and how.

``<output_dir>/dcbulk-manifest.jsonl`` is an append-only JSON Lines log: a header line, an
options line whenever a run adopts (new) options, a line naming the sources each run sets out
to make (so verify can tell a run that never ended), and one line per finished or failed
file, written and fsynced as soon as that file is settled. The last line for a source wins. It is
read once, when a run starts; a torn last line (a crash while appending) is ignored and cut
off before the next append, so a killed run loses at most the file that was being recorded,
which is then simply converted again. A log that has grown to more than twice its live
records is compacted when loaded (rewritten atomically). Only one run at a time may append:
:func:`dcbulk.bulk.lock.output_lock` guards the directory.

A record keeps the source's size, mtime and the SHA-256 of its first and last MiB
(:func:`~dcbulk.bulk.records.head_sha256`), so a source rewritten with its mtime restored is
seen as changed; the output's SHA-256 is a field filled only where it is computed anyway
(verification), never by re-reading every output after writing it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import types
from collections.abc import Mapping
from os import PathLike
from typing import Any

from ..errors import ManifestError, SourceNotFoundError
from ..nofollow import open_nofollow
from ..partials import clean_partials, stale_partials, write_atomic
from .records import (FORMAT_VERSION, Decision, ManifestRecord, canonical_options,
                      file_sha256, forgotten_line, head_sha256, header_line,
                      options_fingerprint, options_line, parse_line, planned_line, record_line,
                      utc_now)
from .sources import SourceEntry, output_path

# FORMAT_VERSION, Decision, ManifestRecord, file_sha256, options_fingerprint and the partial-file
# helpers live in records.py and dcbulk.partials; they stay importable from here.
__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "Decision", "Manifest", "ManifestRecord",
           "clean_partials", "file_sha256", "head_sha256", "options_fingerprint",
           "stale_partials"]

logger = logging.getLogger(__name__)

#: file name of the manifest inside the output directory
MANIFEST_NAME = "dcbulk-manifest.jsonl"
#: the JSON document of dcbulk <= 0.x, no longer read (the new log starts empty beside it)
OLD_MANIFEST_NAME = "dcbulk-manifest.json"


class Manifest:
    """The records of one output directory; create with :meth:`load`.

    Parameters
    ----------
    output_dir : str or path-like
        The output directory; the manifest lives in it as :data:`MANIFEST_NAME`.
    read_only : bool
        Accept changes in memory but never write (dry runs).

    Examples
    --------
    >>> manifest = Manifest.load(out)                            # doctest: +SKIP
    >>> manifest.check_options(options, force=False)             # doctest: +SKIP
    >>> manifest.record_done(entry, events=n)  # after the output was renamed into place
    """

    def __init__(self, output_dir: str | PathLike, *, read_only: bool = False) -> None:
        self._read_only = read_only
        self._output_dir = os.path.abspath(os.fspath(output_dir))
        self._options: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._created = utc_now()
        self._records: dict[str, ManifestRecord] = {}
        self._planned: dict[str, str] | None = None
        self._lock = threading.RLock()
        self._torn_at: int | None = None  # byte offset of a torn last line, cut before appending
        self._exists = False
        self._lines = 0

    def __getstate__(self):
        raise TypeError("a Manifest belongs to the client process and cannot be pickled")

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def load(cls, output_dir: str | PathLike, *, read_only: bool = False) -> Manifest:
        """Read the manifest of ``output_dir``; an empty one when there is none.

        Raises
        ------
        ManifestError
            When the file cannot be read, is not a dcbulk manifest of this format version,
            or a line other than the last is malformed; the message names file and line.
        LinkRefusedError
            When the manifest is a symbolic link (or not a regular file).
        """
        manifest = cls(output_dir, read_only=read_only)
        path = manifest.path
        try:
            with open(open_nofollow(path, os.O_RDONLY), "rb") as fh:  # a link is refused
                raw = fh.read()
        except FileNotFoundError:
            if os.path.exists(os.path.join(manifest._output_dir, OLD_MANIFEST_NAME)):
                logger.warning("%s: manifest of an older dcbulk, not read; finished outputs "
                               "are found by their provenance log", manifest._output_dir)
            return manifest
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from exc
        manifest._exists = True
        lines = raw.split(b"\n")
        if lines[-1]:  # no final newline: the last append was torn by a crash
            manifest._torn_at = len(raw) - len(lines[-1])
            logger.warning("%s: ignoring a torn last line (%d bytes)", path, len(lines[-1]))
        lines = lines[:-1]
        if not lines:
            if manifest._torn_at is not None and manifest._torn_at == 0:
                manifest._exists = False  # only a torn header: start over
            return manifest
        for number, line in enumerate(lines, start=1):
            kind, value = parse_line(path, number, line)
            if kind == "header":
                manifest._created = str(value or manifest._created)
            elif kind == "options":
                manifest._options = value
                manifest._fingerprint = options_fingerprint(value)
            elif kind == "planned":
                manifest._planned = value
            elif kind == "forgotten":
                manifest._drop(value)
            else:
                relpath, record = value
                manifest._records[relpath] = record
        manifest._lines = len(lines)
        if not read_only and manifest._lines > 2 * len(manifest._records) + 16:
            manifest.compact()
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

    @property
    def planned(self) -> Mapping[str, str]:
        """The sources runs set out to make (relative path -> path): the last run's and
        those of earlier runs still without a record (empty: none recorded, e.g. a
        manifest of an earlier dcbulk)."""
        return types.MappingProxyType(self._planned or {})

    def record_planned(self, entries: list[SourceEntry]) -> None:
        """Record the sources this run sets out to make (before any is made), keeping those
        an earlier run planned and never recorded (a killed run's, when this run takes a
        subset)."""
        with self._lock:
            planned = {rel: path for rel, path in (self._planned or {}).items()
                       if rel not in self._records}
            planned.update((e.relpath, e.path) for e in entries)
            if planned != self._planned:  # a re-run of the same sources appends nothing
                self._planned = planned
                self._append(planned_line(planned))

    def forget(self, relpaths: list[str]) -> None:
        """Drop the failed records and planned entries of ``relpaths`` (sources without an
        output, left out on purpose: :func:`~dcbulk.bulk.forget.forget` checks that), so
        verify no longer names them; a later run that finds such a source plans it again."""
        with self._lock:
            self._drop(relpaths)
            self._append(forgotten_line(relpaths))

    def _drop(self, relpaths: list[str]) -> None:
        for rel in relpaths:
            self._records.pop(rel, None)
            if self._planned:
                self._planned.pop(rel, None)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, relpath: object) -> bool:
        return relpath in self._records

    # -- options -------------------------------------------------------------------------
    def check_options(self, options: Mapping[str, Any], force: bool = False) -> None:
        """Adopt ``options`` for this run, refusing to mix outputs of different options.

        Raises
        ------
        ManifestError
            When finished outputs were made with other options and ``force`` is False; lists
            the differing keys. With ``force`` the new options are adopted and those outputs
            are reconverted (:func:`dcbulk.bulk.resume.decide` answers ``"options changed"``).
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
            self._append(options_line(normalized, fingerprint))

    # -- records -----------------------------------------------------------
    def record_done(self, entry: SourceEntry, *, output: str | PathLike | None = None,
                    output_size: int | None = None, checksum: str | None = None,
                    events: int | None = None, seconds: float | None = None,
                    identifier: str | None = None, size: int | None = None,
                    mtime_ns: int | None = None, head: str | None = None) -> ManifestRecord:
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
            SHA-256 hex digest of the output where the caller computed one; not computed here.
        events, seconds, identifier
            Number of events written, conversion time, measurement identifier.
        size, mtime_ns, head : optional
            The source's size, ``st_mtime_ns`` and :func:`head_sha256` as read for the
            conversion, so a source modified during its conversion is not taken as
            finished next time; read now when None.

        Raises
        ------
        ManifestError
            If the output does not exist or lies outside the output directory, or the record
            cannot be written.
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
        if head is None:
            head = head_sha256(entry.path)
        record = ManifestRecord(
            source=entry.path, size=size, mtime_ns=mtime_ns, status="done", output=rel,
            fingerprint=self._fingerprint or "", identifier=identifier, head_sha256=head,
            output_size=out_size, output_sha256=checksum, events=events, seconds=seconds,
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

    @staticmethod
    def _stat(entry: SourceEntry) -> tuple[int, int]:
        try:
            st = os.stat(entry.path)
        except FileNotFoundError as exc:
            raise SourceNotFoundError(f"{entry.path}: source vanished") from exc
        return st.st_size, st.st_mtime_ns

    def _update(self, relpath: str, record: ManifestRecord) -> None:
        with self._lock:
            self._records[relpath] = record
            self._append(record_line(relpath, record))

    # -- writing -------------------------------------------------------------------------
    def _append(self, line: bytes) -> None:
        """Append one line and fsync it (creating the file with its header first)."""
        if self._read_only:
            return
        with self._lock:
            try:
                os.makedirs(self._output_dir, exist_ok=True)
                fd = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                try:
                    if self._torn_at is not None:  # cut the torn line a crash left
                        os.ftruncate(fd, self._torn_at)
                        self._torn_at = None
                    if not self._exists or os.fstat(fd).st_size == 0:
                        line = header_line(self._created) + line
                        self._exists = True
                        self._lines += 1
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise ManifestError(f"{self.path}: cannot write manifest "
                                    f"({exc.strerror or exc})") from exc
            self._lines += 1

    def compact(self) -> None:
        """Rewrite the log with one line per source (atomically: temp file, fsync, rename)."""
        if self._read_only:
            raise ManifestError(f"{self.path}: loaded read-only (dry run), not compacted")
        with self._lock:
            parts = [header_line(self._created)]
            if self._options is not None:
                parts.append(options_line(self._options, self._fingerprint or ""))
            if self._planned is not None:
                parts.append(planned_line(self._planned))
            parts += [record_line(k, r) for k, r in self._records.items()]
            try:
                write_atomic(self.path, b"".join(parts))
            except OSError as exc:
                raise ManifestError(f"{self.path}: cannot write manifest ({exc})") from exc
            self._torn_at, self._exists, self._lines = None, True, len(parts)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Manifest {self.path} records={len(self._records)}>"
