"""dclab-join's rules: what ``join`` follows to make a joined file and ``verify`` to check one.

The order of the inputs (``experiment:date``, ``experiment:time``, ``experiment:run index``,
compared as text), each input's recording start (local time, as dclab computes it), and what
of each input a joined file keeps besides its events: its root attributes (the earliest
input's become the file's), its logs and tables (as ``src-#k_<name>``) and its attributes
as the ``src-#k_cfg`` log (whose text dclab's configuration makes). Hand-written: dclab keeps
these rules inside its ``dclab-join`` command, not as functions to call.
"""
from __future__ import annotations

import time
from collections import UserDict

import h5py
import numpy as np

from ..errors import PlanError
from ..provenance import wrap_lines

__all__ = ["attrs_of", "cfg_lines", "frame_shift", "joined_dtype", "logs_of", "order_key",
           "start_seconds", "tables_of"]


def _text(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def order_key(attrs: dict) -> str:
    """dclab-join's sort key: ``"<date>_<time>_<run index>"`` (compared as text)."""
    return "_".join([_text(attrs.get("experiment:date", "")),
                     _text(attrs.get("experiment:time", "")),
                     str(attrs.get("experiment:run index", 1))])


def start_seconds(attrs: dict, path: str) -> float:
    """The recording start in seconds, computed as dclab-join does (local time)."""
    date, etime = _text(attrs.get("experiment:date", "")), _text(attrs.get("experiment:time", ""))
    try:
        start = time.mktime(time.strptime(date + etime[:8], "%Y-%m-%d%H:%M:%S"))
        fraction = float(etime[8:]) if len(etime) > 8 else 0.0
        if not 0 <= fraction < 1:  # '.5' only: not 'nan', 'inf', '-5' or '.5e9'
            raise ValueError(f"fraction of a second {etime[8:]!r}")
        return start + fraction
    except (ValueError, OverflowError) as exc:
        raise PlanError(f"{path}: cannot read the recording start from experiment:date "
                        f"{date!r} and experiment:time {etime!r}") from exc


def joined_dtype(name: str, first: str, offsets: list[float]) -> str:
    """The dtype of a joined feature: the earliest input's (as dclab-join appends to it), but
    ``time`` float64 and ``frame`` uint64 when a later input starts later (``offsets``: of
    every input; dclab-join's own casts), so that no offset is rounded away or overflows a
    narrower type (an int32 frame, a float32 time)."""
    if any(offsets[1:]) and name in ("time", "frame"):
        return np.dtype(np.float64 if name == "time" else np.uint64).str
    return first


def frame_shift(attrs: dict, offset: float, path: str) -> np.uint64:
    """The frames a later input's recording starts after the earliest's: ``offset`` seconds
    times its ``imaging:frame rate`` (dclab-join's rule, which fails without a rate).

    Raises
    ------
    PlanError
        Without a positive, finite frame rate, or with a negative offset (the input starts
        before the earliest one by dclab-join's order).
    """
    raw = attrs.get("imaging:frame rate")
    try:
        rate = float(_text(raw)) if raw is not None else float("nan")
    except (TypeError, ValueError):
        rate = float("nan")
    if not (np.isfinite(rate) and rate > 0):
        raise PlanError(f"{path}: its frames cannot be offset in a join: "
                        f"'imaging:frame rate' is {_text(raw) if raw is not None else 'missing'}")
    if offset < 0:
        raise PlanError(f"{path}: starts {-offset:g} s before the earliest input by "
                        f"dclab-join's order (date, time, run index as text); its frames "
                        f"cannot be offset")
    return np.uint64(round(offset * rate))


def cfg_lines(attrs: dict) -> list[str]:
    """An input's attributes as dclab-join's ``src-#k_cfg`` log: dclab's configuration text
    of the metadata sections (``[section]`` and ``key = value`` lines, formatted by dclab
    itself, as ``ds.config.tostring(sections=CFG_METADATA)``), within dclab's line limit.

    An attribute dclab's configuration refuses (a value its definitions cannot convert)
    is kept as its text, where dclab-join fails; one without a section is left out (dclab
    cannot read such a file at all)."""
    # dclab (with scipy behind it, ~0.9 s): imported when a join's log is made or checked
    import warnings

    from dclab import definitions as dfn
    from dclab.rtdc_dataset.config import Configuration
    config = Configuration()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dclab's warnings about keys it does not know
        for key, value in attrs.items():
            section, sep, name = key.partition(":")
            if not sep or section not in dfn.CFG_METADATA:
                continue
            value = _text(value) if isinstance(value, (bytes, np.bytes_)) else value
            try:
                config[section][name] = value
            except (ValueError, TypeError, KeyError):  # dclab's own conversion refused it
                UserDict.__setitem__(config[section], name.lower(), _text(value))
        text = config.tostring(sections=dfn.CFG_METADATA)
    return wrap_lines(text.split("\n"))


def attrs_of(h5: h5py.File) -> dict:
    """Root attributes of an open file as a plain dict."""
    return dict(h5.attrs.items())


def _lines(data) -> list[str]:
    return [ln.decode("utf-8", errors="replace") if isinstance(ln, (bytes, np.bytes_))
            else str(ln) for ln in np.asarray(data).ravel().tolist()]


def logs_of(h5: h5py.File) -> dict[str, list[str]]:
    """Every non-empty log of an open file: name -> lines (text)."""
    out = {}
    for name, ds in h5.get("logs", {}).items():
        lines = _lines(ds[:])
        if lines:
            out[name] = lines
    return out


def tables_of(h5: h5py.File) -> dict[str, tuple[np.ndarray, dict]]:
    """Every non-empty table of an open file: name -> (array, attributes)."""
    out = {}
    for name, ds in h5.get("tables", {}).items():
        data = ds[:]
        if data.size:
            out[name] = (data, dict(ds.attrs.items()))
    return out
