"""The objects of an output no conversion writes, wherever they are: one line each.

dcbulk's writer creates datasets and the groups that hold them, each under one name. A soft
link (even one that stays in its group, or leads back to where it is: a cycle), a second
hard link to an object, a named datatype, or an empty group below a group of ``events`` was
put there by something else, and a reader may see data or structure the source does not
have. The file is walked by HDF5 itself (``H5Lvisit``/``H5Ovisit``: links are not followed
and every object is visited once, so a cycle ends); nothing is opened but the groups below
a group of ``events`` and the groups holding a soft link. Links out of their group, external
links, and virtual or external datasets are :func:`~dcbulk.read.policy.external_objects`'
lines, top-level objects and attributes of the format's groups
:func:`~dcbulk.read.policy.not_carried`'s.
"""
from __future__ import annotations

import posixpath

import h5py
from h5py import h5l, h5o

from ..errors import ExternalDataError
from ..read.policy import check_link

__all__ = ["unwritten_objects"]


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _links(h5: h5py.File) -> list[tuple[str, int]]:
    """Every link below the root (``H5Lvisit``: soft links not followed, a group reached
    again not walked again): ``(path, link type)``."""
    found: list[tuple[str, int]] = []

    def visit(name: bytes, info) -> None:
        found.append((_name(name), info.type))

    h5.id.links.visit(visit, info=True)
    return found


def _objects(h5: h5py.File) -> dict[str, int]:
    """Every object below the root by the first path that reaches it (``H5Ovisit``):
    ``{path: object type}``."""
    found: dict[str, int] = {}

    def visit(name: bytes, info) -> None:
        found[_name(name)] = info.type

    h5o.visit(h5.id, visit, info=True)
    return found


def _in_its_group(h5: h5py.File, path: str) -> bool:
    """Whether a soft link is one :func:`~dcbulk.read.policy.check_link` lets pass (its
    lines otherwise come from :func:`~dcbulk.read.policy.external_objects`)."""
    parent, key = posixpath.split(path)
    try:
        check_link(h5[parent] if parent else h5, key, h5.filename, follow_external=False)
    except ExternalDataError:
        return False
    return True


def unwritten_objects(h5: h5py.File) -> list[str]:
    """What of an open output no conversion writes: soft links (the ones that stay in their
    group), second names of an object, named datatypes and empty groups below a group of
    ``events`` (its own empty groups are compared with the source's), one line each."""
    objects = _objects(h5)
    lines = []
    for path, kind in _links(h5):
        if kind == h5l.TYPE_SOFT and _in_its_group(h5, path):
            target = h5.get(path, getlink=True).path
            lines.append(f"'{path}' is a soft link to '{target}' (dcbulk writes no links)")
        elif kind == h5l.TYPE_HARD and path not in objects:
            lines.append(f"'{path}' is another name (a hard link) of an object named "
                         f"elsewhere in the file (dcbulk writes one name per object)")
    for path, kind in objects.items():
        if kind == h5o.TYPE_NAMED_DATATYPE:
            lines.append(f"'{path}' is a named datatype (dcbulk writes none)")
        elif (kind == h5o.TYPE_GROUP and path.startswith("events/") and path.count("/") >= 2
              and not len(h5[path])):
            lines.append(f"'{path}' is an empty group (dcbulk writes none below a group of "
                         f"'events')")
    return lines
