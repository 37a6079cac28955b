"""Write one synthetic ``.rtdc`` file through :class:`dcbulk.write.HDF5Writer`.

Single responsibility: :func:`make_rtdc` (and the compression-spec translation it uses),
generating and storing events in bounded-memory blocks.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._version import __version__
from ..codec import parse_compression
from ..errors import OutputExistsError
from ..partials import partial_path
from ..write import HDF5Writer
from .events import _GROUP, _TRACES, _make_group, _make_scene
from .metadata import _metadata, _store_extras

__all__ = ["compression_kwargs", "make_rtdc"]

logger = logging.getLogger(__name__)


def compression_kwargs(compression: str | None) -> dict:
    """Translate a ``--compression`` spec into HDF5 dataset keyword arguments.

    Parameters
    ----------
    compression : str or None
        Any spec :func:`dcbulk.codec.parse_compression` accepts (the codec table:
        ``"zstd:N"``, ``"gzip:N"``, ``"lz4"``, ..., ``"none"``/None). Fletcher-32 is
        always added by the writer.

    Returns
    -------
    dict
        ``compression``/``compression_opts`` keyword arguments.

    Raises
    ------
    ValueError
        If the spec is not understood (:class:`~dcbulk.errors.PlanError`).
    """
    kwds = parse_compression(compression, fletcher32=False).ds_kwds()
    kwds.pop("fletcher32")
    return kwds


def make_rtdc(path: str | Path, n_events: int, *, seed: int = 0,
              compression: str | None = "zstd:5", image_shape: tuple[int, int] = (80, 250),
              with_traces: bool = True, with_contour: bool = False,
              chunk_events: int | None = None, trace_length: int = 500,
              meta: Mapping[str, object] | None = None, overwrite: bool = False) -> Path:
    """Write one synthetic ``.rtdc`` file, block by block.

    Parameters
    ----------
    path : str or Path
        Output file; written to a ``.partial`` sibling first, then renamed.
    n_events : int
        Number of events (>= 1).
    seed : int
        Random seed; the same arguments give identical dataset contents.
    compression : str or None
        See :func:`compression_kwargs` (``"zstd:5"``, ``"gzip:N"``, ``"none"``).
    image_shape : tuple of int
        ``(H, W)`` of ``image``, ``image_bg`` and ``mask`` (H >= 30, W >= 40).
    with_traces, with_contour : bool
        Also write fluorescence traces (+ ``fl*`` features and metadata)
        and per-event contours (slow for big files).
    chunk_events : int or None
        Events generated and stored per block (default: ~64 MiB, <= 1000).
        The file contents do not depend on it.
    trace_length : int
        Samples per event of each trace.
    meta : Mapping, optional
        Root attributes (``"section:key"`` -> value) overriding the defaults.
    overwrite : bool
        Replace an existing file instead of raising.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        On invalid sizes or compression specs.
    """
    path = Path(path)
    h, w = (int(s) for s in image_shape)
    if n_events < 1 or h < 30 or w < 40 or trace_length < 16:
        raise ValueError(f"Invalid n_events={n_events}, image_shape={image_shape} "
                         f"or trace_length={trace_length} for {path}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"Refusing to overwrite existing file {path}")
    ds_kwds = compression_kwargs(compression)
    per_event = 3 * h * w + (12 * trace_length if with_traces else 0) + 200
    block = chunk_events or max(1, min(1000, (64 << 20) // per_event))
    if block < 1:
        raise ValueError(f"chunk_events must be >= 1, got {chunk_events}")
    scene = _make_scene(seed, (h, w), n_events, trace_length)
    attrs = _metadata(path, seed, n_events, (h, w), with_traces, trace_length)
    attrs.update(meta or {})
    params = {"generator": f"dcbulk.synth.make_rtdc ({__version__})", "seed": seed,
              "events": n_events, "compression": compression, "image_shape": (h, w),
              "traces": with_traces, "contour": with_contour, "trace_length": trace_length}
    tmp = Path(partial_path(str(path)))
    try:
        with HDF5Writer(tmp, mode="w", ds_kwds=dict(ds_kwds)) as hw:
            for key, value in attrs.items():
                hw.h5.attrs[key] = value
            pending: list[dict] = []
            done = npend = 0
            last_frame = int(np.random.default_rng([seed, 4]).integers(100, 10000))
            for g, start in enumerate(range(0, n_events, _GROUP)):
                part = _make_group(scene, seed, g, start, min(_GROUP, n_events - start),
                                   last_frame, with_traces, with_contour)
                last_frame = int(part["frame"][-1])
                pending.append(part)
                npend += len(part["index"])
                while npend >= block or (npend and start + _GROUP >= n_events):
                    done, pending, npend = _flush(hw, pending, min(block, npend), done,
                                                  with_contour, ds_kwds)
            _store_extras(hw, attrs, params, ds_kwds, seed)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("Wrote %s (%d events)", path, n_events)
    return path


def _flush(hw: HDF5Writer, pending: list[dict], n: int, done: int, with_contour: bool,
           ds_kwds: dict) -> tuple[int, list[dict], int]:
    """Store the first ``n`` pending events; return the remainder."""
    keys = [k for k in pending[0] if k != "contour"]
    merged = {k: np.concatenate([p[k] for p in pending]) for k in keys}
    contours = [c for p in pending for c in p["contour"]]
    pending.clear()  # free the per-group arrays before writing
    for key, data in merged.items():
        if key in _TRACES:
            hw.store_feature_chunk(key, data[:n], group_name="events/trace")
        else:
            hw.store_feature_chunk(key, data[:n])
    if with_contour:
        grp = hw.h5.require_group("events/contour")
        for i, cont in enumerate(contours[:n]):
            grp.create_dataset(str(done + i), data=cont, chunks=cont.shape,
                               fletcher32=True, **ds_kwds)
    total = len(merged["index"])
    rest = [] if n == total else [{**{k: v[n:].copy() for k, v in merged.items()},
                                   "contour": contours[n:]}]
    return done + n, rest, total - n
