"""The provenance log of a dcbulk output: one schema for every mode, written and read here.

Every output dcbulk writes (``convert``, ``condense``, ``reprocess``, ``split``, ``join``,
``store_features``) gets exactly one provenance log, ``logs/dcbulk-<mode>``: a JSON document
(indented, sorted keys, ASCII) with the keys of :data:`SCHEMA_KEYS`, whatever the mode.
Mode-specific facts (a split's piece, a join's inputs, a reprocess function) go under
``details``; ``options`` holds the options the output was made with (for archive modes the
archive's options fingerprint, which resume compares).

Lines stay within dclab's ``IntegrityChecker`` limit of :data:`LOG_MAX_LINE_LENGTH` bytes:
a longer line is cut into pieces, each but the last ending with the continuation mark ``\\``
(:func:`wrap_lines`); :func:`unwrap_lines` joins them again. A JSON text line never ends with
a backslash and no piece is cut after one, so the mark is unambiguous and logs written
before wrapping read back unchanged.

An output made from a dcbulk output keeps its source's logs; its own log is the newest: the
name carries a generation number (``dcbulk-convert``, then ``dcbulk-<mode>-2``, ...).
"""
from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import Any

import h5py

from ._version import __version__

__all__ = ["LOG_MAX_LINE_LENGTH", "MODES", "SCHEMA_KEYS", "wrap_lines", "unwrap_lines",
           "is_provenance_log", "log_name", "make_provenance", "provenance_lines",
           "provenance_docs", "provenance_of", "own_provenance", "read_provenance", "matches_source",
           "job_provenance"]

#: dclab's ``IntegrityChecker`` limit (``dclab.rtdc_dataset.check.LOG_MAX_LINE_LENGTH``):
#: bytes per log line
LOG_MAX_LINE_LENGTH = 100
#: the modes that write outputs (the log is ``dcbulk-<mode>``)
MODES = ("convert", "condense", "reprocess", "split", "join", "store-features")
#: the keys of every provenance document
SCHEMA_KEYS = ("software", "python", "h5py", "mode", "source", "source identifier",
               "source events", "source size", "source mtime", "output events", "mapped",
               "basin_to_source", "features", "options", "details")
_CONTINUED = "\\"
_NAME = re.compile(r"dcbulk-(" + "|".join(map(re.escape, MODES)) + r")(?:-([0-9]+))?")


def wrap_lines(lines: Iterable[str], width: int = LOG_MAX_LINE_LENGTH) -> list[str]:
    """Cut every line longer than ``width`` UTF-8 bytes into pieces that fit.

    Each piece but the last of a line ends with ``\\`` (counted in ``width``); no piece is
    cut after a backslash or inside a character, so :func:`unwrap_lines` restores the lines
    of any text whose lines do not end with a backslash.
    """
    if width < 3:
        raise ValueError(f"width must be at least 3, got {width}")
    out: list[str] = []
    for line in lines:
        line = str(line)
        while len(line.encode("utf-8")) > width:
            cut, size = 0, 0
            for i, char in enumerate(line):
                size += len(char.encode("utf-8"))
                if size > width - 1:
                    break
                if char != _CONTINUED:
                    cut = i + 1
            if cut == 0:
                raise ValueError(f"cannot wrap a line that starts with {width - 1} "
                                 f"backslashes: {line[:40]}...")
            out.append(line[:cut] + _CONTINUED)
            line = line[cut:]
        out.append(line)
    return out


def unwrap_lines(lines: Iterable[str]) -> list[str]:
    """Join the pieces of lines cut by :func:`wrap_lines`."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith(_CONTINUED):
            pending += line[:-1]
        else:
            out.append(pending + line)
            pending = ""
    if pending:
        out.append(pending)
    return out


def is_provenance_log(name: str) -> bool:
    """Whether ``name`` is the name of a dcbulk provenance log."""
    return _NAME.fullmatch(name) is not None


def _generation(name: str) -> int:
    match = _NAME.fullmatch(name)
    return 0 if match is None else int(match.group(2) or 1)


def log_name(existing: Iterable[str], mode: str) -> str:
    """The name of a new output's provenance log, given the log names it has already.

    ``dcbulk-<mode>`` when it has no provenance log yet, else ``dcbulk-<mode>-<g>`` with
    ``g`` one more than the newest generation present.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    newest = max((_generation(n) for n in existing), default=0)
    return f"dcbulk-{mode}" if newest == 0 else f"dcbulk-{mode}-{newest + 1}"


def job_provenance(mode: str, *, options: Mapping | None = None,
                   details: Mapping | None = None) -> dict:
    """What a mode adds to the provenance of its outputs (``ExtraMetadata.provenance``).

    ``options`` replaces the engine's options (archive modes: the archive's fingerprint,
    which resume compares); ``details`` holds the mode's own facts.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    doc: dict = {"mode": mode, "details": dict(details or {})}
    if options is not None:
        doc["options"] = dict(options)
    return doc


def make_provenance(*, mode: str, source: str | None, source_info, output_events: int,
                    mapped: bool, basin_to_source: bool, features: Mapping[str, str],
                    options: Mapping, details: Mapping | None = None) -> dict:
    """The provenance document of one output (the keys of :data:`SCHEMA_KEYS`).

    ``source_info`` is the source's :class:`~dcbulk.read.inspect.SourceInfo` (None when
    the output has no single source).
    """
    info = source_info
    return {
        "software": f"dcbulk {__version__}",
        "python": platform.python_version(),
        "h5py": h5py.__version__,
        "mode": mode,
        "source": source or None,
        "source identifier": info.identifier if info else None,
        "source events": info.n_events if info else None,
        "source size": info.size if info else None,
        "source mtime": info.mtime if info else None,
        "output events": int(output_events),
        "mapped": bool(mapped),
        "basin_to_source": bool(basin_to_source),
        "features": dict(features),
        "options": dict(options),
        "details": dict(details or {}),
    }


def provenance_lines(doc: Mapping) -> list[str]:
    """The log lines of a provenance document (each within :data:`LOG_MAX_LINE_LENGTH`)."""
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True, default=str)
    return wrap_lines(text.split("\n"))


def _text(line) -> str:
    return line.decode("utf-8") if isinstance(line, bytes) else str(line)


def provenance_docs(h5) -> dict[str, dict | None]:
    """The JSON documents of the ``dcbulk-*`` logs of an open file, by log name (None for a
    log that is not a JSON object); other logs are left out."""
    docs: dict[str, dict | None] = {}
    logs = h5.get("logs")
    for name, ds in (logs.items() if isinstance(logs, h5py.Group) else ()):
        if not name.startswith("dcbulk-") or not isinstance(ds, h5py.Dataset):
            continue
        try:
            doc = json.loads("\n".join(unwrap_lines(_text(line) for line in ds[:])))
        except (ValueError, UnicodeDecodeError):
            doc = None
        docs[name] = doc if isinstance(doc, dict) else None
    return docs


def own_provenance(docs: Mapping[str, dict | None]) -> tuple[str, dict | None] | None:
    """The newest provenance log of a file (its own), as ``(name, document)``; None if none.

    Of logs of the same generation (written before generations spanned modes) a mode's
    log wins over ``dcbulk-convert``.
    """
    named = [(_generation(name), not name.startswith("dcbulk-convert"), name)
             for name in docs if is_provenance_log(name)]
    if not named:
        return None
    name = max(named)[2]
    return name, docs[name]


def read_provenance(output: str | PathLike) -> dict | None:
    """The provenance document of ``output`` (its newest dcbulk log); None when it has none.

    Raises
    ------
    OSError
        When ``output`` cannot be opened as an HDF5 file.
    ValueError
        When the newest log is not a JSON object (an older one is not used instead: it may
        be the log of the source's own conversion).
    """
    with h5py.File(output, "r", locking=False) as h5:
        found = own_provenance(provenance_docs(h5))
    if found is None:
        return None
    name, doc = found
    if doc is None:
        raise ValueError(f"its log '{name}' is not a JSON object")
    if "mode" not in doc:  # written before the shared schema
        options = doc.get("options") or {}
        doc = {**doc, "mode": "convert" if not (options.get("job") or options.get(
            "store_features")) and name.startswith("dcbulk-convert") else name[7:]}
    return doc


def matches_source(doc: Mapping, path: str, options: Mapping) -> bool:
    """Whether a provenance document names ``path`` (its current size and mtime) and
    ``options``: the output is a finished result of that source with those options."""
    st = os.stat(path)
    return (doc.get("source") == path and doc.get("options") == dict(options)
            and doc.get("source size") == st.st_size and doc.get("source mtime") == st.st_mtime)


def provenance_of(h5) -> list[dict[str, Any]]:
    """Every readable provenance document of an open file (own and inherited)."""
    return [doc for doc in provenance_docs(h5).values() if doc is not None]
