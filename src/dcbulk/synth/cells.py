"""Cell-like blobs for synthetic images: shape, mask, contour and shape features.

Single responsibility: draw one blob and compute its geometric features (area, convex hull,
inertia ratios, volume, ...) in pixel units, the way dclab defines them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Blob:
    """A precomputed cell: brightness delta, mask, contour and shape features."""

    delta: np.ndarray  # (ph, pw) uint8, two's complement of the int delta
    mask: np.ndarray  # (ph, pw) bool
    contour: np.ndarray  # (J, 2) x/y pixel coordinates relative to patch
    feats: Mapping[str, float]



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
