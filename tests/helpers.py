"""Assertions shared by the test modules: decoded comparison, dclab verification, and
reachability of outputs in dclab and dcnum (the data to assert on: ``fixtures.py``)."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import warnings

from typing import NamedTuple

import h5py
import numpy as np
import pytest


def dataset_names(group: h5py.Group, prefix: str = "") -> list[str]:
    """Names of all datasets below ``group`` (``trace/fl1_raw`` style), contours excluded."""
    names = []
    for key in sorted(group):
        obj = group[key]
        if isinstance(obj, h5py.Dataset):
            names.append(prefix + key)
        elif key != "contour":
            names.extend(dataset_names(obj, f"{prefix}{key}/"))
    return names


def stored_chunks(path) -> dict[str, list[bytes]]:
    """Every stored chunk of every feature, as HDF5 holds it (filter mask and bytes)."""
    out = {}

    def add(name, ds) -> None:
        if isinstance(ds, h5py.Dataset):
            tail = (0,) * (ds.ndim - 1)
            out[name] = [ds.id.read_direct_chunk((s,) + tail)
                         for s in range(0, ds.shape[0], ds.chunks[0])]
    with h5py.File(path, "r") as h5:
        h5["events"].visititems(add)
    return out


def assert_features_equal(source, output, index=None, features=None) -> None:
    """Every (or each given) source feature decodes equal in the output (``source[index]``)."""
    with h5py.File(source) as src, h5py.File(output) as out:
        names = features or [n for n in dataset_names(src["events"])
                             if not n.startswith("basinmap")]
        assert names, f"{source} has no features to compare"
        for name in names:
            expect = src["events"][name][:]
            if index is not None:
                expect = expect[index]
            got = out["events"][name][:]
            assert got.dtype == expect.dtype, name
            np.testing.assert_array_equal(got, expect, err_msg=f"{output}: {name}")


class VerifyResult(NamedTuple):
    """What ``dclab-verify-dataset`` said about a file."""

    violations: int
    alerts: int
    output: str  # raw, with dclab's colour codes (violations are printed in red)
    returncode: int


def dclab_verify(path) -> VerifyResult:
    """Run ``dclab-verify-dataset`` on a file and parse its summary line."""
    exe = pathlib.Path(sys.executable).parent / "dclab-verify-dataset"
    if not exe.exists():
        pytest.skip(f"{exe} is absent")
    proc = subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=300)
    raw = proc.stdout + proc.stderr
    summary = re.search(r"Check Complete: (\d+) violations? and (\d+) alerts?",
                        re.sub(r"\x1b\[[0-9;]*m", "", raw))
    assert summary, f"unexpected dclab-verify-dataset output:\n{raw}"
    return VerifyResult(int(summary[1]), int(summary[2]), raw, proc.returncode)


def verify_with_dclab(path) -> VerifyResult:
    """Fail unless ``dclab-verify-dataset`` reports no violation."""
    result = dclab_verify(path)
    assert result.violations == 0, result.output
    return result


def integrity_cues(path) -> set[str]:
    """The alerts and violations of dclab's ``IntegrityChecker`` for a file.

    Each ``check_*`` method runs on its own, so one that raises (dclab's checker fails on
    a file without events) becomes the cue ``error in check_x: <exception type>`` instead
    of hiding the other checks.
    """
    from dclab.rtdc_dataset.check import IntegrityChecker
    cues = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with IntegrityChecker(path) as ic:
            for name, func in sorted(vars(IntegrityChecker).items()):
                if not name.startswith("check_") or (
                        name.startswith("check_fl_") and not ic.has_fluorescence):
                    continue
                try:
                    found = func(ic)
                except Exception as exc:  # noqa: BLE001  (dclab's own failure, compared)
                    cues.add(f"error in {name}: {type(exc).__name__}")
                    continue
                cues.update(f"{c.level}: {c.msg}" for c in list(found) + ic.warn_cues
                            if c.level in ("alert", "violation"))
    return cues


def _readable_dclab(path) -> dict[str, object]:
    """Every feature dclab offers for a file (innate and basin) that it can read."""
    import dclab
    got = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dclab.new_dataset(path) as ds:
            n = len(ds)
            for feat in sorted(set(ds.features_innate) | set(ds.features_basin)):
                try:
                    got[feat] = _sample(ds, feat, n)
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue  # dclab cannot read it (e.g. traces through a mapped basin)
    return got


def _sample(ds, feat: str, n: int):
    import dclab
    if feat == "trace":
        return {k: np.asarray(ds["trace"][k][:]) for k in sorted(ds["trace"].keys())}
    if dclab.dfn.scalar_feature_exists(feat):
        return np.asarray(ds[feat][:])
    return [np.asarray(ds[feat][i]) for i in sorted({0, n - 1})] if n else []


def _readable_dcnum(path) -> dict[str, object]:
    from dcnum.read import HDF5Data
    got = {}
    with HDF5Data(path) as h5:
        for key in sorted(h5.keys()):
            try:
                val = h5[key]
                got[key] = np.asarray(val[:] if getattr(val, "ndim", 1) == 1 else val[0])
            except (AttributeError, KeyError, TypeError, IndexError):
                continue  # e.g. the contour group, which dcnum does not read
    return got


def _equal(a, b, mapping) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], mapping) for k in a)
    if isinstance(a, list):  # first and last item of non-scalar features
        return len(a) == len(b)
    a = np.asarray(a)
    if mapping is not None and a.ndim >= 1 and a.shape[0] != np.asarray(b).shape[0]:
        a = a[mapping]
    return np.array_equal(a, np.asarray(b), equal_nan=True)


def assert_reachable(out, src, *, mapping=None, cwd=None) -> None:
    """From another working directory, dclab and dcnum read every feature of ``src`` in ``out``.

    Scalar features (and traces) must decode equal to ``src[mapping]``; dclab must see every
    feature it reads in the source, dcnum every key it reads in the source.
    """
    old = os.getcwd()
    os.chdir(cwd or tempfile.mkdtemp(prefix="elsewhere-"))
    try:
        for reader in (_readable_dclab, _readable_dcnum):
            want, got = reader(src), reader(out)
            missing = sorted(set(want) - set(got) - {"index"})
            assert not missing, f"{reader.__name__}: {out} lacks {missing} of {src}"
            for feat in want:
                if feat in ("index", "index_online") and mapping is not None:
                    continue
                if reader is _readable_dcnum and np.asarray(got[feat]).ndim != 1:
                    continue
                assert _equal(want[feat], got[feat], mapping), \
                    f"{reader.__name__}: {feat} of {out} differs from {src}"
    finally:
        os.chdir(old)
