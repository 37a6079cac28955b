"""The source policy: which objects of a source file dcbulk reads, checked while walking it.

dcbulk reads a file's own datasets. Refused by default, each with one line naming the file
and the object (the file fails alone):

- an HDF5 external link (its data live in another file);
- a soft link that leaves the top-level group it appears in (``events``, ``logs``, ...),
  dangles, or leads back into a group being walked (a cycle);
- a virtual dataset (``Dataset.is_virtual``) and a dataset with external raw storage
  (``Dataset.external``).

dclab's ``IntegrityChecker`` treats the same objects as violations
(``dclab.rtdc_dataset.check.hdf5_has_external``). ``follow_external=True`` (CLI
``--follow-external``) follows them; the data they lead to are then read under the name the
source shows and stored in the output as the source's own.

Always refused, because memory would grow with what a file *declares* rather than with what
it *holds*: a dataset whose shape needs chunks the file never wrote (fewer allocated chunks,
``H5Dget_num_chunks``, than the shape's chunk count), a contiguous dataset without allocated
storage, and a single item -- one event's row of a feature, one contour, one log line or
table record -- of more than :data:`MAX_ITEM_BYTES`.
"""
from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator
from types import MappingProxyType

import h5py
import numpy as np
from h5py import h5l

from ..errors import ExternalDataError, SourceError, SourceLimitError
from .files import open_child

__all__ = ["IMAGE_ATTRS", "MAX_ITEM_BYTES", "STRUCTURE_GROUPS", "FOLLOW_HINT", "check_link",
           "check_dataset", "check_item_bytes", "walk_datasets", "check_structure",
           "external_objects", "is_reference", "misshapen", "not_carried"]

#: the largest single item (one event's row, one contour, one log line) dcbulk holds at once
MAX_ITEM_BYTES = 64 * 1024**2
#: the top-level groups of the .rtdc layout dcbulk reads
STRUCTURE_GROUPS = ("events", "basin_events", "logs", "tables", "basins")

#: the HDF5 image attributes of a feature with 2-D events, as fixed-length bytes: what
#: dcnum's and dclab's writers set, and so does dcbulk's (also on internal basin image data)
IMAGE_ATTRS = MappingProxyType({"CLASS": np.bytes_("IMAGE"),
                                "IMAGE_VERSION": np.bytes_("1.2"),
                                "IMAGE_SUBCLASS": np.bytes_("IMAGE_GRAYSCALE")})

#: how to follow outside data on purpose
FOLLOW_HINT = "dcbulk reads only a file's own data (--follow-external follows it)"


def _shown(group: h5py.Group, key: str) -> str:
    return posixpath.join(group.name, key).lstrip("/")


def check_link(group: h5py.Group, key: str, path: str, *, follow_external: bool) -> bool:
    """Refuse ``group[key]`` when it is an external link or a soft link out of its group.

    Returns True when it is a hard link (for :func:`~dcbulk.read.files.open_child`).

    Raises
    ------
    ExternalDataError
        Naming the file, the object and where the link leads.
    """
    try:  # the common case, a hard link, without h5py's link objects
        if group.id.links.get_info(key.encode()).type == h5l.TYPE_HARD:
            return True
    except (KeyError, RuntimeError):  # no such name: h5py's own path below
        pass
    link = group.get(key, getlink=True)
    shown = _shown(group, key)
    if isinstance(link, h5py.ExternalLink):
        if not follow_external:
            raise ExternalDataError(f"{path}: '{shown}' is an HDF5 external link to "
                                    f"{link.filename}:{link.path}; {FOLLOW_HINT}")
    elif isinstance(link, h5py.SoftLink):
        target = posixpath.normpath(posixpath.join(group.name, link.path))
        top = "/" + shown.split("/")[0]
        if not follow_external and not target.startswith(top + "/"):
            raise ExternalDataError(f"{path}: '{shown}' is a soft link to '{link.path}', "
                                    f"outside '{top[1:]}'; {FOLLOW_HINT}")
    if link is not None and not isinstance(link, h5py.HardLink) and group.get(key) is None:
        raise ExternalDataError(f"{path}: '{shown}' is a link that leads nowhere ({link})")
    return False


def check_item_bytes(nbytes: int, shown: str, path: str, what: str) -> None:
    """Refuse a single item (row, contour, line, record) above :data:`MAX_ITEM_BYTES`."""
    if nbytes > MAX_ITEM_BYTES:
        raise SourceLimitError(f"{path}: '{shown}': {what} of {nbytes:,} bytes exceeds "
                               f"dcbulk's limit of {MAX_ITEM_BYTES:,} bytes per item")


def _declared_chunks(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    return math.prod(math.ceil(s / c) for s, c in zip(shape, chunks))


def check_dataset(dset: h5py.Dataset, shown: str, path: str, *, follow_external: bool,
                  item: str = "row") -> None:
    """Refuse a virtual or externally stored dataset (unless followed) and declared-only data.

    ``item`` names what one row is (``"row"``, ``"contour"``, ``"line"``, ...); a whole
    contour is one item (``item="contour"``).

    Raises
    ------
    ExternalDataError
        A virtual dataset or external raw storage, without ``follow_external``.
    SourceLimitError
        Chunks or storage the shape needs but the file does not hold, or an item above
        :data:`MAX_ITEM_BYTES`.
    """
    if dset.is_virtual or dset.external:
        if not follow_external:
            if dset.is_virtual:
                where = sorted({f"{s.file_name}:{s.dset_name}" for s in dset.virtual_sources()})
                raise ExternalDataError(f"{path}: '{shown}' is a virtual dataset (data in "
                                        f"{', '.join(where[:3])}); {FOLLOW_HINT}")
            files = sorted({str(e[0]) for e in dset.external})
            raise ExternalDataError(f"{path}: '{shown}' has external raw storage (in "
                                    f"{', '.join(files[:3])}); {FOLLOW_HINT}")
        return  # followed on purpose: the data it leads to are the user's choice
    shape = dset.shape
    if not shape:
        return  # scalar or null dataspace: one item, stored with the object header
    itemsize = dset.dtype.itemsize
    nbytes = math.prod(shape) * itemsize
    row = nbytes if item == "contour" else math.prod(shape[1:]) * itemsize
    check_item_bytes(row, shown, path, f"one {item}")
    if nbytes == 0:
        return
    chunks = dset.chunks
    if chunks is not None:
        declared = _declared_chunks(shape, chunks)
        stored = dset.id.get_num_chunks()
        if stored < declared:
            raise SourceLimitError(
                f"{path}: '{shown}' declares shape {shape} ({nbytes:,} bytes "
                f"in {declared:,} chunks) but the file stores only {stored:,} of these "
                f"chunks; dcbulk refuses data a file does not hold")
    elif dset.id.get_storage_size() == 0:
        raise SourceLimitError(f"{path}: '{shown}' declares shape {shape} "
                               f"({nbytes:,} bytes) but the file stores none "
                               f"of it; dcbulk refuses data a file does not hold")


def walk_datasets(group: h5py.Group, path: str, *, follow_external: bool,
                  skip: tuple[str, ...] = (), item: str = "row", prefix: str = "",
                  _seen: frozenset = frozenset()) -> Iterator[tuple[str, h5py.Dataset]]:
    """Yield ``(name below group, dataset)`` at any depth, each link and dataset checked.

    Names are those the source shows (``trace/fl1_raw``, ``extra/deeper/x``), never the path
    a link leads to. Top-level members named in ``skip`` (``contour``) are checked as links
    but not walked.
    """
    seen = _seen | {group.id}
    for key in sorted(group.keys()):
        hard = check_link(group, key, path, follow_external=follow_external)
        obj = open_child(group, key, hard=hard)
        shown = _shown(group, key)
        if isinstance(obj, h5py.Dataset):
            check_dataset(obj, shown, path, follow_external=follow_external, item=item)
            yield prefix + key, obj
        elif isinstance(obj, h5py.Group) and not (key in skip and not prefix):
            if obj.id in seen:
                raise ExternalDataError(f"{path}: '{shown}' leads back to a group it is in "
                                        f"(a cycle)")
            yield from walk_datasets(obj, path, follow_external=follow_external, item=item,
                                     prefix=f"{prefix}{key}/", _seen=seen)


def misshapen(h5: h5py.File) -> list[str]:
    """What of a file's layout dclab and dcnum cannot read as an .rtdc file's, one line
    each: no ``events`` group, a top-level group of the format that is a dataset, a feature
    holding a single value (not one per event)."""
    problems = [] if isinstance(h5.get("events"), h5py.Group) else ["no 'events' group"]
    for name in STRUCTURE_GROUPS:
        kind = h5.get(name, getclass=True)
        if kind is not None and kind is not h5py.Group:
            problems.append(f"'{name}' is a dataset, not a group of {name} (as dclab and "
                            f"dcnum read them)")
    if not problems:
        events = h5["events"]
        problems += [f"'events/{key}' holds a single value (shape ()), not one per event"
                     for key in events if events.get(key, getclass=True) is h5py.Dataset
                     and events[key].shape == ()]
    return problems


def check_structure(h5: h5py.File, path: str, *, follow_external: bool) -> None:
    """Check the top-level groups and every log, table and basin definition of a file.

    ``events`` and ``basin_events`` are walked by the readers (:func:`walk_datasets`).
    """
    for name in STRUCTURE_GROUPS:
        if name in h5 or isinstance(h5.get(name, getlink=True), h5py.ExternalLink):
            check_link(h5, name, path, follow_external=follow_external)
    for name, item in (("logs", "line"), ("tables", "record"), ("basins", "line")):
        group = h5.get(name)
        if group is not None and not isinstance(group, h5py.Group):
            raise SourceError(f"{path}: {misshapen(h5)[0]}")
        if isinstance(group, h5py.Group):
            for _ in walk_datasets(group, path, follow_external=follow_external, item=item):
                pass
            inner = next((key for key in group if group.get(key, getclass=True) is h5py.Group),
                         None)
            if inner is not None:  # its links checked above
                raise SourceError(f"{path}: '{name}/{inner}' is a group, not a {name[:-1]} "
                                  f"(a dataset, as dclab and dcnum read them)")


def is_reference(value) -> bool:
    """Whether an attribute value holds HDF5 object or region references (dimension scales:
    they name objects of their own file, so no copy carries them)."""
    if isinstance(value, (h5py.Reference, h5py.RegionReference)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and h5py.check_dtype(ref=dtype) is not None


#: the groups whose own attributes no output holds (nor do dclab's and dcnum's exports)
_BARE_GROUPS = ("events", "events/trace", "events/contour", "logs", "tables", "basins",
                "basin_events")


def not_carried(h5: h5py.File) -> list[str]:
    """What of a file no output holds: top-level objects besides the format's groups
    (:data:`STRUCTURE_GROUPS`), the attributes of those groups, of ``events/trace`` and
    ``events/contour``, and of the datasets of ``basin_events`` but the image attributes
    of image data, which the writer sets (as dclab's and dcnum's exports; the writer warns
    of them, verify reports them in an output)."""
    left = [f"/{key}" for key in h5.keys() if key not in STRUCTURE_GROUPS]
    for name in _BARE_GROUPS:
        group = h5.get(name)
        if isinstance(group, h5py.Group):
            left += [f"attribute '{key}' of /{name}" for key in group.attrs.keys()]
    internal = h5.get("basin_events")
    if isinstance(internal, h5py.Group):
        left += [f"attribute '{key}' of /basin_events/{name}" for name, dset in internal.items()
                 if isinstance(dset, h5py.Dataset) for key in dset.attrs.keys()
                 if not (dset.ndim == 3 and key in IMAGE_ATTRS)]  # the writer sets its own
    return left


def external_objects(h5: h5py.File) -> list[str]:
    """Every external link, soft link out of its group, virtual or externally stored dataset.

    For ``dcbulk verify`` of an output: nothing is followed; one line per object.
    """
    found: list[str] = []

    def visit(group: h5py.Group, seen: frozenset) -> None:
        for key in sorted(group.keys()):
            shown = _shown(group, key)
            try:
                hard = check_link(group, key, h5.filename, follow_external=False)
            except ExternalDataError as exc:
                found.append(str(exc).split(": ", 1)[1].split("; ")[0])
                continue
            obj = open_child(group, key, hard=hard)
            if isinstance(obj, h5py.Dataset) and (obj.is_virtual or obj.external):
                kind = "a virtual dataset" if obj.is_virtual else "stored externally"
                found.append(f"'{shown}' is {kind}")
            elif isinstance(obj, h5py.Group) and obj.id not in seen:
                visit(obj, seen | {obj.id})

    visit(h5, frozenset({h5.id}))
    return found
