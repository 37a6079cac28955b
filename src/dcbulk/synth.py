"""Generate realistic synthetic ``.rtdc`` files and archives of them.

Single responsibility: produce deterministic test, demo and benchmark data
(images with cell-like blobs, consistent masks and scalar features,
fluorescence traces, logs, a table and complete metadata) through
:class:`dcbulk.write.HDF5Writer`, in bounded-memory blocks.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import h5py
import hdf5plugin
import numpy as np

from ._version import __version__
from .errors import OutputExistsError
from .write import HDF5Writer

__all__ = ["BROKEN_KINDS", "broken_kind", "compression_kwargs",
           "make_archive", "make_rtdc"]

logger = logging.getLogger(__name__)

#: Kinds of deliberately broken files written by :func:`make_archive`.
BROKEN_KINDS: tuple[str, ...] = ("truncated", "not_hdf5", "no_events")
_BROKEN_MARK = "_broken-"
#: Events generated per random stream; output is independent of block size.
_GROUP = 100
_PIXEL_SIZE = 0.34
_FRAME_RATE = 3000.0
_SAMPLE_RATE = 2_000_000
_NOISE_SIGMA = 2.2
_TRACES = tuple(f"fl{c}_{k}" for c in (1, 2, 3) for k in ("median", "raw"))


def compression_kwargs(compression: str | None) -> dict:
    """Translate a compression spec into HDF5 dataset keyword arguments.

    Parameters
    ----------
    compression : str or None
        ``"zstd"``/``"zstd:N"`` (Zstandard level N, default 5),
        ``"gzip:N"`` (h5py gzip) or ``"none"``/None (no compression).
        Fletcher-32 is always added by the writer.

    Returns
    -------
    dict
        ``compression``/``compression_opts`` keyword arguments.

    Raises
    ------
    ValueError
        If the spec is not understood.
    """
    name, _, level = (compression or "none").lower().partition(":")
    try:
        lvl = int(level) if level else None
    except ValueError:
        raise ValueError(f"Bad compression level in {compression!r}") from None
    if name == "none" and lvl is None:
        return {"compression": None, "compression_opts": None}
    if name == "zstd":
        return dict(hdf5plugin.Zstd(clevel=5 if lvl is None else lvl))
    if name == "gzip" and (lvl is None or 0 <= lvl <= 9):
        return {"compression": "gzip", "compression_opts": 4 if lvl is None else lvl}
    raise ValueError(f"Unknown compression {compression!r}; "
                     "use 'zstd:N', 'gzip:N' or 'none'")


@dataclass(frozen=True)
class _Blob:
    """A precomputed cell: brightness delta, mask, contour and shape features."""

    delta: np.ndarray  # (ph, pw) uint8, two's complement of the int delta
    mask: np.ndarray  # (ph, pw) bool
    contour: np.ndarray  # (J, 2) x/y pixel coordinates relative to patch
    feats: Mapping[str, float]


@dataclass(frozen=True)
class _Scene:
    """Everything reused across events of one file."""

    shape: tuple[int, int]
    backgrounds: np.ndarray  # (K, H, W) uint8
    bg_shifted: np.ndarray  # backgrounds minus the noise offset
    bg_median: np.ndarray  # (K,) float
    bg_period: int
    noise_lut: np.ndarray  # (256,) uint8, discretised Gaussian + offset
    blobs: tuple[_Blob, ...]
    trace_length: int


def _polygon_moments(xy: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Area, centroid and central second moments of a closed polygon."""
    x, y = xy[:, 0].astype(float), xy[:, 1].astype(float)
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    a = x * y1 - x1 * y
    m00 = a.sum() / 2
    if m00 < 0:
        return _polygon_moments(xy[::-1])
    cx = (a * (x + x1)).sum() / (6 * m00)
    cy = (a * (y + y1)).sum() / (6 * m00)
    m20 = (a * (x * x + x * x1 + x1 * x1)).sum() / 12 - m00 * cx * cx
    m02 = (a * (y * y + y * y1 + y1 * y1)).sum() / 12 - m00 * cy * cy
    m11 = (a * (x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y)).sum() / 24 - m00 * cx * cy
    return m00, cx, cy, m20, m02, m11


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise) of integer points, monotone chain."""
    pts = sorted(set(map(tuple, pts.tolist())))

    def half(seq: list) -> list:
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out
    return np.array(half(pts)[:-1] + half(pts[::-1])[:-1], dtype=float)


def _make_blob(rng: np.random.Generator, shape: tuple[int, int]) -> _Blob:
    """Draw one cell-like blob and compute its features in pixel units."""
    h = shape[0]
    a = float(np.clip(rng.lognormal(math.log(0.2 * h), 0.2), 0.1 * h, 0.3 * h))
    a = min(a, 0.18 * shape[1])
    b = max(3.0, a / rng.uniform(1.0, 1.7))
    r_max = int(math.ceil(max(a, b) * 1.1)) + 4
    yy, xx = np.mgrid[-r_max:r_max + 1, -r_max:r_max + 1].astype(float)
    xx -= rng.uniform(-0.5, 0.5)
    yy -= rng.uniform(-0.5, 0.5)
    theta = np.arctan2(yy, xx)
    k, phase = rng.integers(2, 5), rng.uniform(0, 2 * np.pi)
    wobble = 1 + rng.uniform(0, 0.06) * np.sin(k * theta + phase)
    radius = a * b / np.hypot(b * np.cos(theta), a * np.sin(theta)) * wobble
    dist = np.hypot(xx, yy)
    mask = dist < radius
    edge = dist - radius  # pixels, negative inside
    tex = sum(rng.uniform(2, 5) * np.cos(rng.uniform(0.2, 0.6) * (xx * np.cos(t) + yy * np.sin(t))
                                          + rng.uniform(0, 6)) for t in rng.uniform(0, np.pi, 3))
    delta = np.where(mask, -14 - 26 * np.exp(-(edge / 1.5) ** 2) + tex,
                     10 * np.exp(-(edge / 1.5) ** 2))
    delta = np.clip(np.rint(delta), -48, 14).astype(np.int16).astype(np.uint8)
    # contour: mask pixels with a 4-neighbour outside, ordered by angle
    pad = np.pad(mask, 1)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    ry, rx = np.nonzero(mask & ~inner)
    order = np.lexsort((-dist[ry, rx], -theta[ry, rx]))  # dclab's winding
    contour = np.stack([rx[order], ry[order]], axis=1)
    area, cx, cy, mu20, mu02, mu11 = _polygon_moments(contour)
    hull = _convex_hull(contour)
    area_cvx, _, _, hu20, hu02, _ = _polygon_moments(hull)
    per_cvx = float(np.hypot(*(np.roll(hull, -1, 0) - hull).T).sum())
    lam = np.linalg.eigvalsh([[mu20, mu11], [mu11, mu02]])
    tilt = abs(0.5 * math.atan2(2 * mu11, mu20 - mu02))
    my, mx = np.nonzero(mask)
    feats = {"area_msd": area, "area_cvx": area_cvx, "cx": cx, "cy": cy,
             "circ": 2 * math.sqrt(math.pi * area_cvx) / per_cvx,
             "inert_ratio_raw": math.sqrt(mu20 / mu02),
             "inert_ratio_cvx": math.sqrt(hu20 / hu02),
             "inert_ratio_prnc": math.sqrt(lam[1] / lam[0]),
             "tilt": tilt,
             "size_x": float(mx.max() - mx.min() + 1),
             "size_y": float(my.max() - my.min() + 1),
             # solid of revolution about the flow axis, column by column
             "volume": math.pi * float((((mask.sum(axis=0) - 1).clip(0) / 2) ** 2).sum())}
    return _Blob(delta=delta, mask=mask, contour=contour.astype(np.uint16), feats=feats)


def _make_scene(seed: int, shape: tuple[int, int], n_events: int, trace_length: int) -> _Scene:
    """Precompute backgrounds, the noise table and a bank of blobs."""
    rng = np.random.default_rng([seed, 0])
    h, w = shape
    noise = np.rint([NormalDist(0, _NOISE_SIGMA).inv_cdf((i + 0.5) / 256)
                     for i in range(256)]).astype(int)
    off = int(-noise.min())
    y = np.arange(h)[:, None] / h
    x = np.arange(w)[None, :] / w
    bgs = []
    for _ in range(4):
        base = rng.uniform(140, 180) + 8 * np.cos(2 * np.pi * (y - 0.5) / 1.6)
        walls = sum(-45 * np.exp(-((y - c) * h / 2.5) ** 2)
                    + 12 * np.exp(-((y - c - s) * h / 2) ** 2)
                    for c, s in ((0.08, 0.05), (0.91, -0.05)))  # channel walls
        ripple = 2 * np.sin(2 * np.pi * x * rng.uniform(1, 3) + rng.uniform(0, 6))
        bg = base + walls + ripple + 6 * (x - 0.5) + rng.normal(0, 1.0, (h, w))
        bgs.append(np.clip(np.rint(bg), off + 49, 255 - off - 15))
    backgrounds = np.asarray(bgs, dtype=np.uint8)
    n_blobs = int(np.clip(n_events // 20, 16, 512))
    return _Scene(shape=shape, backgrounds=backgrounds,
                  bg_shifted=backgrounds - np.uint8(off),
                  bg_median=np.median(backgrounds.reshape(4, -1), axis=1),
                  bg_period=400, noise_lut=(noise + off).astype(np.uint8),
                  blobs=tuple(_make_blob(rng, shape) for _ in range(n_blobs)),
                  trace_length=trace_length)


def _make_group(scene: _Scene, seed: int, group: int, start: int, count: int,
                last_frame: int, with_traces: bool,
                with_contour: bool) -> dict[str, np.ndarray | list]:
    """Generate events ``start .. start+count`` (one random stream)."""
    rng = np.random.default_rng([seed, 1, group])
    h, w = scene.shape
    bg_idx = (np.arange(start, start + count) // scene.bg_period) % len(scene.backgrounds)
    noise = np.frombuffer(rng.bytes(count * h * w), np.uint8).reshape(count, h, w)
    image = scene.bg_shifted[bg_idx]
    image += scene.noise_lut[noise]
    mask = np.zeros((count, h, w), dtype=bool)
    out: dict[str, np.ndarray | list] = {"image": image, "image_bg": scene.backgrounds[bg_idx],
                                         "mask": mask, "contour": []}
    scal = {k: np.empty(count) for k in ("bright_avg", "bright_sd", "bright_bc_avg",
                                         "bright_bc_sd", "pos_x", "pos_y")}
    which = rng.integers(0, len(scene.blobs), count)
    ry, rx = rng.random(count), rng.random(count)
    for i, bi in enumerate(which):
        blob = scene.blobs[bi]
        ph, pw = blob.mask.shape
        y0 = int(round((h - ph) * (0.5 + 0.3 * (ry[i] - 0.5))))
        x0 = int(rx[i] * (w - pw + 1))
        region = image[i, y0:y0 + ph, x0:x0 + pw]
        region += blob.delta
        mask[i, y0:y0 + ph, x0:x0 + pw] = blob.mask
        vals = region[blob.mask].astype(float)
        diff = vals - scene.backgrounds[bg_idx[i], y0:y0 + ph, x0:x0 + pw][blob.mask]
        scal["bright_avg"][i], scal["bright_sd"][i] = vals.mean(), vals.std()
        scal["bright_bc_avg"][i], scal["bright_bc_sd"][i] = diff.mean(), diff.std()
        scal["pos_x"][i] = (x0 + blob.feats["cx"]) * _PIXEL_SIZE
        scal["pos_y"][i] = (y0 + blob.feats["cy"]) * _PIXEL_SIZE
        if with_contour:
            out["contour"].append(blob.contour + np.array([x0, y0], dtype=np.uint16))
    bf = {k: np.array([scene.blobs[b].feats[k] for b in which])
          for k in scene.blobs[0].feats}
    px2 = _PIXEL_SIZE ** 2
    steps = rng.geometric(0.12, count) - 1
    steps[0] = max(steps[0], 1)  # equal frames only within a group
    frame = last_frame + np.cumsum(steps)
    _, inv, cnt = np.unique(frame, return_inverse=True, return_counts=True)
    time = frame / _FRAME_RATE
    out.update(scal)
    out.update({
        "area_msd": bf["area_msd"], "area_cvx": bf["area_cvx"],
        "area_ratio": bf["area_cvx"] / bf["area_msd"], "area_um": bf["area_cvx"] * px2,
        "aspect": bf["size_x"] / bf["size_y"],
        "bg_med": scene.bg_median[bg_idx], "circ": bf["circ"], "deform": 1 - bf["circ"],
        "frame": frame.astype(np.int64),
        "index": np.arange(start + 1, start + count + 1, dtype=np.uint32),
        "inert_ratio_cvx": bf["inert_ratio_cvx"], "inert_ratio_prnc": bf["inert_ratio_prnc"],
        "inert_ratio_raw": bf["inert_ratio_raw"], "nevents": cnt[inv].astype(np.int64),
        "size_x": bf["size_x"] * _PIXEL_SIZE, "size_y": bf["size_y"] * _PIXEL_SIZE,
        "temp": 23.5 + 0.4 * np.sin(time / 97.0) + rng.normal(0, 0.02, count),
        "tilt": bf["tilt"], "time": time,
        "volume": bf["volume"] * _PIXEL_SIZE ** 3,
    })
    if with_traces:
        out.update(_make_traces(rng, count, scene.trace_length))
    return out


def _make_traces(rng: np.random.Generator, count: int, length: int) -> dict[str, np.ndarray]:
    """Gaussian fluorescence pulses (median and raw) plus peak features."""
    t = np.arange(length)[None, :]
    pos = length / 2 + rng.normal(0, length / 20, (count, 1))
    sig = rng.uniform(length / 60, length / 25, (count, 1))
    shape = np.exp(-0.5 * ((t - pos) / sig) ** 2)
    out: dict[str, np.ndarray] = {}
    for ch, level in ((1, 300.0), (2, 80.0), (3, 1200.0)):
        amp = rng.lognormal(math.log(level), 0.6, (count, 1))
        median = np.rint(amp * shape).astype(np.int16)
        raw = median + np.rint(rng.normal(0, 4, median.shape)).astype(np.int16)
        peak = median.max(axis=1).astype(float)
        out[f"fl{ch}_median"], out[f"fl{ch}_raw"] = median, raw
        out[f"fl{ch}_max"] = np.maximum(peak, 1.0).astype(np.float32)
        out[f"fl{ch}_pos"] = (median.argmax(axis=1) / _SAMPLE_RATE * 1e6).astype(np.float32)
        out[f"fl{ch}_width"] = ((median >= peak[:, None] / 2).sum(axis=1)
                                / _SAMPLE_RATE * 1e6).astype(np.float32)
        out[f"fl{ch}_area"] = median.sum(axis=1, dtype=float).astype(np.float32)
    return out


def _metadata(path: Path, seed: int, n_events: int, shape: tuple[int, int],
              with_traces: bool, trace_length: int) -> dict[str, object]:
    """Root attributes as dclab expects them (``section:key`` -> value)."""
    rng = np.random.default_rng([seed, 2])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        days=int(rng.integers(0, 365)), seconds=int(rng.integers(8 * 3600, 18 * 3600)))
    digest = hashlib.md5(f"dcbulk-synth:{seed}:{path.name}".encode()).hexdigest()
    meta: dict[str, object] = {
        "experiment:date": start.strftime("%Y-%m-%d"),
        "experiment:event count": np.int64(n_events),
        "experiment:run identifier": f"dcbulk-synth-{uuid.UUID(hex=digest)}",
        "experiment:run index": np.int64(1), "experiment:sample": f"synthetic-{seed}",
        "experiment:time": start.strftime("%H:%M:%S"),
        "experiment:timestamp": float(start.timestamp()),
        "imaging:flash device": "LED blue (460nm)", "imaging:flash duration": 2.0,
        "imaging:frame rate": _FRAME_RATE, "imaging:pixel size": _PIXEL_SIZE,
        "imaging:roi position x": np.int64(533), "imaging:roi position y": np.int64(470),
        "imaging:roi size x": np.int64(shape[1]), "imaging:roi size y": np.int64(shape[0]),
        "online_contour:bg empty": np.bool_(True), "online_contour:bin area min": np.int64(10),
        "online_contour:bin kernel": np.int64(5), "online_contour:bin threshold": np.int64(-6),
        "online_contour:image blur": np.int64(0), "online_contour:no absdiff": np.bool_(True),
        "online_filter:target duration": 10.0,
        "setup:channel width": 20.0, "setup:chip identifier": f"synth-chip-{seed % 97:02d}",
        "setup:chip region": "channel", "setup:flow rate": 0.06,
        "setup:flow rate sample": 0.015, "setup:flow rate sheath": 0.045,
        "setup:identifier": f"dcbulk-synth-setup-{seed % 7}", "setup:medium": "CellCarrierB",
        "setup:module composition": "AcCellerator" + (",FluorescenceModule" * with_traces),
        "setup:software version": f"dcbulk-synth {__version__}", "setup:temperature": 23.5,
    }
    if with_traces:
        meta.update({"fluorescence:bit depth": np.int64(16),
                     "fluorescence:channel count": np.int64(3),
                     "fluorescence:channels installed": np.int64(3),
                     "fluorescence:laser count": np.int64(3),
                     "fluorescence:lasers installed": np.int64(3),
                     "fluorescence:sample rate": np.int64(_SAMPLE_RATE),
                     "fluorescence:samples per event": np.int64(trace_length),
                     "fluorescence:signal max": 1.0, "fluorescence:signal min": -1.0,
                     "fluorescence:trace median": np.int64(23)})
        for ch, (name, lam) in enumerate((("525/50", 488.0), ("593/46", 561.0),
                                          ("700/75", 640.0)), start=1):
            meta[f"fluorescence:channel {ch} name"] = f"FL{ch} {name}"
            meta[f"fluorescence:laser {ch} lambda"] = lam
            meta[f"fluorescence:laser {ch} power"] = 10.0
            meta[f"fluorescence:baseline {ch} offset"] = np.int64(0)
    return meta


def _store_extras(hw: HDF5Writer, meta: Mapping[str, object], params: Mapping[str, object],
                  ds_kwds: dict, seed: int) -> None:
    """Logs (parameters + a fake acquisition log) and a monitoring table."""
    hw.store_log("dcbulk-synth", [f"{k}: {v}" for k, v in params.items()])
    pre = f"{meta['experiment:time']} INFO MainProcess/Dummy-1 in CS.Core.Ctrl:"
    lines = [f"{pre} Preparing measurement {seed}",
             f"{pre} Job sample_name={meta['experiment:sample']}",
             f"{pre} Job flow_rate_sample={meta['setup:flow rate sample']}",
             f"{pre} Job image_shape=({meta['imaging:roi size y']}, "
             f"{meta['imaging:roi size x']})",
             f"{pre} Monitoring started"]
    hw.store_log("cytoshot-acquisition", [ln[:100] for ln in lines])  # dclab's limit
    rng = np.random.default_rng([seed, 3])
    n = 60
    table = np.zeros(n, dtype=[(c, "<f8") for c in (
        "time", "brightness", "focus", "temperature", "flow_rate_sample", "pressure_sample")])
    table["time"] = np.arange(n) * 0.5
    table["brightness"] = 160 + rng.normal(0, 0.5, n)
    table["focus"] = 0.05 + rng.normal(0, 0.003, n)
    table["temperature"] = 23.5 + rng.normal(0, 0.02, n)
    table["flow_rate_sample"] = 0.015
    table["pressure_sample"] = 503 + rng.normal(0, 0.3, n)
    ds = hw.h5.require_group("tables").create_dataset(
        "cytoshot_monitor", data=table, fletcher32=True, **ds_kwds)
    ds.attrs.update({"software": f"dcbulk-synth {__version__}", "time unit": "s",
                     "COLOR_brightness": "#00A0FF", "COLOR_temperature": "#FF6000"})


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
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
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
