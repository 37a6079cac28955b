"""Round trips: copy_features + copy_metadata + copy_basins into a new file.

Run on the six sample files and on a synthetic file written with
HDF5Writer; every feature, attribute, log, table and basin of the output is
compared with the source (bit for bit after decoding), the output is opened
with dclab, compared with what dcnum writes, and checked with
``dclab-verify-dataset``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from dcbulk.read import extract_basin_dicts
from dcbulk.write import (HDF5Writer, copy_basins, copy_features,
                          copy_metadata)

from helpers import dclab_verify

SYNTHETIC_META: dict[str, Any] = {
    "experiment:date": "2024-05-02", "experiment:event count": 120,
    "experiment:run index": 1, "experiment:sample": "synthetic",
    "experiment:time": "14:59:41",
    "imaging:flash device": "LED", "imaging:flash duration": 2.0,
    "imaging:frame rate": 3000.0, "imaging:pixel size": 0.34,
    "imaging:roi position x": 0, "imaging:roi position y": 0,
    "imaging:roi size x": 120, "imaging:roi size y": 40,
    "setup:channel width": 20.0, "setup:chip region": "channel",
    "setup:flow rate": 0.06, "setup:flow rate sample": 0.015,
    "setup:flow rate sheath": 0.045, "setup:identifier": "RC-synthetic",
    "setup:medium": "CellCarrierB", "setup:module composition": "Naiad",
    "setup:software version": "dcbulk tests",
}


def write_synthetic(path: Path, n: int = 120) -> None:
    """An .rtdc file written with HDF5Writer defaults only."""
    rng = np.random.default_rng(0)
    with HDF5Writer(path, mode="w") as hw:
        hw.h5.attrs.update(dict(SYNTHETIC_META, **{
            "experiment:event count": n}))
        hw.store_feature_chunk("deform", rng.random(n))
        hw.store_feature_chunk("area_um", rng.random(n) * 100)
        hw.store_feature_chunk("frame", np.arange(n, dtype=np.uint64) * 3)
        hw.store_feature_chunk("time", np.arange(n) / 3000.0)
        hw.store_feature_chunk(
            "image", rng.integers(0, 255, (n, 40, 120), dtype=np.uint8))
        hw.store_feature_chunk("mask", rng.random((n, 40, 120)) > 0.9)
        hw.store_log("synthetic-log", ["line 1", "line two"])
        hw.store_basin("inner", internal_data={"userdef1": rng.random(n // 4)},
                       mapping=np.repeat(np.arange(n // 4), 4))
        hw.store_basin("outer", paths=["nowhere.rtdc"], features=["volume"])


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.rtdc"
    write_synthetic(path)
    return path


def dataset_features(h5: h5py.File) -> list[str]:
    return sorted(k for k, v in h5["events"].items()
                  if isinstance(v, h5py.Dataset))


def has_mapped_basins(h5: h5py.File) -> bool:
    return any("mapping" in b for b in extract_basin_dicts(h5, check=False))


def roundtrip(src: Path, dst: Path, mapping: np.ndarray | None,
              funcs: tuple = (copy_features, copy_metadata, copy_basins)
              ) -> list[str]:
    """Copy all dataset features, metadata and basins; return features."""
    cf, cm, cb = funcs
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        feats = dataset_features(h5s)
        if mapping is not None:
            # the basinmaps of the source do not apply to mapped events
            feats = [f for f in feats if not f.startswith("basinmap")]
        cf(h5s, h5d, feats, mapping=mapping)
        cm(h5s, h5d)
        if mapping is not None and "experiment:event count" in h5d.attrs:
            # the metadata describe the source; fix the count as a
            # pipeline writing mapped data would
            h5d.attrs["experiment:event count"] = len(mapping)
        if mapping is None or not has_mapped_basins(h5s):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                cb(h5s, h5d)
    return feats


def make_mapping(src: Path) -> np.ndarray:
    with h5py.File(src) as h5:
        n = len(h5["events"][dataset_features(h5)[0]])
    rng = np.random.default_rng(n)
    return np.sort(rng.choice(n, size=(2 * n) // 3, replace=False))


def assert_attrs_equal(a: h5py.AttributeManager,
                       b: h5py.AttributeManager, skip: tuple = ()) -> None:
    assert sorted(k for k in a if k not in skip) == \
        sorted(k for k in b if k not in skip)
    for key in a:
        if key in skip:
            continue
        va, vb = a[key], b[key]
        assert type(va) is type(vb), key
        assert np.array_equal(va, vb), key


def assert_output_matches(src: Path, dst: Path, feats: list[str],
                          mapping: np.ndarray | None) -> None:
    with h5py.File(src) as h5s, h5py.File(dst) as h5d:
        count = "experiment:event count"
        skip = (count,) if mapping is not None else ()
        assert_attrs_equal(h5s.attrs, h5d.attrs, skip=skip)
        if skip and count in h5s.attrs:
            assert h5d.attrs[count] == len(mapping)
        assert dataset_features(h5d) == feats
        for feat in feats:
            ds, dd = h5s["events"][feat], h5d["events"][feat]
            expected = ds[:] if mapping is None else ds[:][mapping]
            got = dd[:]
            assert got.dtype == expected.dtype, feat
            assert got.shape == expected.shape, feat
            assert got.tobytes() == expected.tobytes(), feat
            if mapping is None:
                assert_attrs_equal(ds.attrs, dd.attrs)
            elif ds.ndim == 3:
                assert dd.attrs["CLASS"] == b"IMAGE"
        for grp in ("logs", "tables"):
            src_keys = sorted(k for k in h5s.get(grp, {})
                              if h5s[grp][k].size)
            assert sorted(h5d.get(grp, {})) == src_keys
            for key in src_keys:
                d_src, d_dst = h5s[grp][key], h5d[grp][key]
                assert_attrs_equal(d_src.attrs, d_dst.attrs,
                                   skip=("software",))
                assert "dcbulk" in d_dst.attrs["software"]
                data = d_src[:]
                if data.dtype.kind == "O":
                    lines = [bytes(v) for v in data]
                    assert [bytes(v) for v in d_dst[:]] == lines
                    assert d_dst.dtype.kind == "S"
                else:
                    assert d_dst.dtype == data.dtype
                    assert d_dst[:].tobytes() == data.tobytes()
        if mapping is None:
            assert extract_basin_dicts(h5d) == extract_basin_dicts(h5s)
            if "basin_events" in h5s:
                for feat in h5s["basin_events"]:
                    assert (h5d["basin_events"][feat][:].tobytes()
                            == h5s["basin_events"][feat][:].tobytes())


def assert_dclab_reads(src: Path, dst: Path, feats: list[str],
                       mapping: np.ndarray | None) -> None:
    dclab = pytest.importorskip("dclab")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dclab.new_dataset(dst) as ds, dclab.new_dataset(src) as d0:
            exp_cfg = dict(d0.config["experiment"])
            if mapping is not None and "event count" in exp_cfg:
                exp_cfg["event count"] = len(mapping)
            assert dict(ds.config["experiment"]) == exp_cfg
            assert len(ds) == (len(d0) if mapping is None else len(mapping))
            compared = []
            for feat in feats:
                if feat.startswith("basinmap") or not dclab.dfn \
                        .feature_exists(feat) or len(d0) == 0:
                    continue
                exp = np.asarray(d0[feat])
                exp = exp if mapping is None else exp[mapping]
                got = np.asarray(ds[feat])
                assert got.shape == exp.shape, feat
                assert got.tobytes() == exp.tobytes(), feat
                compared.append(feat)
            assert compared or len(d0) == 0


@pytest.mark.parametrize("mapped", [False, True], ids=["raw", "mapped"])
def test_roundtrip_sample(sample_file: Path, tmp_path: Path,
                          mapped: bool) -> None:
    mapping = make_mapping(sample_file) if mapped else None
    out = tmp_path / "out.rtdc"
    feats = roundtrip(sample_file, out, mapping)
    assert_output_matches(sample_file, out, feats, mapping)
    assert_dclab_reads(sample_file, out, feats, mapping)


@pytest.mark.parametrize("mapped", [False, True], ids=["raw", "mapped"])
def test_roundtrip_synthetic(synthetic: Path, tmp_path: Path,
                             mapped: bool) -> None:
    mapping = make_mapping(synthetic) if mapped else None
    out = tmp_path / "out.rtdc"
    feats = roundtrip(synthetic, out, mapping)
    assert_output_matches(synthetic, out, feats, mapping)
    assert_dclab_reads(synthetic, out, feats, mapping)
    with h5py.File(out) as h5:
        if mapped:  # the internal basin (mapped) was not carried over
            assert extract_basin_dicts(h5) == []
        else:
            names = sorted(b["name"] for b in extract_basin_dicts(h5))
            assert names == ["inner", "outer"]
            assert "basinmap1" not in h5["events"]  # basinmap0 reused


@pytest.mark.parametrize("mapped", [False, True], ids=["raw", "mapped"])
def test_roundtrip_like_dcnum(sample_file: Path, tmp_path: Path,
                              mapped: bool) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    mapping = make_mapping(sample_file) if mapped else None
    ours, theirs = tmp_path / "ours.rtdc", tmp_path / "dcnum.rtdc"
    feats = roundtrip(sample_file, ours, mapping)
    if mapped and len(mapping) == 0:
        pytest.skip("dcnum cannot copy features of a file without events "
                    "with a mapping (IndexError on dsi[0])")
    roundtrip(sample_file, theirs, mapping,
              funcs=(dcnum_writer.copy_features, dcnum_writer.copy_metadata,
                     dcnum_writer.copy_basins))
    with h5py.File(ours) as h1, h5py.File(theirs) as h2:
        assert_attrs_equal(h1.attrs, h2.attrs)
        assert dataset_features(h1) == dataset_features(h2)
        for feat in feats:
            d1, d2 = h1["events"][feat], h2["events"][feat]
            assert d1.chunks == d2.chunks and d1.dtype == d2.dtype
            assert d1[:].tobytes() == d2[:].tobytes()
            assert_attrs_equal(d1.attrs, d2.attrs)
        assert sorted(h1.get("basins", {})) == sorted(h2.get("basins", {}))
        for grp in ("logs", "tables"):
            assert sorted(h1.get(grp, {})) == sorted(h2.get(grp, {}))


# ------------------------------------------------------ dclab-verify-dataset
def verify(path: Path) -> tuple[int, list[str], str]:
    """Run dclab-verify-dataset; return (violations, red lines, output)."""
    result = dclab_verify(path)
    red = [ln for ln in result.output.splitlines() if "\x1b[31m" in ln]
    return result.violations, red, result.output


def test_verify_detects_violations(shared_data_dir: Path) -> None:
    """The parser sees violations where dclab reports them."""
    path = shared_data_dir / "cytoshot-test-data.rtdc"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    n_viol, red, _ = verify(path)
    assert n_viol == 5 and len(red) == 5


def test_verify_synthetic(synthetic: Path) -> None:
    """A file written with HDF5Writer defaults passes dclab's checks."""
    n_viol, red, out = verify(synthetic)
    assert n_viol == 0 and not red, out
    assert "Violation" not in out


def check_in_process(path: Path) -> list[str]:
    """dclab's check_dataset (what dclab-verify-dataset runs): violations."""
    dclab = pytest.importorskip("dclab")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        violations, _, _ = dclab.rtdc_dataset.check_dataset(path)
    return violations


@pytest.mark.parametrize("mapped", [False, True], ids=["raw", "mapped"])
def test_verify_roundtrips(synthetic: Path, shared_data_dir: Path,
                           tmp_path: Path, mapped: bool) -> None:
    sources = [synthetic, shared_data_dir / "dcnum_thresh_example.rtdc",
               shared_data_dir / "file_with_variable_length_logs.rtdc"]
    for ii, src in enumerate(s for s in sources if s.exists()):
        assert check_in_process(src) == []
        dst = tmp_path / f"copy{ii}.rtdc"
        mapping = make_mapping(src) if mapped else None
        roundtrip(src, dst, mapping)
        assert check_in_process(dst) == [], src.name
