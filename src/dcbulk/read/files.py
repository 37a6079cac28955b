"""Open .rtdc files read-only, reach their members, list their features, with dcbulk errors.

:func:`open_child` is written by hand: h5py's ``group[name]`` builds a ``File`` object per
call to learn the file's mode (about 170 us a member on 2 cores, where opening the object
takes 50 us), and inspection, verification and metadata copies open every member of a file
several times (45 features: a quarter of a file's inspection).
"""
from __future__ import annotations

import logging
import os
import pathlib

import h5py
from h5py import h5i, h5l, h5o

from ..errors import NotHDF5Error, NotRtdcError, SourceNotFoundError, one_line

__all__ = ["open_rtdc", "open_h5_readonly", "open_child", "list_features"]

logger = logging.getLogger(__name__)


def open_h5_readonly(path: str | os.PathLike[str]) -> h5py.File:
    """Open any HDF5 file read-only without file locking, as dclab does

    dclab opens with ``locking=False``; a second open of the same file in
    the same process with other locking flags fails ("file locking flag
    values don't match"). Opening with ``locking=False`` first and falling
    back to HDF5's default when the file is already open with other flags
    works next to dclab, h5py and dcnum in one process (the notebook case).

    Raises
    ------
    OSError
        As h5py, when the file cannot be opened.
    """
    try:
        return h5py.File(path, mode="r", locking=False)
    except OSError as exc:
        if "locking" not in str(exc):
            raise
        return h5py.File(path, mode="r")


def open_rtdc(path: str | os.PathLike[str]) -> h5py.File:
    """Open an .rtdc file read-only and check that it looks like one

    Parameters
    ----------
    path
        Location of the .rtdc (HDF5) file.

    Returns
    -------
    h5py.File
        The file, opened in mode ``"r"``. The caller owns it and must close
        it (it can be used as a context manager).

    Raises
    ------
    SourceNotFoundError
        If `path` does not exist.
    NotHDF5Error
        If `path` exists but is not a readable HDF5 file (e.g. a directory,
        a text file or a truncated HDF5 file), or is a FIFO, device or socket
        (never opened).
    NotRtdcError
        If the HDF5 file has no ``events`` group.

    Examples
    --------
    >>> with open_rtdc("measurement.rtdc") as h5:  # doctest: +SKIP
    ...     print(list_features(h5))
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise SourceNotFoundError(f"Source file '{path}' does not exist")
    if path.is_dir():
        raise NotHDF5Error(f"Source file '{path}' is a directory, not an .rtdc file")
    if not path.is_file():  # a FIFO would block the open forever
        raise NotHDF5Error(f"Source file '{path}' is not a regular file (a FIFO, device or "
                           f"socket); not opened")
    try:
        h5 = open_h5_readonly(path)
    except OSError as exc:
        raise NotHDF5Error(
            f"Source file '{path}' is not a readable HDF5 file: {one_line(exc)}"
        ) from exc
    try:
        events = h5.get("events")
        if not isinstance(events, h5py.Group):
            raise NotRtdcError(
                f"Source file '{path}' is an HDF5 file without an 'events' "
                f"group, so it is not an .rtdc file")
    except BaseException:
        h5.close()
        raise
    logger.debug("Opened %s read-only", path)
    return h5


def open_child(group: h5py.Group, name: str, *, readonly: bool = True,
               hard: bool | None = None):
    """``group.get(name)``, a third of the cost for a hard link.

    A dataset of a file opened read-only gets h5py's ``readonly`` flag (its shape cached);
    pass ``readonly=False`` for a file being written. Soft and external links, named
    datatypes and missing names take h5py's own path (its link access properties, its
    ``None``). ``hard``: whether ``name`` is a hard link, when the caller knows.
    """
    bname = name.encode()
    if hard is None:
        try:
            hard = group.id.links.get_info(bname).type == h5l.TYPE_HARD
        except (KeyError, RuntimeError):  # no such name (h5py raises either)
            hard = False
    if hard:
        oid = h5o.open(group.id, bname)
        kind = h5i.get_type(oid)
        if kind == h5i.DATASET:
            return h5py.Dataset(oid, readonly=readonly)
        if kind == h5i.GROUP:
            return h5py.Group(oid)
    return group.get(name)


def list_features(h5: h5py.File | h5py.Group) -> list[str]:
    """Return the sorted names of all features in the ``events`` group

    Parameters
    ----------
    h5
        An open .rtdc file (or any group holding an ``events`` group).

    Returns
    -------
    list[str]
        Names of datasets (e.g. ``deform``, ``image``) and groups
        (e.g. ``trace``, ``contour``) in ``events``, sorted.

    Raises
    ------
    NotRtdcError
        If there is no ``events`` group.
    """
    events = h5.get("events")
    if not isinstance(events, h5py.Group):
        raise NotRtdcError(
            f"HDF5 file '{h5.file.filename}' has no 'events' group")
    return sorted(events.keys())
