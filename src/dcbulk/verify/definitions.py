"""A basin definition of an output against how the writer writes one: the HDF5 storage of
its text, its ``"mapping": "same"``, and the paths of a file basin; one line per problem.

dclab and dcnum read the text of a definition whatever its storage; the storage is the
format's convention (fixed-length bytes lines, ``/work/shared/FORMAT.md``) and what the run's
``--compression`` promises of every dataset. The storage expected is that of a fresh write of
the same text by the writer's own :func:`~dcbulk.write.basin_store.store_basin_text` (in an
in-memory file), and the paths expected those the writer's
:func:`~dcbulk.engine.finish.file_basin_paths` makes, so neither can drift from the writer.
"""
from __future__ import annotations

import json
import os
import pathlib
import uuid

import h5py
from h5py import h5t

from ..codec import ChunkCodec
from ..engine.finish import file_basin_paths
from ..write.basin_store import store_basin_text
from .storage import stored_how

__all__ = ["definition_problems", "paths_problem"]

_PADS = {h5t.STR_NULLTERM: "null-terminated", h5t.STR_NULLPAD: "null-padded",
         h5t.STR_SPACEPAD: "space-padded"}


def _type_text(dset: h5py.Dataset) -> str:
    """How a dataset's values are typed, as a line names it."""
    tid = dset.id.get_type()
    if tid.get_class() != h5t.STRING:
        return f"{dset.dtype} values"
    cset = "UTF-8" if tid.get_cset() == h5t.CSET_UTF8 else "ASCII"
    if tid.is_variable_str():
        return f"variable-length {cset} text"
    return (f"fixed-length {cset} text of {tid.get_size()} bytes "
            f"({_PADS.get(tid.get_strpad(), 'padded otherwise')})")


def _lines(dset: h5py.Dataset) -> list[str] | None:
    """A definition's lines as text (None: no text, said by the checks that read it)."""
    try:
        value = dset[()]
        items = value.ravel().tolist() if hasattr(value, "ravel") else [value]
        return [bytes(x).decode("utf-8") if isinstance(x, bytes) else str(x) for x in items]
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return None


def _storage_problems(dset: h5py.Dataset, fresh: h5py.Dataset,
                      codec: ChunkCodec | None) -> list[str]:
    """How ``dset`` is stored otherwise than ``fresh``, the writer's store of its text."""
    found = []
    if dset.id.get_type() != fresh.id.get_type():
        found.append(f"as {_type_text(dset)}, dcbulk writes {_type_text(fresh)}")
    if dset.shape != fresh.shape:
        found.append(f"in the shape {dset.shape}, dcbulk writes {fresh.shape}")
    if dset.chunks != fresh.chunks:
        got = "contiguous" if dset.chunks is None else f"in chunks of {dset.chunks}"
        found.append(f"{got}, dcbulk writes chunks of {fresh.chunks}")
    elif dset.maxshape != fresh.maxshape:
        found.append(f"to grow to {dset.maxshape}, dcbulk writes {fresh.maxshape}")
    if codec is not None and not codec.stores(dset):
        found.append(f"{stored_how(dset)}, not {codec.describe()} (the run's --compression)")
    return found


def definition_problems(h5: h5py.File, codec: ChunkCodec | None) -> list[str]:
    """Each definition in ``basins`` of an open output stored otherwise than the writer
    stores its text (its type, shape and chunks, and with the run's ``codec`` its filters;
    None: not known, not compared), or holding ``"mapping": "same"``, which the writer
    never writes (dclab's word for unmapped; dcnum's reader leaves such a basin out)."""
    group = h5.get("basins")
    if not isinstance(group, h5py.Group):
        return []
    kwds = codec.ds_kwds() if codec is not None else {}
    problems = []
    with h5py.File(f"dcbulk-verify-{uuid.uuid4().hex}.h5", "w", driver="core",
                   backing_store=False) as scratch:
        fresh_group = scratch.create_group("basins")
        for key, dset in group.items():
            lines = _lines(dset) if isinstance(dset, h5py.Dataset) else None
            if not lines:
                continue
            text = "\n".join(lines)
            doc = _doc(text)
            name = doc.get("name", key) if doc is not None else key
            try:
                fresh = store_basin_text(fresh_group, key, text, kwds)
            except (ValueError, TypeError, OSError):  # no line of text: no JSON either
                continue
            how = _storage_problems(dset, fresh, codec)
            if how:
                problems.append(f"basin '{name}': its definition is stored {'; '.join(how)}")
            if doc is not None and doc.get("mapping") == "same":
                problems.append(f"basin '{name}' has \"mapping\": \"same\" (dclab's word for "
                                f"unmapped; dcnum's reader leaves such a basin out), dcbulk "
                                f"writes no mapping")
    return problems


def _doc(text: str) -> dict | None:
    """A definition's JSON object (None: none, said by the checks that read it)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _written_in(paths: list[str]) -> pathlib.PurePath | None:
    """The directory the relative second entry of ``paths`` was made from, relative to the
    absolute first (the writer's pair), as far as they tell it: the directories they do not
    name are placeholders (None: the first two entries are no such pair)."""
    if len(paths) < 2 or not os.path.isabs(paths[0]) or os.path.isabs(paths[1]):
        return None
    rel, head = pathlib.PurePath(paths[1]).parts, pathlib.PurePath(paths[0]).parts
    ups = len(rel) - len([p for p in rel if p != ".."])
    tail = rel[ups:]
    if not tail or ".." in tail or len(tail) >= len(head) or head[-len(tail):] != tail:
        return None
    return pathlib.PurePath(*head[:-len(tail)], *(f".dcbulk-unnamed-{i}" for i in range(ups)))


def _paired(paths: list[str], n_absolute: int, extras: list[str]) -> bool:
    """Whether ``paths`` are ``n_absolute`` absolute paths, each followed by itself relative
    to one directory, then the relative ``extras`` (the writer's form, wherever the
    output and its source were)."""
    where = _written_in(paths)
    if where is None:
        return False
    absolute = [p for p in paths if os.path.isabs(p)]
    want: list[str] = []
    for path in absolute:
        for cand in (path, os.path.relpath(path, where)):
            if cand not in want:
                want.append(cand)
    want += [c for c in extras if not os.path.isabs(c) and c not in want]
    return len(absolute) == n_absolute and paths == want


def paths_problem(label: str, paths, wanted: list[tuple[list[str], bool]], source: str,
                  output: str, recorded: bool) -> str | None:
    """Why the ``paths`` of a file basin are not those the writer stores for one of the
    ``wanted`` ``(candidates, same_events)`` (:func:`~dcbulk.engine.finish.file_basin_paths`)
    of ``source`` into ``output``: made here, or in the directory the output was made in
    (moved since; told by its first pair); ``recorded`` False (the source may be a copy
    elsewhere): any absolute paths, as many as the candidates, each with its relative one.
    None: they are."""
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return f"{label}: its paths are {paths!r}, not a list of paths"
    where = _written_in(paths)
    for candidates, same in wanted:
        made = [output] + ([str(where / "output.rtdc")] if where is not None else [])
        if any(paths == file_basin_paths(candidates, source, out, same_events=same)
               for out in made):
            return None
        n_absolute = sum(os.path.isabs(p) for p in file_basin_paths(candidates, source,
                                                                   output))
        if not recorded and _paired(paths, n_absolute, candidates if same else []):
            return None
    want = file_basin_paths(wanted[0][0], source, output, same_events=wanted[0][1])
    return (f"{label}: its paths are {paths!r}, dcbulk writes {want!r} here (each path "
            f"absolute, then relative to the output, so it resolves moved with its basin)")
