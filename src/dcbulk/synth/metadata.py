"""Metadata, logs and the monitoring table of synthetic ``.rtdc`` files.

Single responsibility: the root attributes dclab expects and the non-event extras
(parameter and acquisition logs, a ``tables/cytoshot_monitor`` table).
"""
from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._version import __version__
from ..provenance import LOG_MAX_LINE_LENGTH, wrap_lines
from ..write import HDF5Writer
from .events import _FRAME_RATE, _PIXEL_SIZE, _SAMPLE_RATE


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
    hw.store_log("dcbulk-synth", wrap_lines(f"{k}: {v}" for k, v in params.items()))
    pre = f"{meta['experiment:time']} INFO MainProcess/Dummy-1 in CS.Core.Ctrl:"
    lines = [f"{pre} Preparing measurement {seed}",
             f"{pre} Job sample_name={meta['experiment:sample']}",
             f"{pre} Job flow_rate_sample={meta['setup:flow rate sample']}",
             f"{pre} Job image_shape=({meta['imaging:roi size y']}, "
             f"{meta['imaging:roi size x']})",
             f"{pre} Monitoring started"]
    hw.store_log("cytoshot-acquisition",  # within dclab's limit, as real logs are
                 [ln[:LOG_MAX_LINE_LENGTH] for ln in lines])
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
