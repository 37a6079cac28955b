"""Tests for dcbulk.read: open_rtdc, list_features, basins, identifiers."""
from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcbulk.errors import (NotHDF5Error, NotRtdcError, SourceError,
                           SourceNotFoundError)
from dcbulk.read import (extract_basin_dicts, get_measurement_identifier,
                         list_features, open_rtdc)
from dcbulk.read.files import open_child
from dcbulk.write import HDF5Writer


# ---------------------------------------------------------------- open_rtdc
def test_open_rtdc_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.rtdc"
    with pytest.raises(SourceNotFoundError, match="nope.rtdc") as info:
        open_rtdc(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, SourceError)


def test_open_rtdc_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.rtdc"
    path.write_text("this is not HDF5\n" * 100)
    with pytest.raises(NotHDF5Error, match="text.rtdc") as info:
        open_rtdc(path)
    assert isinstance(info.value.__cause__, OSError)


def test_open_rtdc_directory(tmp_path: Path) -> None:
    with pytest.raises(NotHDF5Error, match=str(tmp_path.name)):
        open_rtdc(tmp_path)


def test_open_rtdc_truncated(tmp_path: Path) -> None:
    full = tmp_path / "full.rtdc"
    with HDF5Writer(full, mode="w") as hw:
        hw.store_feature_chunk("deform", np.random.default_rng(1).random(5000))
    data = full.read_bytes()
    cut = tmp_path / "cut.rtdc"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotHDF5Error, match="cut.rtdc") as info:
        open_rtdc(cut)
    assert info.value.__cause__ is not None


def test_open_rtdc_no_events(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.arange(3)
    with pytest.raises(NotRtdcError, match="plain.h5"):
        open_rtdc(path)
    # the file was closed again: it can be reopened for writing
    with h5py.File(path, "a") as h5:
        h5["more"] = 1


def test_open_rtdc_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ok.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", np.arange(10.0))
    with open_rtdc(str(path)) as h5:
        assert h5.mode == "r"
        assert np.array_equal(h5["events/deform"][:], np.arange(10.0))
        with pytest.raises((OSError, ValueError, KeyError)):
            h5["events/new"] = np.arange(3)


def test_open_rtdc_samples(sample_file: Path) -> None:
    with open_rtdc(sample_file) as h5:
        assert "events" in h5


def test_errors_pickle() -> None:
    exc = NotHDF5Error("file 'x' is bad")
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is NotHDF5Error and again.args == exc.args


# ------------------------------------------------------------ open_child
def test_open_child_is_group_get(tmp_path: Path) -> None:
    """The lean member open gives what ``group.get`` gives, for every kind of member."""
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = np.arange(3)
    path = tmp_path / "members.h5"
    with h5py.File(path, "w") as h5:
        g = h5.create_group("events")
        g["deform"] = np.linspace(0, 1, 5)
        g.create_group("trace")["fl1_raw"] = np.ones((5, 4), dtype=np.int16)
        g["soft"] = h5py.SoftLink("/events/deform")
        g["dangling"] = h5py.SoftLink("/nowhere")
        g["ext"] = h5py.ExternalLink(str(other), "/x")
        g["dtype"] = np.dtype("f4")
    with h5py.File(path, "r") as h5:
        g = h5["events"]
        for name in ("deform", "trace", "trace/fl1_raw", "soft", "dangling", "ext", "dtype",
                     "missing"):
            got, want = open_child(g, name), g.get(name)
            assert type(got) is type(want), name
            if isinstance(want, h5py.Dataset):
                assert got.name == want.name and got.dtype == want.dtype
                np.testing.assert_array_equal(got[()], want[()])
            elif isinstance(want, h5py.Group):
                assert got.name == want.name and list(got) == list(want)


# ------------------------------------------------------------ list_features
def test_list_features_groups_and_datasets(tmp_path: Path) -> None:
    path = tmp_path / "f.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", np.arange(4.0))
        hw.store_feature_chunk("area_um", np.arange(4.0))
        hw.h5["events"].create_group("trace")
        hw.h5["events/trace"]["fl1_raw"] = np.zeros((4, 10), dtype=np.int16)
    with open_rtdc(path) as h5:
        assert list_features(h5) == ["area_um", "deform", "trace"]


def test_list_features_no_events(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        with pytest.raises(NotRtdcError, match="x.h5"):
            list_features(h5)


def test_list_features_samples(sample_file: Path) -> None:
    with open_rtdc(sample_file) as h5:
        feats = list_features(h5)
        assert feats == sorted(h5["events"].keys())
    if sample_file.name == "M001_data.rtdc":
        assert "trace" in feats and "image" in feats


# ------------------------------------------------------ extract_basin_dicts
def _write_basin_json(h5: h5py.File, bdat: dict) -> str:
    text = json.dumps(bdat, indent=2)
    key = hashlib.md5(text.encode()).hexdigest()
    lines = text.split("\n")
    h5.require_group("basins").create_dataset(
        key, data=np.array([ln.encode() for ln in lines]))
    return key


def test_extract_basin_dicts_check(tmp_path: Path) -> None:
    path = tmp_path / "b.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", np.arange(4.0))
        hw.store_basin("file", paths=["a.rtdc"], features=["image"])
        hw.store_basin("mapped", paths=["b.rtdc"], mapping=np.arange(4))
        _write_basin_json(hw.h5, {"name": "remote", "type": "remote",
                                  "format": "http", "paths": ["http://x"]})
        _write_basin_json(hw.h5, {"name": "lost", "type": "file",
                                  "format": "hdf5", "paths": ["c.rtdc"],
                                  "mapping": "basinmap7"})
    with h5py.File(path) as h5:
        unchecked = extract_basin_dicts(h5, check=False)
        checked = extract_basin_dicts(h5)
    assert sorted(b["name"] for b in unchecked) == [
        "file", "lost", "mapped", "remote"]
    assert sorted(b["name"] for b in checked) == ["file", "mapped"]
    mapped = [b for b in checked if b["name"] == "mapped"][0]
    assert mapped["mapping"] == "basinmap0"
    assert mapped["paths"] == ["b.rtdc"]


def test_extract_basin_dicts_no_basins(sample_file: Path) -> None:
    with h5py.File(sample_file) as h5:
        assert extract_basin_dicts(h5) == []


def test_extract_basin_dicts_like_dcnum(tmp_path: Path) -> None:
    hdf5_data = pytest.importorskip("dcnum.read.hdf5_data")
    path = tmp_path / "b.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", np.arange(6.0))
        hw.store_basin("one", paths=["a.rtdc", "/abs/a.rtdc"],
                       features=["image", "mask"], identifier="abc")
        hw.store_basin("two", paths=["b.rtdc"], mapping=np.arange(0, 6, 2))
        hw.store_basin("int", internal_data={"userdef1": np.arange(3.0)},
                       mapping=np.array([0, 0, 1, 1, 2, 2]))
    with h5py.File(path) as h5:
        for check in (True, False):
            assert (extract_basin_dicts(h5, check=check)
                    == hdf5_data.HDF5Data.extract_basin_dicts(h5,
                                                              check=check))


# ------------------------------------------------ get_measurement_identifier
def test_identifier_run_identifier(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5.attrs["experiment:run identifier"] = "run-42"
        assert get_measurement_identifier(h5) == "run-42"
        h5.attrs["experiment:run identifier"] = np.bytes_(b"run-43")
        assert get_measurement_identifier(h5) == "run-43"
        assert get_measurement_identifier(h5, compat="dclab") == "run-43"


def test_identifier_derived_and_missing(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        assert get_measurement_identifier(h5) is None
        h5.attrs["experiment:time"] = "12:00:01"
        h5.attrs["experiment:date"] = "2024-01-02"
        assert get_measurement_identifier(h5) is None
        h5.attrs["setup:identifier"] = "RC-1"
        expected = str(uuid.UUID(hex=hashlib.md5(
            b"12:00:01_2024-01-02_RC-1").hexdigest()))
        assert get_measurement_identifier(h5) == expected
        assert get_measurement_identifier(h5, compat="dclab") == expected
        h5.attrs["experiment:run identifier"] = ""  # empty: derive
        assert get_measurement_identifier(h5) == expected
        # bytes setup identifier: dcnum formats it as b'...', dclab decodes
        h5.attrs["setup:identifier"] = np.bytes_(b"RC-1")
        assert get_measurement_identifier(h5, compat="dclab") == expected
        dcnum_style = str(uuid.UUID(hex=hashlib.md5(
            b"12:00:01_2024-01-02_b'RC-1'").hexdigest()))
        assert get_measurement_identifier(h5) == dcnum_style
        with pytest.raises(ValueError, match="compat"):
            get_measurement_identifier(h5, compat="other")


def test_identifier_like_dcnum(sample_file: Path) -> None:
    hdf5_data = pytest.importorskip("dcnum.read.hdf5_data")
    with h5py.File(sample_file) as h5:
        ours = get_measurement_identifier(h5)
        assert ours == hdf5_data.get_measurement_identifier(h5)
    assert isinstance(ours, str)


def test_identifier_like_dclab(sample_file: Path) -> None:
    dclab = pytest.importorskip("dclab")
    with dclab.new_dataset(sample_file) as ds:
        expected = ds.get_measurement_identifier()
    with h5py.File(sample_file) as h5:
        assert get_measurement_identifier(h5, compat="dclab") == expected


def test_identifier_known_values(shared_data_dir: Path) -> None:
    """Pin two values so the test does not depend on dcnum alone."""
    path = shared_data_dir / "dcnum_thresh_example.rtdc"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with h5py.File(path) as h5:
        assert get_measurement_identifier(h5) == (
            "2024-rcs-example-data-ndio1287")
    path = shared_data_dir / "file_with_variable_length_logs.rtdc"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with h5py.File(path) as h5:
        assert get_measurement_identifier(h5) == (
            "b26306f4-f46e-bd6a-95a1-dba4de02a794")
        assert get_measurement_identifier(h5, compat="dclab") == (
            "12b4490f-6c58-13b1-bddd-5d8e2332b60b")
