"""Attribute and record values compared as they are stored: text as the bytes it holds,
records by dtype, shape and bytes, and a value as a one-line message shows it.

Shared by the metadata checks (:mod:`.compare`, :mod:`.basins`, :mod:`.joined`) and the
row checks (:mod:`.rows`).
"""
from __future__ import annotations

import numpy as np

from ..errors import PlanError

__all__ = ["BYTES", "STR", "as_text", "same_records", "same_value", "shown", "stored_as",
           "stored_bytes", "suffixed_text", "writable_text"]

#: how :func:`stored_as` names text that h5py reads as ``str`` (HDF5 variable-length strings)
STR = "variable-length text (str)"
#: ... and as ``bytes`` (fixed-length strings, what dcnum and dclab write for image attributes)
BYTES = "fixed-length text (bytes)"


def as_text(value) -> object:
    """Text stored as bytes (a value or an array of them) decoded; else the value."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [bytes(v).decode("utf-8", errors="replace") for v in value.ravel()]
    return value


def suffixed_text(value, suffix: str) -> object:
    """A text attribute with ``suffix`` appended, stored as the value was (split's sample
    `` k/n``; what verify expects of a piece): bytes stay the same bytes (no UTF-8 needed),
    then the suffix's UTF-8; anything else is its text (a ``str`` that holds no UTF-8 can
    be no piece's: split refuses it, :func:`writable_text`)."""
    if isinstance(value, (bytes, np.bytes_)):
        return np.bytes_(bytes(value) + suffix.encode("utf-8"))
    return str(value) + suffix


def writable_text(value, path: str, key: str, why: str) -> object:
    """``value`` of the attribute ``key`` of ``path``, unless it is a ``str`` that holds no
    valid UTF-8 (h5py's surrogate escapes; no ``str`` can be written back so): then a
    PlanError naming the file and the attribute, ending ``which <why>``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PlanError(f"{path}: attribute {key!r} is text (str) that holds no valid "
                            f"UTF-8, which {why} (store it as bytes, or fix it)") from exc
    return value


class _Shown(str):
    """A long value's text, shown as it is (a problem stays one line)."""

    def __repr__(self) -> str:
        return str(self)


def shown(value) -> object:
    """An attribute's value as a message shows it: numpy scalars as Python numbers, arrays
    on one line, at most 120 characters."""
    value = as_text(value)
    value = value.item() if isinstance(value, np.generic) else value
    text = repr(value)
    if "\n" in text or len(text) > 120:
        text = " ".join(text.split())
        return _Shown(text if len(text) <= 120 else text[:117] + "...")
    return value


def same_records(got: np.ndarray, want: np.ndarray) -> bool:
    """Whether a table (a contour, an internal basin's data) holds the same records: dtype,
    shape and bytes (records may hold NaN; a copy keeps the dtype)."""
    return (got.dtype == want.dtype and got.shape == want.shape
            and got.tobytes() == want.tobytes())


def stored_bytes(value):
    """A text value as the bytes it holds (``str`` as UTF-8, code points that were no
    valid UTF-8 kept as they were read), text arrays item by item; else None. Text is
    compared as these bytes: decoded with replacement, any two invalid bytes compared
    equal."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
        items = [stored_bytes(v) for v in value.ravel()]
        return None if any(item is None for item in items) else items
    return None


def stored_as(value) -> str:
    """How an attribute value is stored, as a message names it: :data:`STR`, :data:`BYTES`
    (a value or an array of them) or the name of its numeric dtype. A copy keeps it (h5py
    writes ``str`` as variable-length, ``bytes`` as fixed-length strings), and readers
    differ on it: dclab decodes ``bytes`` attributes itself."""
    if isinstance(value, str):
        return STR
    if isinstance(value, (bytes, np.bytes_)):
        return BYTES
    dtype = getattr(value, "dtype", None)
    if isinstance(value, np.ndarray) and dtype.kind == "O" and value.size:
        kinds = {stored_as(item) for item in value.ravel()}
        return kinds.pop() if len(kinds) == 1 else "mixed objects"
    dtype = np.asarray(value).dtype if dtype is None else dtype
    return BYTES if dtype.kind == "S" else dtype.name


def same_value(a, b) -> bool:
    """Whether two attribute values are equal (text: as the bytes it holds)."""
    raw_a, raw_b = stored_bytes(a), stored_bytes(b)
    if raw_a is not None and raw_b is not None:
        return raw_a == raw_b
    a, b = as_text(a), as_text(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
