"""What a single output must equal, from its provenance log: the pair ``dcbulk verify
OUT.rtdc`` checks without ``--against`` (a converted or condensed output, a piece of
``split``, or a joined file).

The log itself (schema, line wrapping, which log is the file's own) is
:mod:`dcbulk.provenance`'s; this module only turns an output's log into a
:class:`~dcbulk.verify.checks.VerifyPair` (source and options), or a one-line reason why not.
"""
from __future__ import annotations

import os
from os import PathLike

import numpy as np

from ..errors import NotHDF5Error, SourceNotFoundError, UsageError
from ..provenance import read_provenance
from .checks import VerifyPair

__all__ = ["read_provenance", "pair_from_provenance"]


def pair_from_provenance(output: str | PathLike, against: str | None = None):
    """The :class:`~dcbulk.verify.checks.VerifyPair` of an output, from its provenance log.

    ``against``: a copy of the source of a condensed output or a piece of ``split`` to
    check it against instead of the path its log names (moved, or gone), with the options,
    identifier and size of its log; None for other outputs (then ``against`` is the plain
    source of a conversion with the options the caller gives, as ``dcbulk verify`` has
    always taken it).

    Raises
    ------
    SourceNotFoundError
        When ``output`` or the source its log names (or ``against``) does not exist.
    NotHDF5Error
        When ``output`` cannot be read or its log is damaged.
    UsageError
        When the log does not say what the output must equal: no dcbulk log, an explicit
        event mapping (not recorded), or an output of a mode other than ``convert``,
        ``condense``, ``split`` and ``join`` (a joined output with ``against``: its inputs
        are several).
    """
    output = os.path.abspath(os.fspath(output))
    if not os.path.isfile(output):
        raise SourceNotFoundError(f"{output}: no such file")
    try:
        doc = read_provenance(output)
    except (OSError, ValueError, KeyError) as exc:
        if against is not None:  # no log to go by: the check compares it as it is
            return None
        raise NotHDF5Error(f"{output}: cannot read its provenance log ({exc})") from exc
    mode = (doc or {}).get("mode")
    if against is not None and mode not in ("split", "condense", "join"):
        return None  # a conversion's source: the plain pair of the caller's options
    if doc is None or (mode == "convert" and not doc.get("source")):
        raise UsageError(f"{output}: no dcbulk provenance log (logs/dcbulk-convert) names "
                         f"its source; give the source with --against SRC (API: against=)")
    if mode == "join":
        if against is not None:
            raise UsageError(f"{output}: joined from several inputs, which its log names; "
                             f"verify it without --against (against=)")
        return _join_pair(output, doc)
    if mode not in ("convert", "split", "condense") or not doc.get("source"):
        raise UsageError(f"{output}: made by a dcbulk mode ({mode}: its log is "
                         f"logs/dcbulk-{mode}), not converted, condensed, split or joined from "
                         f"its inputs; its log does not say what it must equal")
    source, options = against or str(doc["source"]), doc.get("options") or {}
    piece, suffix = _piece(output, doc) if mode == "split" else (None, "")
    if doc.get("mapped") and not options.get("filter") and piece is None:
        raise UsageError(f"{output}: converted with an explicit event mapping, which its "
                         f"provenance log does not hold; verify it in Python with "
                         f"dcbulk.verify(output, source, mapping=...)")
    if not os.path.isfile(source):
        raise SourceNotFoundError(f"{source}: no such file" if against else (
            f"{output}: its source {source} (named by its provenance log) is gone; give a "
            f"copy with --against SRC"))
    features = options.get("features")
    return VerifyPair(output=output, source=source,
                      features=tuple(features) if features else None,
                      filter=options.get("filter"),
                      follow_external=bool(options.get("follow_external")),
                      compression=options.get("compression"), piece=piece,
                      sample_suffix=suffix, source_size=_size(doc.get("source size")),
                      source_identifier=doc.get("source identifier") or None,
                      condensed=mode == "condense",
                      ancillary=bool((options.get("job") or {}).get("ancillary")),
                      basin_to_source=bool(doc.get("basin_to_source")), mode=mode,
                      copy=against is not None)


def _join_pair(output: str, doc: dict) -> VerifyPair:
    """A joined output's pair: its inputs in the join's order, from its log."""
    try:
        inputs = sorted(doc["details"]["inputs"], key=lambda d: int(d["index"]))
        paths = [str(d["path"]) for d in inputs]
        offsets = tuple(_number(d.get("time offset")) for d in inputs)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotHDF5Error(f"{output}: its join log lacks the inputs ({exc!r})") from exc
    if len(paths) < 2:
        raise NotHDF5Error(f"{output}: its join log names {len(paths)} input(s), not two or more")
    for k, path in enumerate(paths, start=1):
        if not os.path.isfile(path):
            raise SourceNotFoundError(f"{output}: its input #{k} {path} (named by its "
                                      f"provenance log) is gone")
    options = doc.get("options") or {}
    features = options.get("features")
    return VerifyPair(output=output, source=paths[0], inputs=tuple(paths),
                      input_identifiers=tuple(d.get("identifier") or None for d in inputs),
                      input_sizes=tuple(_size(d.get("size")) for d in inputs),
                      input_offsets=offsets,
                      features=tuple(features) if features else None,
                      filter=options.get("filter"), compression=options.get("compression"))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and np.isfinite(value) else None


def _size(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _piece(output: str, doc: dict) -> tuple[tuple[int, int, bool], str]:
    """A split piece's events (``VerifyPair.piece``) and sample suffix, from its log."""
    details = doc.get("details") or {}
    try:
        first, stop = (int(x) for x in details["source events"])
        number, count = int(details["piece"]), int(details["pieces"])
        skip_empty = bool(details["skip empty boundary images"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NotHDF5Error(f"{output}: its split log lacks the piece's events ({exc!r})"
                           ) from exc
    return (first, stop, skip_empty), f" {number}/{count}"
