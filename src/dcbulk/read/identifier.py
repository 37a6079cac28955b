"""Compute the measurement identifier of an .rtdc file from its attributes."""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import h5py
import numpy as np

__all__ = ["get_measurement_identifier", "basin_identifier", "filtered_run_identifier"]

logger = logging.getLogger(__name__)


def _as_text(value: Any) -> Any:
    """Decode bytes attribute values; return anything else unchanged."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def get_measurement_identifier(
        h5: h5py.File | h5py.Group,
        *,
        compat: Literal["dcnum", "dclab"] = "dcnum",
) -> str | None:
    """Return the measurement identifier of an .rtdc file

    The identifier is the root attribute ``experiment:run identifier``.
    When that is missing or empty, it is derived from ``experiment:time``,
    ``experiment:date`` and ``setup:identifier``: the UUID formed from the
    MD5 hex digest of ``"{time}_{date}_{setup identifier}"``.

    Parameters
    ----------
    h5
        An open .rtdc file.
    compat
        How bytes-valued attributes enter the derived identifier.
        ``"dcnum"`` (default) gives exactly what dcnum 0.31 computes, which
        formats a bytes value as its Python representation (``b'...'``);
        dcnum checks basin identifiers with that value. ``"dclab"`` decodes
        bytes first, which is what dclab computes. Both agree whenever the
        three attributes are text.

    Returns
    -------
    str or None
        The identifier, or None if it can neither be found nor derived.
        A bytes-valued ``experiment:run identifier`` is returned decoded.

    Raises
    ------
    ValueError
        If `compat` is not ``"dcnum"`` or ``"dclab"``.
    """
    if compat not in ("dcnum", "dclab"):
        raise ValueError(
            f"`compat` must be 'dcnum' or 'dclab', got {compat!r}")
    attrs = h5.attrs
    mid = attrs.get("experiment:run identifier")
    if mid:
        return str(_as_text(mid))
    parts = []
    for name in ("experiment:time", "experiment:date", "setup:identifier"):
        value = attrs.get(name)
        if not value:
            return None
        if compat == "dclab":
            value = _as_text(value)
        parts.append(value)
    text = "{}_{}_{}".format(*parts)
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    return str(uuid.UUID(hex=digest))


def basin_identifier(h5: h5py.File | h5py.Group) -> str | None:
    """The identifier to store in a basin definition that points to this file

    dcnum refuses a basin whose stored ``identifier`` differs from the one it
    computes for the basin file (``BasinIdentifierMismatchError``); dclab
    ignores such a basin with a warning. For files without a run identifier
    whose time, date or setup identifier are stored as bytes, the two
    readers derive different values, so no single stored value satisfies
    both. The one rule dcbulk follows everywhere: store the identifier when
    both readers compute the same one, else store none (both readers then
    accept the basin; dclab still checks that the referring file's
    identifier starts with the basin's).

    Returns
    -------
    str or None
        The identifier both dclab and dcnum compute, or None.
    """
    ident = get_measurement_identifier(h5, compat="dcnum")
    if ident is None or ident != get_measurement_identifier(h5, compat="dclab"):
        return None
    return ident


def _feed_events(digest, mapping: np.ndarray | None, n_source: int) -> None:
    """Feed one source's event count and its selected event indices into ``digest``."""
    digest.update(np.int64(n_source).tobytes())
    if mapping is None:  # all events, fed as their indices in blocks (no n-sized array)
        for start in range(0, n_source, 1 << 20):
            digest.update(np.arange(start, min(n_source, start + (1 << 20)),
                                    dtype="<i8").tobytes())
        return
    mapping = np.asarray(mapping)
    if mapping.dtype == bool:
        mapping = np.flatnonzero(mapping)
    digest.update(np.ascontiguousarray(mapping, dtype="<i8").tobytes())


def filtered_run_identifier(base: str | None, mapping: np.ndarray | None, n_source: int, *,
                            more: Iterable[tuple[str | None, np.ndarray | None, int]] = ()
                            ) -> str:
    """The run identifier of an output whose events are not exactly one file's events

    The one rule of every dcbulk output that holds a subset, a remapping or a
    join of files' events (``convert --filter``, condense with a filter,
    split, join). dclab's export appends ``_dclab-<7 random hex>`` and dcnum
    ``_dcn-<hash>`` to the measurement identifier, so that a basin naming the
    source by path and identifier never resolves to a filtered copy. dcbulk
    appends ``_dcb-<7 hex>`` of the SHA-256 of what defines the output's
    events: each source's event count and selected event indices (the
    sources after the first also by their identifier). Reproducible, and
    equal exactly when the events are.

    Parameters
    ----------
    base
        The (first) source's identifier (dclab's value, so that dclab's
        prefix check of mapped basins holds); None gives ``dcb-<7 hex>``.
    mapping
        Source event index (or boolean filter) of each output event taken
        from the first source; None: all its events.
    n_source
        Number of events of the first source.
    more
        For joins: ``(identifier, mapping, n_source)`` of each further
        source, in the order of the output's events.
    """
    digest = hashlib.sha256()
    _feed_events(digest, mapping, n_source)
    for ident, idx, n in more:
        digest.update(b"\0" + str(ident).encode() + b"\0")
        _feed_events(digest, idx, n)
    suffix = f"dcb-{digest.hexdigest()[:7]}"
    return f"{base}_{suffix}" if base else suffix
