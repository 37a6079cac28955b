"""Assertions shared by the test modules (decoded comparison, dclab verification)."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

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
