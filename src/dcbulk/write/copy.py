"""Copy features, metadata and basins between .rtdc files (dcnum-compatible)."""
from __future__ import annotations

import logging
import os
import pathlib
import warnings
from typing import Any, Sequence

import h5py
import numpy as np

from .._version import __version__
from ..read.basins import extract_basin_dicts
from ..read.files import open_h5_readonly
from ..read.identifier import basin_identifier
from .basin_warnings import (CreatingFileWithoutBasinWarning,
                             IgnoringBasinTypeWarning)
from .blockwise import arrays_equal, check_mapping, iter_mapped_blocks
from .filters import best_nd_chunks, set_default_filter_kwargs
from .hdf5_writer import HDF5Writer
from .sliced import copy_sliced

__all__ = ["create_with_basins", "copy_basins", "copy_features",
           "copy_metadata"]

logger = logging.getLogger(__name__)

#: Provenance string written where dcnum writes ``"dcnum <version>"``.
SOFTWARE = f"dcbulk {__version__}"
#: Groups whose datasets :func:`copy_metadata` copies.
METADATA_GROUPS = ("logs", "tables")
#: Number of HDF5 chunks read at once by a mapped :func:`copy_features`.
MAPPED_READ_CHUNKS = 10

PathLike = str | os.PathLike[str]


def copy_features(h5_src: h5py.File,
                  h5_dst: h5py.File,
                  features: Sequence[str],
                  mapping: np.ndarray | None = None,
                  ds_kwds: dict[str, Any] | None = None,
                  ) -> None:
    """Copy features from the ``events`` group of one file to another

    Parameters
    ----------
    h5_src
        Source file with `features` in ``events``.
    h5_dst
        Destination file, writable.
    features
        Names of the (dataset) features to copy.
    mapping
        Integer indices into the source events; the destination then
        holds ``source[mapping]`` for each feature, written block by block
        with new chunks and filters. Without a mapping, each dataset is
        copied unchanged (same chunks, filters and attributes) with
        ``h5py.h5o.copy``.
    ds_kwds
        :meth:`h5py.Group.create_dataset` keywords for mapped copies
        (defaults from :func:`set_default_filter_kwargs`).

    Raises
    ------
    ValueError
        If a feature exists in the destination with different content.
        (An identical one-dimensional feature is skipped.) Also for a
        mapping that is not 1-D or points outside the source.
    TypeError
        If the mapping does not hold integers.
    NotImplementedError
        If a feature is an HDF5 group (e.g. ``trace``, ``contour``).
    """
    ei = h5_src["events"]
    eo = h5_dst.require_group("events")
    hw = HDF5Writer(h5_dst, ds_kwds=ds_kwds)
    for feat in features:
        dsi = ei[feat]
        if not isinstance(dsi, h5py.Dataset):
            raise NotImplementedError(
                f"Only dataset-based features are supported here, not "
                f"'{feat}' in {h5_src.filename}")
        fmap = None if mapping is None else check_mapping(mapping,
                                                          dsi.shape[0])
        if feat in eo:
            if _same_scalar_feature(dsi, eo[feat], fmap):
                logger.debug("Skipping identical feature %s", feat)
                continue
            raise ValueError(f"Output file {h5_dst.filename} already "
                             f"contains the feature {feat}.")
        if fmap is None:
            h5py.h5o.copy(src_loc=ei.id, src_name=feat.encode(),
                          dst_loc=eo.id, dst_name=feat.encode())
        else:
            _copy_mapped(hw, dsi, feat, fmap)


def _mapped_block_events(dsi: h5py.Dataset) -> int:
    """Events per read for mapped access to `dsi`."""
    return MAPPED_READ_CHUNKS * best_nd_chunks(dsi.shape[1:], dsi.dtype)[0]


def _same_scalar_feature(dsi: h5py.Dataset, dso: Any,
                         mapping: np.ndarray | None) -> bool:
    """Whether `dso` already holds the 1-D feature ``dsi[mapping]``."""
    if not isinstance(dso, h5py.Dataset) or dsi.ndim != 1:
        return False
    if mapping is None:
        return arrays_equal(dsi, dso, equal_nan=True)
    if dso.shape != mapping.shape:
        return False
    parts = list(iter_mapped_blocks(dsi, mapping, _mapped_block_events(dsi)))
    expected = (np.concatenate(parts) if parts
                else np.zeros(0, dtype=dsi.dtype))
    return arrays_equal(expected, dso, equal_nan=True)


def _copy_mapped(hw: HDF5Writer, dsi: h5py.Dataset, feat: str,
                 mapping: np.ndarray) -> None:
    """Write ``dsi[mapping]`` to ``events/feat`` block by block."""
    dtype = dsi.dtype
    if feat == "mask" and dtype == bool:
        dtype = np.dtype(np.uint8)  # as HDF5Writer.store_feature_chunk does
    hw.require_feature(feat, dsi.shape[1:], dtype)
    for data in iter_mapped_blocks(dsi, mapping, _mapped_block_events(dsi)):
        hw.store_feature_chunk(feat, data)


def copy_metadata(h5_src: h5py.File, h5_dst: h5py.File) -> None:
    """Copy root attributes, logs and tables that the destination lacks

    Nothing in `h5_dst` is overwritten. Logs and tables are copied with
    their attributes, compressed with the default filters, in slices of
    bounded size; variable-length strings become fixed-length bytes (unless
    the padding would cost more than the text: one long line among short
    ones stays variable-length, see :mod:`dcbulk.write.sliced`) and empty
    datasets are skipped.
    Each copied dataset's ``software`` attribute gets ``dcbulk <version>``
    appended (joined with ``" | "``).

    Parameters
    ----------
    h5_src
        Source file.
    h5_dst
        Destination file, writable.
    """
    ds_kwds = set_default_filter_kwargs()
    dst_attrs = h5_dst.attrs  # one attribute manager each, not one per attribute
    have = set(dst_attrs)
    for key, value in h5_src.attrs.items():
        if key not in have:
            dst_attrs[key] = value
    for topic in METADATA_GROUPS:
        if topic not in h5_src:
            continue
        for key in h5_src[topic]:
            dst_group = h5_dst.require_group(topic)
            if key in dst_group:
                continue
            src = h5_src[topic][key]
            try:
                ds = copy_sliced(src, dst_group, key, ds_kwds)
            except OSError as exc:  # e.g. a damaged chunk: say which dataset
                raise OSError(f"{topic}/{key} of {h5_src.filename} unreadable: {exc}") from exc
            if ds is None:
                logger.debug("Skipping empty %s/%s", topic, key)
                continue
            ds.attrs.update(src.attrs)
            ds.attrs["software"] = _append_software(ds.attrs.get("software"))


def _append_software(previous: Any) -> str:
    """Return the ``software`` attribute with dcbulk appended."""
    if isinstance(previous, (bytes, np.bytes_)):
        previous = bytes(previous).decode("utf-8", errors="replace")
    parts = [str(previous), SOFTWARE] if previous is not None else [SOFTWARE]
    return " | ".join(parts)


def copy_basins(h5_src: h5py.File, h5_dst: h5py.File,
                internal_basins: bool = True) -> None:
    """Store the basins of one file in another, with their mappings

    The ``basinmapN`` feature of each mapped basin is read from the source
    and stored again (reusing an identical one) in the destination, so the
    mapping name may change. Internal basin data is copied to the
    destination's ``basin_events``.

    Parameters
    ----------
    h5_src
        Source file.
    h5_dst
        Destination file, writable.
    internal_basins
        Copy internal basins; if False they are left out silently.

    Warns
    -----
    IgnoringBasinTypeWarning
        For each basin of another type than ``file`` or ``internal``.
    """
    hw = HDF5Writer(h5_dst)
    for bdict in extract_basin_dicts(h5_src, check=False):
        btype = bdict["type"]
        if btype == "internal":
            if not internal_basins:
                continue
            internal_data = {feat: h5_src["basin_events"][feat]
                             for feat in bdict["features"]}
            hw.store_basin(name=bdict["name"],
                           description=bdict.get("description"),
                           mapping=h5_src["events"][bdict["mapping"]][:],
                           internal_data=internal_data)
        elif btype == "file":
            mname = bdict.get("mapping")
            mapping = None if mname is None else h5_src["events"][mname][:]
            hw.store_basin(name=bdict["name"],
                           description=bdict.get("description"),
                           paths=bdict["paths"],
                           features=bdict.get("features"),
                           mapping=mapping,
                           identifier=bdict.get("identifier"))
        else:
            warnings.warn(f"Ignored basin of type '{btype}'",
                          IgnoringBasinTypeWarning, stacklevel=2)


def _representative_path(path_out: pathlib.Path,
                         candidates: Sequence[PathLike]
                         ) -> pathlib.Path | None:
    """First candidate that exists, absolute or relative to the output."""
    for cand in candidates:
        cand = pathlib.Path(cand)
        if cand.is_absolute() and cand.exists():
            return cand
        relative = path_out.parent / cand
        if relative.exists():
            return relative
    return None


def create_with_basins(path_out: PathLike,
                       basin_paths: Sequence[PathLike]
                       | Sequence[Sequence[PathLike]],
                       ) -> None:
    """Create an .rtdc file that only refers to other files as basins

    For each basin, metadata and (non-internal) basins are copied from the
    first of its paths that exists (absolute, or relative to the output's
    directory), and its features and measurement identifier are recorded.

    Parameters
    ----------
    path_out
        The file to create (overwritten if it exists).
    basin_paths
        One entry per basin: a path, or a list of paths to the same data
        (e.g. a relative and an absolute path).

    Warns
    -----
    CreatingFileWithoutBasinWarning
        If `basin_paths` is empty.
    """
    path_out = pathlib.Path(path_out)
    if not basin_paths:
        warnings.warn(f"Creating basin-based file '{path_out}' without any "
                      f"basins, since the list `basin_paths' is empty!",
                      CreatingFileWithoutBasinWarning, stacklevel=2)
        basin_paths = []
    with HDF5Writer(path_out, mode="w") as hw:
        for entry in basin_paths:
            if isinstance(entry, (str, os.PathLike)):
                paths = [entry]
            else:
                paths = list(entry)
            rep = _representative_path(path_out, paths)
            features = None
            identifier = None
            name = str(paths[0])
            if rep is not None:
                name = rep.name
                with open_h5_readonly(rep) as h5:
                    copy_metadata(h5_src=h5, h5_dst=hw.h5)
                    copy_basins(h5_src=h5, h5_dst=hw.h5,
                                internal_basins=False)
                    feats = list(h5["events"].keys())
                    if "basin_events" in h5:
                        feats += list(h5["basin_events"].keys())
                    features = sorted(f for f in feats
                                      if not f.startswith("basinmap"))
                    identifier = basin_identifier(h5)
            hw.store_basin(name=name,
                           paths=paths,
                           features=features,
                           description=f"Created by {SOFTWARE}",
                           identifier=identifier)
