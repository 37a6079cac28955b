"""Compute the measurement identifier of an .rtdc file from its attributes."""
from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any, Literal

import h5py
import numpy as np

__all__ = ["get_measurement_identifier"]

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
