"""Synthetic events: images, masks, scalar features and fluorescence traces.

Single responsibility: precompute a per-file scene (backgrounds, noise table, blob bank)
and generate the events of one random stream (group) from it, deterministically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .cells import _Blob, _make_blob

#: Events generated per random stream; output is independent of block size.
_GROUP = 100
_PIXEL_SIZE = 0.34
_FRAME_RATE = 3000.0
_SAMPLE_RATE = 2_000_000
_NOISE_SIGMA = 2.2
_TRACES = tuple(f"fl{c}_{k}" for c in (1, 2, 3) for k in ("median", "raw"))


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
