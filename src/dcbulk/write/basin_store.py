"""Store basin definitions, internal basin data and ``basinmapN`` features.

The JSON document of a basin, its key (MD5 of the JSON text) and the way
it is stored (fixed-length bytes lines in ``basins/<key>``) are identical
to dcnum 0.31, so that dcnum and dclab read dcbulk's basins and identical
definitions are stored only once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import h5py
import numpy as np

from .blockwise import arrays_equal

if TYPE_CHECKING:
    from .hdf5_writer import HDF5Writer

__all__ = ["store_basin", "store_basin_text", "require_basinmap", "basin_json",
           "MAX_BASINMAPS"]

logger = logging.getLogger(__name__)

#: Number of mapping features available per file (basinmap0..basinmap9).
MAX_BASINMAPS = 10
#: Group holding the data of internal basins.
INTERNAL_GROUP = "basin_events"


def basin_json(bdat: dict[str, Any]) -> tuple[str, str]:
    """Return the JSON text of a basin definition and its key

    Parameters
    ----------
    bdat
        The basin definition; its key order is kept.

    Returns
    -------
    text : str
        ``json.dumps(bdat, indent=2)``.
    key : str
        MD5 hex digest of the UTF-8 encoded text.
    """
    text = json.dumps(bdat, indent=2)
    key = hashlib.md5(text.encode("utf-8", errors="ignore")).hexdigest()
    return text, key


def require_basinmap(writer: HDF5Writer, mapping: Any) -> str:
    """Return the name of a ``basinmapN`` feature holding `mapping`

    An existing ``basinmapN`` with identical values is reused; otherwise
    the mapping is stored in the first free one.

    Parameters
    ----------
    writer
        The writer of the output file.
    mapping
        One-dimensional integer array.

    Returns
    -------
    str
        ``"basinmap0"`` .. ``"basinmap9"``.

    Raises
    ------
    ValueError
        If the mapping is not one-dimensional, or all ten mapping features
        are taken by other mappings.
    """
    mapping = np.asarray(mapping)
    if mapping.ndim != 1:
        raise ValueError(
            f"A basin mapping must be one-dimensional, got shape "
            f"{mapping.shape}")
    events = writer.h5.require_group("events")
    for ii in range(MAX_BASINMAPS):
        candidate = f"basinmap{ii}"
        if candidate not in events:
            writer.store_feature_chunk(feat=candidate, data=mapping)
            return candidate
        if arrays_equal(events[candidate], mapping):
            logger.debug("Reusing identical %s", candidate)
            return candidate
    raise ValueError(
        f"You have exhausted the usage of mapped basins for "
        f"{writer.h5.filename}: basinmap0 to basinmap{MAX_BASINMAPS - 1} "
        f"all hold other mappings. Please revise your analysis pipeline.")


def _check_list(value: Any, what: str, kind: str) -> list:
    """``value`` as a list; refuse a bare string or path (its characters would be
    stored one by one)."""
    if isinstance(value, (str, bytes, pathlib.PurePath)):
        raise TypeError(
            f"`{what}` must be a list of {kind}s, got the single {kind} "
            f"{value!r}")
    return list(value)


def store_basin(writer: HDF5Writer,
                name: str,
                paths: Sequence[str | pathlib.Path] | None = None,
                features: Sequence[str] | None = None,
                description: str | None = None,
                mapping: np.ndarray | None = None,
                internal_data: dict[str, Any] | None = None,
                identifier: str | None = None,
                ) -> str:
    """Store a file basin or an internal basin

    Parameters
    ----------
    writer
        The writer of the output file.
    name
        Basin name (need not be unique).
    paths
        Candidate locations of a file basin; must be None for an
        internal basin.
    features
        Features the basin provides (optional for a file basin, must be
        None for an internal basin, where they are the keys of
        `internal_data`).
    description
        Free text.
    mapping
        Integer indices mapping this file's events to the basin's events;
        stored as a ``basinmapN`` feature in ``events``.
    internal_data
        ``{feature: array or h5py.Dataset}`` stored in ``basin_events``;
        makes this an internal basin.
    identifier
        Measurement identifier of a file basin (see
        :func:`dcbulk.read.get_measurement_identifier`); ignored with a
        warning for internal basins.

    Returns
    -------
    str
        The basin key, the name of the dataset in ``basins``.

    Raises
    ------
    ValueError
        If `paths` or `features` are given with `internal_data`, `paths`
        is missing for a file basin, an internal feature already exists,
        or no ``basinmapN`` is free.
    TypeError
        If `paths` or `features` is a single string or path instead of a
        list.
    """
    bdat: dict[str, Any] = {"description": description, "name": name}
    if internal_data:
        if features is not None:
            raise ValueError("`features` must be set to None when storing "
                             "internal basin features")
        if paths is not None:
            raise ValueError("`paths` must be set to None when storing "
                             "internal basin features")
        if identifier is not None:
            warnings.warn(f"Not storing identifier for internal basin "
                          f"'{name}' (got '{identifier}')", UserWarning,
                          stacklevel=3)
        group = writer.h5.require_group(INTERNAL_GROUP)
        for feat in internal_data:
            if feat in group:
                raise ValueError(f"Feature '{feat}' is already defined as "
                                 f"an internal basin feature in "
                                 f"{writer.h5.filename}")
        for feat, data in internal_data.items():
            writer.store_feature_chunk(feat=feat, data=data,
                                       group_name=INTERNAL_GROUP)
        features = sorted(internal_data.keys())
        bdat["format"] = "h5dataset"
        bdat["paths"] = [INTERNAL_GROUP]
        bdat["type"] = "internal"
    else:
        if paths is None:
            raise ValueError("`paths` must not be set to None when storing "
                             "external basin features")
        bdat["format"] = "hdf5"
        bdat["paths"] = [str(pp) for pp in _check_list(paths, "paths", "path")]
        bdat["type"] = "file"
        bdat["identifier"] = identifier
    if features is not None and len(features):  # dcnum stores a string as it is
        bdat["features"] = _check_list(features, "features", "feature name")
    if mapping is not None:
        bdat["mapping"] = require_basinmap(writer, mapping)

    text, key = basin_json(bdat)
    basins = writer.h5.require_group("basins")
    if key in basins:
        logger.debug("Basin %s already stored", key)
        return key
    store_basin_text(basins, key, text, writer.ds_kwds)
    return key


def store_basin_text(basins: h5py.Group, key: str, text: str,
                     ds_kwds: dict[str, Any]) -> h5py.Dataset:
    """Store the JSON text of a basin definition as ``basins[key]``

    Its lines, UTF-8 encoded, as fixed-length bytes as wide as the longest
    line (dcnum's storage), in chunks h5py chooses, with the writer's
    dataset keywords `ds_kwds` (filters); verify compares every stored
    definition with one stored so.

    Parameters
    ----------
    basins
        The ``basins`` group.
    key
        The basin key (:func:`basin_json`).
    text
        The JSON text (:func:`basin_json`).
    ds_kwds
        Keyword arguments for :meth:`h5py.Group.create_dataset`.

    Returns
    -------
    h5py.Dataset
        The stored definition.
    """
    lines = [ln.encode("utf-8") for ln in text.split("\n")]
    width = max(len(ln) for ln in lines)
    return basins.create_dataset(
        name=key,
        data=np.array(lines, dtype=f"S{width}"),
        chunks=True,
        **ds_kwds)
