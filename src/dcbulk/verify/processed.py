"""Checking an output of dcnum's pipeline (``dcbulk process``) on its own.

Such an output has new events (segmented anew), so it cannot be compared with its source
row by row. What can be proved without the source: every chunk of every dataset reads back
(HDF5 checks each Fletcher-32 checksum), the event count is consistent, the pipeline
attributes carry dcnum's hash of their identifiers, and the file opens in dclab and in
dcnum with every basin resolved and every feature readable through them.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..provenance import read_provenance

__all__ = ["check_processed", "is_processed_output"]


def is_processed_output(path: str) -> bool:
    """Whether ``path`` is a dcnum pipeline output without a dcbulk provenance log."""
    import h5py
    try:
        with h5py.File(path, "r", locking=False) as h5:
            if "pipeline:dcnum hash" not in h5.attrs:
                return False
        return read_provenance(path) is None
    except (OSError, ValueError, KeyError):
        return False


def _chunks(path: str) -> list[str]:
    """Every dataset of the file read in full; the first unreadable one, with its reason."""
    import h5py
    problems: list[str] = []

    def read(name, obj):
        if isinstance(obj, h5py.Dataset) and not problems:
            try:
                for start in range(0, max(1, obj.shape[0] if obj.shape else 1), 1000):
                    obj[start:start + 1000] if obj.shape else obj[()]
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: dataset {name} unreadable ({exc})")

    with h5py.File(path, "r", locking=False) as h5:
        h5.visititems(read)
        n = int(h5.attrs.get("experiment:event count", -1))
        # basinmapN are dcnum's (it stores the background images' map (1, N) when every
        # frame gave one event); dcnum and dclab read them as they are
        lengths = {name: len(ds) for name, ds in h5.get("events", {}).items()
                   if isinstance(ds, h5py.Dataset) and not name.startswith("basinmap")}
    bad = sorted(name for name, size in lengths.items() if size != n)
    if bad:
        problems.append(f"{path}: {len(bad)} feature(s) ({', '.join(bad[:3])}) do not have "
                        f"experiment:event count = {n} events")
    return problems


def _pipeline(path: str) -> list[str]:
    import h5py
    from dcnum.meta.ppid import compute_pipeline_hash
    keys = {"gen_id": "generation", "dat_id": "data", "bg_id": "background",
            "seg_id": "segmenter", "feat_id": "feature", "gate_id": "gate"}
    with h5py.File(path, "r", locking=False) as h5:
        attrs = {k: h5.attrs.get(f"pipeline:dcnum {v}") for k, v in keys.items()}
        stored = h5.attrs.get("pipeline:dcnum hash")
    missing = sorted(f"pipeline:dcnum {keys[k]}" for k, v in attrs.items() if v is None)
    if missing:
        return [f"{path}: missing {', '.join(missing)}"]
    if compute_pipeline_hash(**{k: str(v) for k, v in attrs.items()}) != stored:
        return [f"{path}: pipeline:dcnum hash {stored} is not dcnum's hash of the file's "
                f"pipeline identifiers"]
    return []


def _dclab(path: str) -> list[str]:
    import dclab
    from dclab import definitions as dfn
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dclab.new_dataset(path) as ds:
            for basin in ds.basins:
                if not basin.is_available():
                    problems.append(f"{path}: dclab cannot resolve basin '{basin.name}' "
                                    f"({basin.location})")
            if problems:
                return problems
            for feat in sorted(set(ds.features_innate) | set(ds.features_basin)):
                try:
                    data = ds[feat]
                    if dfn.scalar_feature_exists(feat):
                        np.asarray(data)
                    elif len(data):
                        np.asarray(data[len(data) - 1])
                except Exception as exc:  # dclab's errors vary by feature kind
                    problems.append(f"{path}: dclab cannot read '{feat}' ({exc})")
    return problems


def _dcnum(path: str) -> list[str]:
    from dcnum.read import HDF5Data
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with HDF5Data(path) as hd:
            for index, basin in enumerate(hd.basins):
                try:
                    _group, feats, _mapping = hd.get_basin_data(index)
                except Exception as exc:  # dcnum: BasinIdentifierMismatchError, ...
                    problems.append(f"{path}: dcnum cannot resolve basin "
                                    f"'{basin.get('name')}' ({type(exc).__name__}: {exc})")
                    continue
                if feats is None or (basin.get("features") and not feats):
                    problems.append(f"{path}: dcnum finds no file for basin "
                                    f"'{basin.get('name')}' ({basin.get('paths')})")
            if not problems and len(hd) and hd.image is not None:
                hd.image[len(hd) - 1]
    return problems


def check_processed(path: str | os.PathLike) -> list[str]:
    """Problems of a dcnum pipeline output, one line each (empty: sound).

    Every dataset is read in full, the pipeline hash recomputed, and the file opened in
    dclab (basins available, every feature readable) and dcnum (every basin resolved).
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        return [f"{path}: missing"]
    import gc
    for check in (_chunks, _pipeline, _dclab, _dcnum):
        try:
            problems = check(path)
        except Exception as exc:  # a file that cannot even be opened
            problems = [f"{path}: {check.__name__.strip('_')} check failed "
                        f"({type(exc).__name__}: {exc})"]
        finally:
            # dcnum's HDF5Data may keep handles (dcnum#50), opened with other locking flags
            # than dclab's: a later open of the same file in this process would fail
            gc.collect()
        if problems:
            return problems
    return []
