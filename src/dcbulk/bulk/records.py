"""What the resume manifest holds and how it is laid out as JSON: records, decisions, option fingerprints, checksums."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

from .._version import __version__
from ..errors import ManifestError

__all__ = ["FORMAT_VERSION", "STATUSES", "Decision", "ManifestRecord", "canonical_options",
           "file_sha256", "options_fingerprint", "parse_document", "render_document", "utc_now"]

#: version of the manifest's JSON layout; other versions are refused
FORMAT_VERSION = 1
_FORMAT_TAG = "dcbulk-manifest"
#: the statuses a record may have
STATUSES = ("done", "failed")


def file_sha256(path: str | PathLike, bufsize: int = 4 << 20) -> str:
    """SHA-256 hex digest of a file, read in ``bufsize`` pieces into one reused buffer."""
    digest = hashlib.sha256()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"option value {value!r} ({type(value).__name__}) cannot be stored "
                    f"in the manifest (not JSON-serializable)")


def canonical_options(options: Mapping[str, Any]) -> str:
    """The options as sorted-keys compact ASCII JSON (paths as strings, sets sorted)."""
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_json_default)


def options_fingerprint(options: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of the options as sorted-keys compact JSON."""
    return hashlib.sha256(canonical_options(options).encode()).hexdigest()[:16]


def utc_now() -> str:
    """The current UTC time as ISO-8601 with seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ManifestRecord:
    """What the manifest knows about one source (keyed by its relative path).

    ``output`` is the output's path relative to the output directory (POSIX style),
    ``fingerprint`` the options fingerprint the record was made with, ``finished_at`` an
    ISO-8601 UTC time. Output fields are None for failures, ``error`` is None for successes.
    """

    source: str
    size: int
    mtime_ns: int
    status: str
    output: str
    fingerprint: str = ""
    identifier: str | None = None
    output_size: int | None = None
    output_sha256: str | None = None
    events: int | None = None
    seconds: float | None = None
    error: str | None = None
    finished_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestRecord:
        """Rebuild a record; raises ValueError naming the first bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("record is not a JSON object")
        kinds = {"source": str, "size": int, "mtime_ns": int, "status": str, "output": str,
                 "fingerprint": str, "identifier": (str, type(None)),
                 "output_size": (int, type(None)), "output_sha256": (str, type(None)),
                 "events": (int, type(None)), "seconds": (int, float, type(None)),
                 "error": (str, type(None)), "finished_at": str}
        values = {}
        for name, kind in kinds.items():
            if name not in data:
                if name in ("source", "size", "mtime_ns", "status", "output"):
                    raise ValueError(f"field '{name}' is missing")
                continue
            value = data[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"field '{name}' has the bad value {value!r}")
            values[name] = value
        if values["status"] not in STATUSES:
            raise ValueError(f"field 'status' has the bad value {values['status']!r}")
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    """Whether to convert a source, and why.

    ``action`` is ``"convert"`` or ``"skip"``. ``reason`` is one of ``"new"``,
    ``"unrecorded output exists"`` (no record, but the output file is there: overwrite only
    with force), ``"previously failed"``, ``"options changed"``, ``"source changed"`` (size or
    mtime differ), ``"output missing"``, ``"output size differs"`` or ``"finished"`` (skip).
    ``size``/``mtime_ns`` are the source's as seen by the decision; pass them on to
    :meth:`Manifest.record_done` so a source modified during its conversion is redone.
    """

    action: str
    reason: str
    relpath: str
    size: int
    mtime_ns: int


def parse_document(path: str, raw: bytes) -> tuple[dict | None, Any, dict]:
    """Check the JSON of the manifest file ``path``: ``(options, created, records)``.

    ``options`` is None when none were stored; ``records`` maps relative paths to the
    unchecked record objects (see :meth:`ManifestRecord.from_dict`).

    Raises
    ------
    ManifestError
        When ``raw`` is not valid JSON, not a dcbulk manifest, of another format version,
        or its options or records are not JSON objects.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{path}: manifest is not valid JSON ({exc}); move it away "
                            f"to start over") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT_TAG:
        raise ManifestError(f"{path}: not a dcbulk manifest")
    if doc.get("version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: unknown manifest format version "
                            f"{doc.get('version')!r} (this dcbulk reads {FORMAT_VERSION})")
    options, records = doc.get("options"), doc.get("records", {})
    if options is not None and not isinstance(options, dict):
        raise ManifestError(f"{path}: 'options' is not a JSON object")
    if not isinstance(records, dict):
        raise ManifestError(f"{path}: 'records' is not a JSON object")
    return options, doc.get("created"), records


def render_document(*, created: str, options: Mapping[str, Any] | None,
                    fingerprint: str | None, lines: Mapping[str, str]) -> bytes:
    """The manifest file's bytes: a header, then one serialized record per line, sorted.

    ``lines`` maps each relative path to ``'"relpath":{record JSON}'``.
    """
    head = json.dumps({"format": _FORMAT_TAG, "version": FORMAT_VERSION,
                       "dcbulk_version": __version__, "created": created,
                       "updated": utc_now(), "options": options,
                       "fingerprint": fingerprint}, sort_keys=True)
    body = ",\n".join(lines[key] for key in sorted(lines))
    return f'{head[:-1]}, "records": {{\n{body}\n}}}}\n'.encode()
