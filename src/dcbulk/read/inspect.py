"""Describe a source file as picklable records: which feature lives where.

:func:`inspect_source` opens an ``.rtdc`` file once (on the client or on a worker), resolves every
feature it can provide -- its own ``events`` datasets and groups, internal basins
(``basin_events`` + ``basinmapN``) and file basins (other files, mapped or not) -- and returns
a :class:`SourceInfo` made only of strings, ints, tuples and dicts. Planning and the worker-side
readers work from these records; no h5py object ever leaves this module.
"""
from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass, field, replace

import h5py
import numpy as np

from ..codec import ChunkCodec
from ..errors import DcbulkError, SourceError
from .basins import extract_basin_dicts, resolve_file_basin
from .files import open_child, open_rtdc
from .identifier import get_measurement_identifier
from .policy import check_structure, walk_datasets

__all__ = ["DatasetRef", "FeatureSource", "SourceInfo", "inspect_source", "describe_dataset",
           "empty_event_groups"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRef:
    """Where one HDF5 dataset lives and how it is stored.

    Parameters
    ----------
    path
        Absolute path of the file holding the dataset.
    name
        HDF5 path of the dataset as the file shows it, e.g. ``"events/image"`` (for a
        followed link the link's own path, never the path inside the file it leads to).
    shape, dtype, chunks
        As reported by h5py (``dtype`` as ``np.dtype.str``; ``chunks`` None when contiguous).
    codec
        ``ChunkCodec.to_dict()`` of the filter pipeline when dcbulk can reproduce it
        byte for byte, else None.
    """

    path: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...] | None
    codec: dict | None

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def chunk_codec(self) -> ChunkCodec | None:
        return None if self.codec is None else ChunkCodec.from_dict(self.codec)


@dataclass(frozen=True)
class FeatureSource:
    """One feature of a source file's events and where its rows come from.

    Row ``i`` of the feature (event ``i`` of the source) is row ``i`` of ``data`` when
    ``rowmap`` is None, else row ``rowmap[i]`` of ``data`` (``rowmap`` is a ``basinmapN``
    dataset of the source file).
    """

    feature: str
    data: DatasetRef
    rowmap: DatasetRef | None = None
    origin: str = "events"


@dataclass(frozen=True)
class SourceInfo:
    """Everything planning needs to know about one source file."""

    path: str
    n_events: int
    identifier: str | None
    features: dict[str, FeatureSource] = field(default_factory=dict)
    own_features: tuple[str, ...] = ()
    basins: tuple[dict, ...] = ()
    has_contour: bool = False
    #: groups in ``events`` without members (e.g. an empty ``trace``), kept by conversions
    empty_groups: tuple[str, ...] = ()
    size: int = 0
    mtime: float = 0.0
    #: external links, virtual and externally stored datasets were followed on purpose
    follow_external: bool = False
    #: resolved paths of the file basins whose features this description uses
    basin_files: tuple[str, ...] = ()


def describe_dataset(path: str | os.PathLike, dset: h5py.Dataset, name: str) -> DatasetRef:
    """Return the :class:`DatasetRef` of an open dataset reached as ``name`` in ``path``.

    ``name`` is the path the file shows (``dset.name`` is the path inside the file a link
    leads to, which may name another dataset of this file).
    """
    codec = ChunkCodec.from_dataset(dset)
    chunks = dset.chunks
    return DatasetRef(
        path=str(path), name=name.lstrip("/"), shape=tuple(int(s) for s in dset.shape),
        dtype=dset.dtype.str, chunks=None if chunks is None else tuple(chunks),
        codec=None if codec is None else codec.to_dict())


def _walk_event_datasets(group: h5py.Group, prefix: str = "", _seen: frozenset = frozenset()):
    """Yield ``(feature, dataset)`` at any depth (``trace/fl1_raw``), top-level contour excluded.

    No policy checks (for dcbulk's own outputs); sources go through
    :func:`~dcbulk.read.policy.walk_datasets`.
    """
    seen = _seen | {group.id}
    for key in sorted(group.keys()):
        obj = open_child(group, key)
        if isinstance(obj, h5py.Dataset):
            yield prefix + key, obj
        elif (isinstance(obj, h5py.Group) and obj.id not in seen
              and not (key == "contour" and not prefix)):
            yield from _walk_event_datasets(obj, f"{prefix}{key}/", seen)


def _event_datasets(path: str, events: h5py.Group, follow_external: bool):
    """The source's ``events`` datasets under the policy (:mod:`~dcbulk.read.policy`)."""
    return walk_datasets(events, path, follow_external=follow_external, skip=("contour",))


def empty_event_groups(events: h5py.Group) -> tuple[str, ...]:
    """Names of the groups in ``events`` that have no members (``contour`` aside)."""
    return tuple(sorted(key for key in events.keys() if key != "contour"  # class: not opened
                        and events.get(key, getclass=True) is h5py.Group
                        and not len(events[key])))


def _event_count(path: str, events: h5py.Group, lengths: dict[str, int]) -> int:
    if lengths:
        counts = set(lengths.values())
        if len(counts) > 1:
            by_length: dict[int, list[str]] = {}
            for name, n in sorted(lengths.items()):
                by_length.setdefault(n, []).append(name)
            groups = sorted(by_length.items(), key=lambda item: -len(item[1]))
            parts = []
            for n, names in groups[:4]:
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more"
                                                if len(names) > 3 else "")
                parts.append(f"{n} events: {shown}")
            if len(groups) > 4:
                parts.append(f"{len(groups) - 4} more lengths")
            raise SourceError(f"{path}: features in 'events' differ in length "
                              f"({'; '.join(parts)}); refusing to guess which events are valid")
        return counts.pop()
    attr = events.file.attrs.get("experiment:event count")
    return int(attr) if attr is not None else 0


def _check_contour_names(path: str, group: h5py.Group, n_events: int) -> None:
    """Refuse a contour group whose members are not ``"0" .. "n-1"``, one per event, as dclab
    reads them (``group[str(i)]``); those were left out of an output without a word."""
    names, events = set(group.keys()), set(map(str, range(n_events)))
    if names != events:
        extra, missing = names - events, events - names
        what = (f"holds '{sorted(extra)[0]}', not an event's" if extra
                else f"lacks '{min(missing, key=int)}'")
        raise SourceError(f"{path}: 'events/contour' {what} (a contour per event, named 0.."
                          f"{n_events - 1}, as dclab reads them; {len(names)} members for "
                          f"{n_events} events); refusing to drop contours")
    inner = next((name for name in names if group.get(name, getclass=True) is h5py.Group), None)
    if inner is not None:  # before any output (a split's pieces) is written
        raise SourceError(f"{path}: 'events/contour/{inner}' is not a dataset; refusing to "
                          f"drop a contour")


def _basin_features(path: str, h5: h5py.File, bdict: dict, rowmap: DatasetRef | None,
                    n_events: int, follow_external: bool) -> dict[str, FeatureSource]:
    """Describe the features one basin provides (empty when unreachable)."""
    btype = bdict.get("type")
    label = f"{btype} basin '{bdict.get('name')}'"
    found: dict[str, FeatureSource] = {}
    if btype == "internal":
        group = h5.get("basin_events")
        if group is None:
            return found
        stored = dict(walk_datasets(group, path, follow_external=follow_external))
        for feat in bdict.get("features", []):
            if feat in stored:
                found[feat] = FeatureSource(
                    feat, describe_dataset(path, stored[feat], f"basin_events/{feat}"),
                    rowmap, label)
        return found
    if btype != "file" or bdict.get("format", "hdf5") != "hdf5":
        return found
    bpath = resolve_file_basin(pathlib.Path(path).parent, bdict)
    if bpath is None:
        logger.info("%s: %s not reachable, its features are skipped", path, label)
        return found
    bpath = bpath.resolve()
    try:
        with open_rtdc(bpath) as bh5:
            ident = bdict.get("identifier")
            if ident and get_measurement_identifier(bh5) != ident:
                logger.warning("%s: %s at %s has another identifier; skipped", path, label, bpath)
                return found
            wanted = bdict.get("features")
            for feat, dset in _event_datasets(str(bpath), bh5["events"], follow_external):
                if wanted is not None and feat not in wanted:
                    continue
                if rowmap is None and dset.shape[0] < n_events:
                    continue
                found[feat] = FeatureSource(feat, describe_dataset(bpath, dset,
                                                                   f"events/{feat}"),
                                            rowmap, label)
    except SourceError as exc:
        logger.warning("%s: %s unusable: %s", path, label, exc)
    return found


def inspect_source(path: str | os.PathLike, *, follow_external: bool = False) -> SourceInfo:
    """Open a source file and describe its features, basins and identity.

    Every object is checked against the source policy (:mod:`~dcbulk.read.policy`) before
    anything is planned, and every feature is described under the name the file shows.

    Parameters
    ----------
    path
        The ``.rtdc`` file.
    follow_external
        Follow external links, soft links out of their group, virtual datasets and external
        raw storage instead of refusing the file.

    Returns
    -------
    SourceInfo
        Own features first; features provided only by basins are added after them (earlier
        basins win over later ones, as in dclab).

    Raises
    ------
    SourceNotFoundError, NotHDF5Error, NotRtdcError, SourceError
        When the file is missing, not HDF5, has no ``events`` or inconsistent feature lengths,
        or anything in it cannot be read (one line naming the file).
    ExternalDataError, SourceLimitError
        When it breaks the source policy (:mod:`~dcbulk.read.policy`).
    """
    path = str(pathlib.Path(path).resolve())
    try:
        with open_rtdc(path) as h5:
            info = _describe(path, h5, follow_external)
    except DcbulkError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise SourceError(f"{path}: unreadable: {type(exc).__name__}: {exc}") from exc
    st = os.stat(path)
    return replace(info, size=st.st_size, mtime=st.st_mtime)


def _describe(path: str, h5: h5py.File, follow_external: bool) -> SourceInfo:
    check_structure(h5, path, follow_external=follow_external)
    events = h5["events"]
    own = {feat: FeatureSource(feat, describe_dataset(path, dset, f"events/{feat}"))
           for feat, dset in _event_datasets(path, events, follow_external)}
    single = [k for k, v in own.items() if not v.data.shape]
    if single:
        raise SourceError(f"{path}: 'events/{single[0]}' holds a single value (shape ()), not "
                          f"one per event; refusing to guess its events")
    odd = [k for k, v in own.items() if np.dtype(v.data.dtype).hasobject]
    if odd:
        raise SourceError(f"{path}: 'events/{odd[0]}' holds variable-length items (strings or "
                          f"references), which no feature of dclab or dcnum is")
    lengths = {k: v.data.shape[0] for k, v in own.items() if not k.startswith("basinmap")}
    n_events = _event_count(path, events, lengths)
    kind = events.get("contour", getclass=True)
    if kind is not None and kind is not h5py.Group:
        raise SourceError(f"{path}: 'events/contour' is a dataset, not a group of one contour "
                          f"per event (as dclab reads them); refusing to drop contours")
    contour = kind is h5py.Group
    if contour:
        _check_contour_names(path, events["contour"], n_events)
    basins = tuple(extract_basin_dicts(h5, check=True))
    features = dict(own)
    basin_files = []
    for bdict in basins:
        mapname = bdict.get("mapping")
        rowmap = None
        if mapname:
            rowmap = own[mapname].data if mapname in own else None
            if rowmap is None:
                continue
        found = _basin_features(path, h5, bdict, rowmap, n_events, follow_external)
        for feat, fsrc in found.items():
            features.setdefault(feat, fsrc)
        basin_files.extend(sorted({f.data.path for f in found.values()} - {path}))
    return SourceInfo(
        path=path, n_events=n_events, identifier=get_measurement_identifier(h5, compat="dclab"),
        features=features, own_features=tuple(own), basins=basins,
        has_contour=contour,
        empty_groups=empty_event_groups(events), follow_external=follow_external,
        basin_files=tuple(dict.fromkeys(basin_files)))

