"""Archives of synthetic measurements, including deliberately broken files.

Single responsibility: :func:`make_archive` (a tree or flat directory of
:func:`~dcbulk.synth.rtdc.make_rtdc` files) and the broken files it can add.
"""
from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ..errors import OutputExistsError
from .metadata import _metadata
from .rtdc import make_rtdc

__all__ = ["BROKEN_KINDS", "broken_kind", "make_archive"]

logger = logging.getLogger(__name__)

#: Kinds of deliberately broken files written by :func:`make_archive`.
BROKEN_KINDS: tuple[str, ...] = ("truncated", "not_hdf5", "no_events")
_BROKEN_MARK = "_broken-"


def broken_kind(path: str | Path) -> str | None:
    """Return the kind of a broken file written by :func:`make_archive`, else None."""
    stem = Path(path).stem
    if _BROKEN_MARK in stem:
        kind = stem.rsplit(_BROKEN_MARK, 1)[1]
        return kind if kind in BROKEN_KINDS else None
    return None


def _write_broken(path: Path, kind: str, seed: int) -> None:
    """Write one deliberately broken ``.rtdc`` file of the given kind."""
    if kind == "not_hdf5":
        path.write_text("This is not an HDF5 file, although it is named .rtdc\n")
    elif kind == "no_events":
        with h5py.File(path, "w") as h5:
            h5.attrs.update(_metadata(path, seed, 0, (80, 250), False, 16))
            h5.create_dataset("logs/dcbulk-synth", data=[b"broken file: no 'events'"])
    else:
        make_rtdc(path, 200, seed=seed, compression="none", image_shape=(40, 60),
                  with_traces=False, overwrite=True)
        with path.open("r+b") as fd:
            fd.truncate(path.stat().st_size * 6 // 10)


def make_archive(root: str | Path, n_files: int, *,
                 events: int | tuple[int, int] | Sequence[int] = (100, 2000), seed: int = 0,
                 compression: str | None = "zstd:5", layout: str = "tree", bad_files: int = 0,
                 image_shape: tuple[int, int] = (80, 250), with_traces: bool = True,
                 overwrite: bool = False) -> list[Path]:
    """Write an archive of synthetic measurements (plus optional broken files).

    Parameters
    ----------
    root : str or Path
        Archive directory (created if needed).
    n_files : int
        Number of good ``.rtdc`` files.
    events : int or (min, max)
        Events per file; a range is sampled log-uniformly per file.
    seed : int
        Archive seed; every file gets its own seed derived from it.
    compression : str or None
        See :func:`compression_kwargs`.
    layout : {"tree", "flat"}
        ``root/<date>/chip-<X>/M<NNN>_data.rtdc`` or all files in ``root``.
    bad_files : int
        Number of broken files, named ``B<NNN>_broken-<kind>.rtdc`` with
        ``kind`` cycling through :data:`BROKEN_KINDS` (see :func:`broken_kind`).
    image_shape, with_traces, overwrite
        Passed on to :func:`make_rtdc`.

    Returns
    -------
    list of Path
        The good files, in creation order (broken files are not included).
    """
    if layout not in ("tree", "flat") or n_files < 0 or bad_files < 0:
        raise ValueError(f"Invalid layout={layout!r}, n_files={n_files} "
                         f"or bad_files={bad_files} for archive {root}")
    lo, hi = (events, events) if isinstance(events, int) else (int(events[0]), int(events[1]))
    if not 1 <= lo <= hi:
        raise ValueError(f"Invalid events range {events!r} for archive {root}")
    root = Path(root)
    rng = np.random.default_rng([seed, 5])
    day0 = datetime.date(2024, 5, 1) + datetime.timedelta(days=int(rng.integers(0, 60)))
    counts = np.rint(np.exp(rng.uniform(math.log(lo), math.log(hi), n_files))).astype(int)

    def location(i: int, name: str) -> tuple[Path, dict[str, object]]:
        day = day0 + datetime.timedelta(days=i // 7)
        chip = "ABCD"[(i // 3) % 4]
        sub = root / day.isoformat() / f"chip-{chip}" if layout == "tree" else root
        return sub / name, {"experiment:date": day.isoformat(), "experiment:run index":
                            np.int64(i % 3 + 1), "experiment:sample": f"sample-{chip}-{i // 3}"}

    good = []
    for i, n in enumerate(counts):
        path, meta = location(i, f"M{i + 1:03d}_data.rtdc")
        path.parent.mkdir(parents=True, exist_ok=True)
        fseed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        good.append(make_rtdc(path, int(n), seed=fseed, compression=compression,
                              image_shape=image_shape, with_traces=with_traces,
                              meta=meta, overwrite=overwrite))
    for j in range(bad_files):
        kind = BROKEN_KINDS[j % len(BROKEN_KINDS)]
        path, _ = location(j * 5, f"B{j + 1:03d}{_BROKEN_MARK}{kind}.rtdc")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"Refusing to overwrite existing file {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_broken(path, kind, seed + j)
    logger.info("Wrote %d good and %d broken files under %s", len(good), bad_files, root)
    return good
