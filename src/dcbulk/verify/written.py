"""What a conversion writes of its own accord, not copied from the source, checked in an
output: one line per problem.

The source's values say nothing about these; the writer's rules do, and the checks here use
the writer's own definitions, so the two cannot drift apart.
"""
from __future__ import annotations

import h5py
from h5py import h5o

from ..provenance import MODES, log_name
from ..write.hdf5_writer import IMAGE_ATTRS
from .values import same_value, shown, stored_as

__all__ = ["image_attr_problems", "own_log_names", "shown_names"]


def image_attr_problems(name: str, dset: h5py.Dataset) -> list[str]:
    """The HDF5 image attributes of output feature ``name``: those of
    :data:`~dcbulk.write.hdf5_writer.IMAGE_ATTRS` (values and types) on a feature of 2-D
    events, none on any other (the source's are never copied,
    :data:`~dcbulk.plan.SET_APART_ATTRS`)."""
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
    return [f"feature '{name}': {line}" for line in lines]


def own_log_names(kept: list[str], mode: str | None) -> list[str]:
    """The names the run's own provenance log may have in an output whose logs copied from
    the source are ``kept``: ``dcbulk-<mode>``, or ``dcbulk-<mode>-<g>`` after the
    source's own (:func:`~dcbulk.provenance.log_name`, the writer's rule), of the run's
    ``mode`` or, unknown, of any mode. A run writes one log; any other log is the source's
    or none of the run's."""
    return sorted({log_name(kept, m) for m in ((mode,) if mode else MODES)})


def shown_names(names: list[str]) -> str:
    """The names of :func:`own_log_names` as a message gives them (one, or the pattern)."""
    return f"'{names[0]}'" if len(names) == 1 else "'dcbulk-<mode>'"
