"""The provenance log of an output (``logs/dcbulk-convert``), read back: its source and
options, so that ``dcbulk verify OUT.rtdc`` needs no ``--against`` and a resumed run can
adopt an output a killed run finished.

:mod:`dcbulk.engine.finish` writes the log: one JSON document (indented, one log line per
text line) naming the source (path, identifier, size, mtime, events) and the options. An
output converted from a dcbulk output keeps its source's logs, so its own is the newest
(``dcbulk-convert-<k>`` with the highest ``k``).
"""
from __future__ import annotations

import json
import os
import re
from os import PathLike

import h5py

from ..errors import NotHDF5Error, SourceNotFoundError, UsageError
from .run import VerifyPair

__all__ = ["PROVENANCE_LOG", "provenance_docs", "read_provenance", "pair_from_provenance"]

#: name of the log dcbulk adds to each output (further ones get ``-2``, ``-3``, ...)
PROVENANCE_LOG = "dcbulk-convert"
_NAME = re.compile(re.escape(PROVENANCE_LOG) + r"(?:-([0-9]+))?")


def provenance_docs(h5) -> dict[str, dict | None]:
    """The JSON documents of the ``dcbulk-*`` logs of an open output, by log name: the
    engine's ``dcbulk-convert`` provenance and the modes' logs (e.g. ``dcbulk-condense``);
    None for a log that is not a JSON object. Other logs are left out."""
    docs: dict[str, dict | None] = {}
    for name, ds in h5.get("logs", {}).items():
        if not name.startswith("dcbulk-"):
            continue
        try:
            doc = json.loads("\n".join(line.decode("utf-8") if isinstance(line, bytes)
                                       else str(line) for line in ds[:]))
        except (ValueError, UnicodeDecodeError):
            doc = None
        docs[name] = doc if isinstance(doc, dict) else None
    return docs


def read_provenance(output: str | PathLike) -> dict | None:
    """The newest dcbulk provenance document of ``output``; None when it has none.

    Raises
    ------
    OSError
        When ``output`` cannot be opened as an HDF5 file.
    ValueError
        When the newest log is not a JSON object (an older one is not used instead: it may
        be the log of the source's own conversion).
    """
    with h5py.File(output, "r", locking=False) as h5:
        docs = provenance_docs(h5)
    numbered = [(int(m.group(1) or 1), name) for name in docs
                if (m := _NAME.fullmatch(name)) is not None]
    if not numbered:
        return None
    name = max(numbered)[1]
    if docs[name] is None:
        raise ValueError(f"its log '{name}' is not a JSON object")
    return docs[name]


def pair_from_provenance(output: str | PathLike):
    """The :class:`~dcbulk.verify.run.VerifyPair` of an output, from its provenance log.

    Raises
    ------
    SourceNotFoundError
        When ``output`` or the source its log names does not exist.
    NotHDF5Error
        When ``output`` cannot be read or its log is damaged.
    UsageError
        When the log does not say what the output must equal: no dcbulk log, an explicit
        event mapping (not recorded), or features written from arrays (``store_features``).
    """
    output = os.path.abspath(os.fspath(output))
    if not os.path.isfile(output):
        raise SourceNotFoundError(f"{output}: no such file")
    try:
        doc = read_provenance(output)
    except (OSError, ValueError, KeyError) as exc:
        raise NotHDF5Error(f"{output}: cannot read its provenance log ({exc})") from exc
    if doc is None or not doc.get("source"):
        raise UsageError(f"{output}: no dcbulk provenance log (logs/{PROVENANCE_LOG}) names "
                         f"its source; give the source with --against SRC (API: against=)")
    source, options = str(doc["source"]), doc.get("options") or {}
    if options.get("store_features") or options.get("job"):
        raise UsageError(f"{output}: made by a dcbulk mode (condense, split, join, reprocess) "
                         f"or store_features, not converted from {source}; its log does not "
                         f"say what it must equal")
    if doc.get("mapped") and not options.get("filter"):
        raise UsageError(f"{output}: converted with an explicit event mapping, which its "
                         f"provenance log does not hold; verify it in Python with "
                         f"dcbulk.verify(output, source, mapping=...)")
    if not os.path.isfile(source):
        raise SourceNotFoundError(f"{output}: its source {source} (named by its provenance "
                                  f"log) is gone; give a copy with --against SRC")
    features = options.get("features")
    return VerifyPair(output=output, source=source,
                      features=tuple(features) if features else None,
                      filter=options.get("filter"))
