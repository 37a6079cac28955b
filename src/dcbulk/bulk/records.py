"""What the resume manifest holds and how it is laid out as JSON Lines: records, decisions,
option fingerprints (the checksums it stores are :mod:`dcbulk.read.digests`')."""
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
from ..read.digests import HEAD_BYTES, file_sha256, head_sha256

__all__ = ["FORMAT_VERSION", "HEAD_BYTES", "STATUSES", "Decision", "ManifestRecord",
           "canonical_options", "file_sha256", "head_sha256", "header_line", "options_line",
           "parse_line", "options_fingerprint", "planned_line", "record_line", "utc_now"]

#: version of the manifest's layout; other versions are refused
FORMAT_VERSION = 2
_FORMAT_TAG = "dcbulk-manifest"
#: the statuses a record may have
STATUSES = ("done", "failed")


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
    ``fingerprint`` the options fingerprint the record was made with, ``head_sha256`` the
    :func:`head_sha256` of the source as converted, ``finished_at`` an ISO-8601 UTC time.
    ``output_sha256`` is filled only where a checksum is computed anyway (verification);
    output fields are None for failures, ``error`` is None for successes.
    """

    source: str
    size: int
    mtime_ns: int
    status: str
    output: str
    fingerprint: str = ""
    identifier: str | None = None
    head_sha256: str | None = None
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
        opt_str = (str, type(None))
        kinds = {"source": str, "size": int, "mtime_ns": int, "status": str, "output": str,
                 "fingerprint": str, "identifier": opt_str, "head_sha256": opt_str,
                 "output_size": (int, type(None)), "output_sha256": opt_str,
                 "events": (int, type(None)), "seconds": (int, float, type(None)),
                 "error": opt_str, "finished_at": str}
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
    with force), ``"previously failed"``, ``"options changed"``, ``"output missing"``,
    ``"output size differs"``, ``"mtime changed"`` (only the mtime of a source of at most
    two MiB, whose hash covers every byte), ``"source changed"`` (size, mtime or the hash of
    its first and last MiB differ while the recorded output is there: made again only with
    force; ``change`` says what changed) or ``"finished"`` (skip). ``size``/``mtime_ns`` are the
    source's as seen by the decision.
    """

    action: str
    reason: str
    relpath: str
    size: int
    mtime_ns: int
    change: str | None = None


# -- the JSON Lines layout -----------------------------------------------------------------
# line 1: {"format": "dcbulk-manifest", "version": 2, "created": ..., "dcbulk_version": ...}
# then, appended in order: {"options": {...}, "fingerprint": "..."} when a run adopts options,
# and {"relpath": "...", "record": {...}} per finished or failed file (the last one wins).

def _dumps(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=True, default=_json_default)
            + "\n").encode()


def header_line(created: str | None = None) -> bytes:
    """The first line of a manifest."""
    return _dumps({"format": _FORMAT_TAG, "version": FORMAT_VERSION,
                   "created": created or utc_now(), "dcbulk_version": __version__})


def options_line(options: Mapping[str, Any], fingerprint: str) -> bytes:
    """A line recording the options (and their fingerprint) adopted from here on."""
    return _dumps({"options": dict(options), "fingerprint": fingerprint, "at": utc_now()})


def planned_line(sources: Mapping[str, str]) -> bytes:
    """A line naming the sources a run sets out to make outputs of (relative path -> path;
    all of them, finished before or not), so that a run that never ended is seen by what it
    left unrecorded."""
    return _dumps({"planned": dict(sources), "at": utc_now()})


def forgotten_line(relpaths: list[str]) -> bytes:
    """A line dropping the failed records and planned entries of sources left out on
    purpose (``dcbulk forget``): verify no longer names them."""
    return _dumps({"forgotten": list(relpaths), "at": utc_now()})


def record_line(relpath: str, record: ManifestRecord) -> bytes:
    """A line recording one source's outcome."""
    return _dumps({"relpath": relpath, "record": record.to_dict()})


def parse_line(path: str, number: int, raw: bytes) -> tuple[str, Any]:
    """Check line ``number`` (1-based) of the manifest ``path``.

    Returns ``("header", created)``, ``("options", options)``, ``("planned", sources)``,
    ``("forgotten", relpaths)`` or ``("record", (relpath, ManifestRecord))``.

    Raises
    ------
    ManifestError
        When the line is not JSON, line 1 is not a dcbulk manifest header of this version,
        or a later line is neither an options, planned or forgotten line nor a valid record.
    """
    where = f"{path}, line {number}"
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"{where}: not valid JSON ({exc}); move the manifest away to "
                            f"start over") from exc
    if number == 1:
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT_TAG:
            raise ManifestError(f"{path}: not a dcbulk manifest")
        if doc.get("version") != FORMAT_VERSION:
            raise ManifestError(f"{path}: unknown manifest format version "
                                f"{doc.get('version')!r} (this dcbulk reads {FORMAT_VERSION})")
        return "header", doc.get("created")
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: not a JSON object")
    if "options" in doc:
        if not isinstance(doc["options"], dict):
            raise ManifestError(f"{where}: 'options' is not a JSON object")
        return "options", doc["options"]
    if "planned" in doc:
        planned = doc["planned"]
        if not (isinstance(planned, dict)
                and all(isinstance(p, str) for p in [*planned, *planned.values()])):
            raise ManifestError(f"{where}: 'planned' does not map paths to paths")
        return "planned", planned
    if "forgotten" in doc:
        forgotten = doc["forgotten"]
        if not (isinstance(forgotten, list) and all(isinstance(p, str) for p in forgotten)):
            raise ManifestError(f"{where}: 'forgotten' is not a list of paths")
        return "forgotten", forgotten
    relpath = doc.get("relpath")
    if not isinstance(relpath, str):
        raise ManifestError(f"{where}: neither options nor a record")
    try:
        return "record", (relpath, ManifestRecord.from_dict(doc.get("record")))
    except ValueError as exc:
        raise ManifestError(f"{where}: record '{relpath}': {exc}") from exc
