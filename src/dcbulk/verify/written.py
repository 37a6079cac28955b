"""What a conversion writes of its own accord, not copied from the source, checked in an
output: one line per problem.

The source's values say nothing about these; the writer's rules do, and the checks here use
the writer's own definitions, so the two cannot drift apart.
"""
from __future__ import annotations

import h5py
from h5py import h5o

from ..provenance import MODES, log_name
from ..read.policy import IMAGE_ATTRS
from .values import same_value, shown, stored_as

__all__ = ["image_attr_problems", "own_log_attr_problems", "own_log_names", "shown_names",
           "unwritten_attr_problems"]


def image_attr_problems(name: str, dset: h5py.Dataset, kind: str = "feature"
                        ) -> list[str]:
    """The HDF5 image attributes of output feature ``name``: those of
    :data:`~dcbulk.read.policy.IMAGE_ATTRS` (values and types) on a feature of 2-D
    events, none on any other (the source's are never copied,
    :data:`~dcbulk.plan.SET_APART_ATTRS`); ``kind`` names the object in each line (the
    writer sets the same on internal basin data)."""
    image = dset.ndim == 3
    if not image and not h5o.get_info(dset.id).num_attrs:
        return []
    attrs, lines = dset.attrs, []
    for key, want in IMAGE_ATTRS.items():
        if key not in attrs:
            if image:
                lines.append(f"attribute '{key}' is missing (dcbulk writes {shown(want)!r} "
                             f"for image data, as dcnum)")
            continue
        got = attrs[key]
        if not image:
            lines.append(f"attribute '{key}' is not the source's (dcbulk writes it for "
                         f"image data only)")
        elif not same_value(got, want):
            lines.append(f"attribute '{key}' is {shown(got)!r}, dcbulk writes {shown(want)!r}")
        elif stored_as(got) != stored_as(want):
            lines.append(f"attribute '{key}' is stored as {stored_as(got)}, dcbulk writes "
                         f"{stored_as(want)}")
    return [f"{kind} '{name}': {line}" for line in lines]


def own_log_names(kept: list[str], mode: str | None) -> list[str]:
    """The names the run's own provenance log may have in an output whose logs copied from
    the source are ``kept``: ``dcbulk-<mode>``, or ``dcbulk-<mode>-<g>`` after the
    source's own (:func:`~dcbulk.provenance.log_name`, the writer's rule), of the run's
    ``mode`` or, unknown, of any mode. A run writes one log; any other log is the source's
    or none of the run's."""
    return sorted({log_name(kept, m) for m in ((mode,) if mode else MODES)})


def own_log_attr_problems(logs: h5py.Group, names: list[str]) -> list[str]:
    """The attributes of the run's own provenance log in ``logs`` (``names``: the logs
    there that are the run's), one line each: the writer's ``store_log`` sets none."""
    return [f"log '{name}' has the attribute '{key}', which dcbulk does not write (none on "
            f"its provenance log)" for name in names for key in logs[name].attrs.keys()]


def shown_names(names: list[str]) -> str:
    """The names of :func:`own_log_names` as a message gives them (one, or the pattern)."""
    return f"'{names[0]}'" if len(names) == 1 else "'dcbulk-<mode>'"


#: groups whose attributes :func:`~dcbulk.read.policy.not_carried` reports
_BARE = ("events/trace", "events/contour")


def _bare_object(path: str, kind: int) -> str | None:
    """What an object of an output is, if the writer sets no attribute on it (None: it
    may hold some, checked elsewhere)."""
    parts = path.split("/")
    if kind == h5o.TYPE_DATASET and len(parts) == 3 and parts[:2] == ["events", "contour"]:
        return "a contour"
    if kind == h5o.TYPE_DATASET and len(parts) == 2 and parts[0] == "basins":
        return "a basin definition"
    if kind == h5o.TYPE_DATASET and len(parts) == 2 and parts[0] == "events" \
            and parts[1].startswith("basinmap"):
        return "a basin map"
    if kind == h5o.TYPE_GROUP and parts[0] == "events" and len(parts) >= 2 \
            and path not in _BARE:
        return "a group of 'events'"
    return None


def unwritten_attr_problems(h5: h5py.File) -> list[str]:
    """The attributes of an open output on objects the writer sets none on (a contour, a
    basin definition, a basin map, a group below ``events``; its image attributes on a
    basin map are :func:`image_attr_problems`' lines) and the image attributes of internal
    basin data (as on a feature), one line each. Walked by HDF5 (``H5Ovisit``: each object
    once, links not followed); only objects holding attributes are opened."""
    found: list[tuple[str, str]] = []

    def visit(name: bytes, info) -> None:
        path = name.decode("utf-8", "surrogateescape")
        what = _bare_object(path, info.type) if info.num_attrs else None
        if what is not None:
            found.append((path, what))

    h5o.visit(h5.id, visit, info=True)
    lines = [f"'{path}' has the attribute '{key}', which dcbulk does not write (none on "
             f"{what})" for path, what in found for key in h5[path].attrs
             if not (what == "a basin map" and key in IMAGE_ATTRS)]
    internal = h5.get("basin_events")
    if isinstance(internal, h5py.Group):
        lines += [line for name, dset in internal.items() if isinstance(dset, h5py.Dataset)
                  for line in image_attr_problems(name, dset, "internal basin data")]
    return lines
