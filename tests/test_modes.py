"""The modes beyond compress (reprocess, condense, split, join), each checked on data.

Every mode is compared with dclab's own command on the same inputs (same events, same values
of every feature dclab writes); outputs are opened with dclab and dcnum from another working
directory and checked with ``dclab-verify-dataset``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.read import get_measurement_identifier
from dcbulk.synth import make_rtdc
from helpers import dclab_verify

dclab = pytest.importorskip("dclab")
pytest.importorskip("dcnum")


@contextlib.contextmanager
def elsewhere(path):
    """Run the block in another working directory (basins must not rely on the cwd)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def open_dclab(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dclab.new_dataset(path)


def dcnum_features(path, names):
    from dcnum.read import HDF5Data
    with HDF5Data(path) as data:
        return {name: np.asarray(data[name][:]) for name in names}


_INFO = ("Checking ", "Compression:", "Data file format:", "Fluorescence:", "Check Complete")


@functools.lru_cache(maxsize=None)
def _verify(path: str):
    result = dclab_verify(path)
    lines = {ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", result.output).splitlines()}
    return result, {ln for ln in lines if ln and not ln.startswith(_INFO)
                    and "warn" not in ln.lower()}


def assert_verify_adds_nothing(source, output) -> None:
    """``dclab-verify-dataset`` finds nothing in the output that it does not find in the source."""
    src, src_lines = _verify(str(source))
    out, out_lines = _verify(str(output))
    assert out.violations <= src.violations and out.alerts <= src.alerts, out.output
    assert out_lines <= src_lines, sorted(out_lines - src_lines)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory, shared_data_dir):
    """Two synthetic files (one in a subdirectory) plus a real sample file."""
    root = tmp_path_factory.mktemp("archive")
    make_rtdc(root / "a.rtdc", 120, seed=11, image_shape=(40, 60), trace_length=32)
    (root / "sub").mkdir()
    make_rtdc(root / "sub" / "b.rtdc", 70, seed=12, image_shape=(40, 60), trace_length=32)
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", root / "c.rtdc")
    return root


# -- reprocess -----------------------------------------------------------------------------

def image_mean(features):
    return {"userdef1": features["image"].mean(axis=(1, 2))}


def image_mean_plus_one(features):
    return {"userdef1": features["image"].mean(axis=(1, 2)) + 1}


def test_reprocess_new_feature_and_basin_to_source(small_archive, tmp_path, client):
    out = tmp_path / "out"
    report = dcbulk.reprocess([small_archive], out, image_mean, client=client)
    assert report.ok, [f.error for f in report.failed]
    assert report.count("done") == 3
    other = tmp_path / "cwd"
    other.mkdir()
    for res in report.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            expect = src["events/image"][:].mean(axis=(1, 2))
            assert sorted(dst["events"]) == ["userdef1"]
            np.testing.assert_array_equal(dst["events/userdef1"][:], expect)
            # same events: same measurement identifier (the basin's identifier must match)
            assert get_measurement_identifier(dst) == get_measurement_identifier(src)
            deform = src["events/deform"][:]
        with elsewhere(other):
            with open_dclab(res.output) as ds:
                np.testing.assert_array_equal(ds["userdef1"], expect)
                np.testing.assert_array_equal(ds["deform"], deform)
                assert "image" in ds
            got = dcnum_features(res.output, ["deform", "userdef1"])
            np.testing.assert_array_equal(got["deform"], deform)
            np.testing.assert_array_equal(got["userdef1"], expect)
        assert_verify_adds_nothing(res.source, res.output)


def make_image_stat(offset):
    def image_stat(features):
        return {"userdef1": features["image"].mean(axis=(1, 2)) + offset}
    return image_stat


def test_reprocess_resumes_and_redoes_after_function_change(small_archive, tmp_path, client):
    out = tmp_path / "out"
    first = dcbulk.reprocess([small_archive], out, make_image_stat(0), client=client)
    assert first.count("done") == 3
    again = dcbulk.reprocess([small_archive], out, make_image_stat(0), client=client)
    assert again.count("skipped") == 3 and again.count("done") == 0
    # the same function, edited (here: another captured value): every file is made again
    changed = dcbulk.reprocess([small_archive], out, make_image_stat(1), client=client)
    assert changed.count("done") == 3, [(f.status, f.reason, f.error) for f in changed.files]
    for res in changed.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            np.testing.assert_array_equal(dst["events/userdef1"][:],
                                          src["events/image"][:].mean(axis=(1, 2)) + 1)
    assert dcbulk.reprocess([small_archive], out, make_image_stat(1),
                            client=client).count("skipped") == 3
    # another function into the same directory is refused like changed options ...
    with pytest.raises(dcbulk.errors.ManifestError, match="image_mean_plus_one"):
        dcbulk.reprocess([small_archive], out, image_mean_plus_one, client=client)
    # ... unless forced
    forced = dcbulk.reprocess([small_archive], out, image_mean_plus_one, client=client,
                              force=True)
    assert forced.count("done") == 3


def test_function_identity_follows_code_and_captured_values():
    from dcbulk.modes.common import func_identity

    def make(offset):
        def func(features):
            return {"userdef1": features["image"].mean(axis=(1, 2)) + offset}
        return func

    assert func_identity(make(1)) == func_identity(make(1))
    assert func_identity(make(1)) != func_identity(make(2))
    assert func_identity(image_mean) != func_identity(image_mean_plus_one)
    assert func_identity(image_mean)["name"].endswith("test_modes.image_mean")


def broken_on_short_files(features):
    if features["deform"].shape[0] < 100:
        raise RuntimeError("too short")
    return {"userdef2": features["deform"] * 2}


def test_reprocess_failures_are_per_file(small_archive, tmp_path, client):
    report = dcbulk.reprocess([small_archive], tmp_path / "out", broken_on_short_files,
                              client=client)
    failed = {Path(f.source).name: f.error for f in report.failed}
    assert set(failed) == {"b.rtdc", "c.rtdc"}, failed
    assert all("too short" in e and "broken_on_short_files" in e for e in failed.values())
    done = [f for f in report.files if f.status == "done"]
    assert [Path(f.source).name for f in done] == ["a.rtdc"]
    with h5py.File(done[0].source) as src, h5py.File(done[0].output) as dst:
        np.testing.assert_array_equal(dst["events/userdef2"][:], src["events/deform"][:] * 2)


def test_reprocess_rejects_bad_results(small_archive, tmp_path, client):
    def wrong_length(features):
        return {"userdef1": features["deform"][:5]}
    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "out", wrong_length,
                              client=client)
    assert report.count("failed") == 1
    assert "shape (5,)" in report.files[0].error and "120 events" in report.files[0].error
    assert not (tmp_path / "out" / "a.rtdc").exists()
