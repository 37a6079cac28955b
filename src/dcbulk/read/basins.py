"""Parse the basin definitions stored in the ``basins`` group of an .rtdc file."""
from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

import h5py
import numpy as np

from ..errors import SourceError
from .files import open_h5_readonly
from .identifier import basin_identifier, get_measurement_identifier

__all__ = ["basin_feature_names", "carried_identifier", "extract_basin_dicts",
           "resolve_file_basin"]

logger = logging.getLogger(__name__)

#: Basin types that dcbulk (like dcnum) can resolve.
SUPPORTED_BASIN_TYPES = ("internal", "file")


def _decode_line(line: Any) -> str:
    """Return one stored JSON line as text (bytes are UTF-8 decoded)."""
    if isinstance(line, (bytes, np.bytes_)):
        return bytes(line).decode("utf-8")
    return str(line)


def resolve_file_basin(directory: str | pathlib.Path, bdict: dict) -> pathlib.Path | None:
    """The first candidate path of a file basin that is a regular file (a FIFO is never
    opened), absolute or relative to ``directory`` (the referring file's), or None."""
    for cand in bdict.get("paths", []):
        path = pathlib.Path(cand)
        path = path if path.is_absolute() else pathlib.Path(directory) / path
        if path.is_file():
            return path
    return None


def carried_identifier(bdict: dict, src_dir: str | pathlib.Path) -> str | None:
    """The identifier an output stores for a file basin it carries from its source (whose
    directory is ``src_dir``): the one both readers agree on for the basin file
    (:func:`~dcbulk.read.identifier.basin_identifier`) where the source's stored none or
    that file's; the source's where the file there is another measurement (the guard is
    kept); the source's where no candidate path opens. The writer's rule and verify's."""
    stored = bdict.get("identifier")
    for cand in bdict.get("paths", []):
        path = pathlib.Path(cand)
        path = pathlib.Path(os.path.normpath(path if path.is_absolute()
                                             else pathlib.Path(src_dir) / path))
        if not path.is_file():
            continue
        try:
            with open_h5_readonly(path) as h5:
                agreed = basin_identifier(h5)
                known = {get_measurement_identifier(h5, compat=c) for c in ("dcnum", "dclab")}
        except OSError:
            continue
        return agreed if stored is None or stored in known else stored
    return stored


def _another_measurement(h5: h5py.File | h5py.Group, bdict: dict) -> str | None:
    """dclab's rule for a basin it reads as ``"same"``: the basin file's measurement
    identifier must be the referring file's. The basin file when it is another
    measurement's; None when it is the same, or cannot be told (no identifier, no file).
    Written unmapped into an output, dcnum would take its rows as this file's events."""
    if bdict.get("type") != "file":
        return None
    path = resolve_file_basin(pathlib.Path(h5.file.filename).parent, bdict)
    if path is None:
        return None
    try:
        with open_h5_readonly(path) as bh5:
            theirs = get_measurement_identifier(bh5, compat="dclab")
    except OSError:
        return None
    ours = get_measurement_identifier(h5.file, compat="dclab")
    return str(path) if theirs and ours and theirs != ours else None


def extract_basin_dicts(h5: h5py.File | h5py.Group,
                        check: bool = True) -> list[dict[str, Any]]:
    """Return the basin definitions of an .rtdc file as dictionaries

    The result is the same as that of dcnum's
    ``HDF5Data.extract_basin_dicts``: one dictionary per dataset in the
    ``basins`` group, in the group's iteration order (sorted by key); except
    that a basin whose ``mapping`` is ``"same"`` (what dclab's writer stores
    for an unmapped basin, and dclab reads as such) is returned without a
    ``mapping``, as unmapped, where dcnum leaves it out (its events' features
    would then be lost in every output; written without the key, dclab and
    dcnum both read it as unmapped); with ``check``, such a basin whose file is
    another measurement's (dclab ignores it) is left out, with one warning line.

    Parameters
    ----------
    h5
        An open .rtdc file.
    check
        If True, leave out basins of a type other than ``"file"`` and
        ``"internal"`` and basins whose ``mapping`` feature (e.g.
        ``basinmap0``) is missing from the ``events`` group.

    Returns
    -------
    list[dict]
        The decoded JSON documents.

    Raises
    ------
    SourceError
        When a definition is not a JSON object with a ``type`` (one line naming file and key).
    """
    basins = h5.get("basins")
    if basins is None:
        return []
    events = h5.get("events")
    result = []
    for key in basins.keys():
        try:
            text = "\n".join(_decode_line(ln) for ln in basins[key][:].tolist())
            bdict = json.loads(text)
        except (ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
            raise SourceError(f"{h5.file.filename}: basin definition 'basins/{key}' is not "
                              f"readable JSON ({type(exc).__name__}: {exc})") from exc
        if not isinstance(bdict, dict) or "type" not in bdict:
            raise SourceError(f"{h5.file.filename}: basin definition 'basins/{key}' is not a "
                              f"JSON object with a 'type'")
        if bdict.get("mapping") == "same":  # dclab's word for unmapped (its writer's)
            bdict = {k: v for k, v in bdict.items() if k != "mapping"}
            other = _another_measurement(h5, bdict) if check else None
            if other is not None:
                logger.warning("%s: basin '%s' (\"mapping\": \"same\") is the file %s, of "
                               "another measurement than this one; dclab ignores it, so it "
                               "is not carried", h5.file.filename, bdict.get("name"), other)
                continue
        if check:
            if bdict["type"] not in SUPPORTED_BASIN_TYPES:
                logger.debug("Skipping basin %s of type %s",
                             key, bdict["type"])
                continue
            mapping = bdict.get("mapping")
            if mapping is not None and (events is None
                                        or mapping not in events):
                logger.debug("Skipping basin %s: mapping %s missing",
                             key, mapping)
                continue
        result.append(bdict)
    return result


def basin_feature_names(info) -> list[str]:
    """The feature names a basin to the file of ``info`` (a
    :class:`~dcbulk.read.inspect.SourceInfo`) lists: its own (``trace``, ``contour``: the
    group), as the writer stores a basin to the source and verify expects it."""
    names = {f.split("/")[0] for f in info.own_features if not f.startswith("basinmap")}
    if info.has_contour:
        names.add("contour")
    return sorted(names)
