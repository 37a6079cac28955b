"""Tests for basins: store_basin, copy_basins and create_with_basins."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from dcbulk.read import extract_basin_dicts, get_measurement_identifier
from dcbulk.write import (CreatingFileWithoutBasinWarning, HDF5Writer,
                          IgnoringBasinTypeWarning, copy_basins,
                          create_with_basins)
from dcbulk.write.basin_store import basin_json


def read_basin(h5: h5py.File, key: str) -> tuple[str, dict[str, Any]]:
    """Return the stored JSON text and dict of basin `key`."""
    lines = h5["basins"][key][:]
    text = "\n".join(ln.decode() for ln in lines)
    return text, json.loads(text)


def write_basins(writer_cls: Callable[..., Any], path: Path) -> None:
    """The same sequence of store_basin calls for any writer class."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with writer_cls(path, mode="w") as hw:
            hw.store_feature_chunk("deform", np.linspace(0, 1, 20))
            hw.store_basin("plain", paths=["a.rtdc", Path("/abs/a.rtdc")],
                           features=["image", "mask"], description="d",
                           identifier="abc-123")
            hw.store_basin("nofeat", paths=["b.rtdc"])
            hw.store_basin("mapped", paths=["c.rtdc"],
                           mapping=np.arange(0, 40, 2, dtype=np.uint64))
            hw.store_basin("mapped-again", paths=["c2.rtdc"],
                           mapping=np.arange(0, 40, 2, dtype=np.uint64))
            hw.store_basin("other-map", paths=["d.rtdc"],
                           mapping=np.arange(20, dtype=np.uint64)[::-1])
            hw.store_basin("internal",
                           internal_data={"userdef2": np.arange(5.0),
                                          "userdef1": np.ones(5)},
                           mapping=np.repeat(np.arange(5), 4),
                           description="inside")
            hw.store_basin("Ünïcode ✓", paths=["e.rtdc"])


# ----------------------------------------------------------- store_basin
def test_store_basin_json_format(tmp_path: Path) -> None:
    path = tmp_path / "b.rtdc"
    write_basins(HDF5Writer, path)
    with h5py.File(path) as h5:
        basins = {read_basin(h5, k)[1]["name"]: (k,) + read_basin(h5, k)
                  for k in h5["basins"]}
        for name, (key, text, bdict) in basins.items():
            assert key == hashlib.md5(text.encode()).hexdigest()
            assert text == json.dumps(bdict, indent=2)
            ds = h5["basins"][key]
            width = max(len(ln) for ln in text.split("\n"))
            assert ds.dtype == np.dtype(f"S{width}")
            assert ds.shape == (len(text.split("\n")),)
        plain = basins["plain"][2]
        assert list(plain) == ["description", "name", "format", "paths",
                               "type", "identifier", "features"]
        assert plain == {"description": "d", "name": "plain",
                         "format": "hdf5",
                         "paths": ["a.rtdc", "/abs/a.rtdc"],
                         "type": "file", "identifier": "abc-123",
                         "features": ["image", "mask"]}
        assert "features" not in basins["nofeat"][2]
        assert basins["nofeat"][2]["identifier"] is None
        assert basins["mapped"][2]["mapping"] == "basinmap0"
        assert basins["mapped-again"][2]["mapping"] == "basinmap0"
        assert basins["other-map"][2]["mapping"] == "basinmap1"
        internal = basins["internal"][2]
        assert list(internal) == ["description", "name", "format", "paths",
                                  "type", "features", "mapping"]
        assert internal["type"] == "internal"
        assert internal["format"] == "h5dataset"
        assert internal["paths"] == ["basin_events"]
        assert internal["features"] == ["userdef1", "userdef2"]
        assert internal["mapping"] == "basinmap2"
        assert basins["Ünïcode ✓"][1].isascii()
        # data
        ev = h5["events"]
        assert np.array_equal(ev["basinmap0"][:], np.arange(0, 40, 2))
        assert ev["basinmap0"].dtype == np.uint64
        assert np.array_equal(ev["basinmap1"][:], np.arange(20)[::-1])
        assert np.array_equal(ev["basinmap2"][:], np.repeat(np.arange(5), 4))
        assert "basinmap3" not in ev
        assert np.array_equal(h5["basin_events/userdef1"][:], np.ones(5))
        assert np.array_equal(h5["basin_events/userdef2"][:], np.arange(5.))


def test_store_basin_like_dcnum(tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    ours, theirs = tmp_path / "ours.rtdc", tmp_path / "dcnum.rtdc"
    write_basins(HDF5Writer, ours)
    write_basins(dcnum_writer.HDF5Writer, theirs)
    with h5py.File(ours) as h1, h5py.File(theirs) as h2:
        assert sorted(h1["basins"]) == sorted(h2["basins"])
        for key in h1["basins"]:
            d1, d2 = h1["basins"][key], h2["basins"][key]
            assert d1.dtype == d2.dtype and d1.chunks == d2.chunks
            assert np.array_equal(d1[:], d2[:])
        for grp in ("events", "basin_events"):
            assert sorted(h1[grp]) == sorted(h2[grp])
            for feat in h1[grp]:
                assert np.array_equal(h1[grp][feat][:], h2[grp][feat][:])
                assert h1[grp][feat].dtype == h2[grp][feat].dtype
        assert (extract_basin_dicts(h1) == extract_basin_dicts(h2))


def test_store_basin_returns_key_and_dedups(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "k.rtdc", mode="w") as hw:
        k1 = hw.store_basin("x", paths=["a.rtdc"])
        k2 = hw.store_basin("x", paths=["a.rtdc"])
        k3 = hw.store_basin("x", paths=["b.rtdc"])
        assert k1 == k2 != k3
        assert sorted(hw.h5["basins"]) == sorted({k1, k3})
        text, key = basin_json({"description": None, "name": "x",
                                "format": "hdf5", "paths": ["a.rtdc"],
                                "type": "file", "identifier": None})
        assert key == k1
        assert read_basin(hw.h5, k1)[0] == text


def test_store_basin_argument_errors(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "e.rtdc", mode="w") as hw:
        data = {"userdef1": np.arange(3.0)}
        with pytest.raises(ValueError, match="`features` must be set"):
            hw.store_basin("i", internal_data=data, features=["userdef1"])
        with pytest.raises(ValueError, match="`paths` must be set to None"):
            hw.store_basin("i", internal_data=data, paths=["a.rtdc"])
        with pytest.raises(ValueError, match="`paths` must not be set"):
            hw.store_basin("f")
        with pytest.raises(ValueError, match="`paths` must not be set"):
            hw.store_basin("f", internal_data={})  # empty: a file basin
        with pytest.raises(TypeError, match="list of paths"):
            hw.store_basin("f", paths="a.rtdc")
        # a bare name: its characters were stored as features 'd', 'e', ...
        with pytest.raises(TypeError, match="list of feature names"):
            hw.store_basin("f", paths=["a.rtdc"], features="deform")
        assert "basins" not in hw.h5 or len(hw.h5["basins"]) == 0
        assert "userdef1" not in hw.h5.get("basin_events", {})
        with pytest.warns(UserWarning, match="Not storing identifier"):
            key = hw.store_basin("i", internal_data=data, identifier="abc",
                                 mapping=np.arange(3))
        assert "identifier" not in read_basin(hw.h5, key)[1]
        with pytest.raises(ValueError, match="already defined"):
            hw.store_basin("i2", internal_data={"userdef2": np.arange(3.0),
                                                "userdef1": np.arange(3.0)},
                           mapping=np.arange(3))
        # nothing of the refused basin was written
        assert "userdef2" not in hw.h5["basin_events"]
        with pytest.raises(ValueError, match="one-dimensional"):
            hw.store_basin("m", paths=["a"], mapping=np.zeros((2, 2), int))


def test_basinmap_exhausted_and_reuse(tmp_path: Path) -> None:
    path = tmp_path / "x.rtdc"
    maps = [np.arange(10, dtype=np.uint64) + ii for ii in range(10)]
    with HDF5Writer(path, mode="w") as hw:
        for ii, mp in enumerate(maps):
            key = hw.store_basin(f"b{ii}", paths=[f"{ii}.rtdc"], mapping=mp)
            assert read_basin(hw.h5, key)[1]["mapping"] == f"basinmap{ii}"
        # reusing any identical existing mapping still works
        key = hw.store_basin("again", paths=["z.rtdc"], mapping=maps[7])
        assert read_basin(hw.h5, key)[1]["mapping"] == "basinmap7"
        n_basins = len(hw.h5["basins"])
        with pytest.raises(ValueError, match="exhausted"):
            hw.store_basin("eleventh", paths=["11.rtdc"],
                           mapping=np.arange(10, dtype=np.uint64) + 99)
        assert len(hw.h5["basins"]) == n_basins
        assert "basinmap10" not in hw.h5["events"]


def test_basinmap_different_lengths(tmp_path: Path) -> None:
    """Maps of another length never match (and never crash)."""
    with HDF5Writer(tmp_path / "l.rtdc", mode="w") as hw:
        k1 = hw.store_basin("a", paths=["a"], mapping=np.array([5]))
        # dcnum would broadcast [5] == [5, 5, 5] and reuse basinmap0
        k2 = hw.store_basin("b", paths=["b"], mapping=np.array([5, 5, 5]))
        k3 = hw.store_basin("c", paths=["c"], mapping=np.arange(7))
        names = [read_basin(hw.h5, k)[1]["mapping"] for k in (k1, k2, k3)]
        assert names == ["basinmap0", "basinmap1", "basinmap2"]
        assert np.array_equal(hw.h5["events/basinmap1"][:], [5, 5, 5])


def test_basinmap_large_reuse(tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Block-wise comparison of a map larger than one compare block."""
    from dcbulk.write import blockwise
    monkeypatch.setattr(blockwise, "COMPARE_BLOCK_ELEMENTS", 1000)
    big = np.arange(30_500, dtype=np.uint64)
    other = big.copy()
    other[-1] = 0
    with HDF5Writer(tmp_path / "big.rtdc", mode="w") as hw:
        hw.store_basin("a", paths=["a"], mapping=big)
        kb = hw.store_basin("b", paths=["b"], mapping=other)
        kc = hw.store_basin("c", paths=["c"], mapping=big.astype(np.int64))
        assert read_basin(hw.h5, kb)[1]["mapping"] == "basinmap1"
        assert read_basin(hw.h5, kc)[1]["mapping"] == "basinmap0"


# ------------------------------------------------------------ copy_basins
def make_basin_source(path: Path, featureless: bool = True) -> None:
    """A file with file, mapped, internal and remote basins.

    With `featureless`, the mapped file basin lists no features (dcnum's
    copy_basins raises KeyError on such a basin; dcbulk copies it).
    """
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", np.linspace(0, 1, 12))
        hw.store_basin("file", paths=["raw.rtdc", "/data/raw.rtdc"],
                       features=["image"], identifier="raw-id",
                       description="original")
        hw.store_basin("mapped-file", paths=["m.rtdc"],
                       features=None if featureless else ["deform"],
                       mapping=np.arange(12, dtype=np.uint64) * 3)
        hw.store_basin("internal",
                       internal_data={"userdef1": np.arange(6.0) * 1.5},
                       mapping=np.repeat(np.arange(6), 2))
        bdat = {"description": None, "name": "remote", "format": "http",
                "paths": ["https://example.org/x.rtdc"], "type": "remote"}
        text, key = basin_json(bdat)
        hw.h5["basins"].create_dataset(
            key, data=np.array([ln.encode() for ln in text.split("\n")]))


def test_copy_basins(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.rtdc", tmp_path / "dst.rtdc"
    make_basin_source(src)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        h5d.require_group("events")["deform"] = np.zeros(12)
        with pytest.warns(IgnoringBasinTypeWarning, match="remote"):
            copy_basins(h5s, h5d)
        src_basins = {b["name"]: b for b in extract_basin_dicts(h5s)}
        dst_basins = {b["name"]: b for b in extract_basin_dicts(h5d)}
        assert sorted(dst_basins) == ["file", "internal", "mapped-file"]
        for name, bdict in dst_basins.items():
            expected = dict(src_basins[name])
            assert bdict == expected
            if "mapping" in bdict:
                assert np.array_equal(h5d["events"][bdict["mapping"]][:],
                                      h5s["events"][expected["mapping"]][:])
        assert np.array_equal(h5d["basin_events/userdef1"][:],
                              np.arange(6.0) * 1.5)
        assert sorted(h5d["basins"]) == sorted(
            k for k in h5s["basins"]
            if json.loads(read_basin(h5s, k)[0])["type"] != "remote")


def test_copy_basins_without_internal(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.rtdc", tmp_path / "dst.rtdc"
    make_basin_source(src)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            copy_basins(h5s, h5d, internal_basins=False)
        assert [w.category for w in rec] == [IgnoringBasinTypeWarning]
        names = sorted(b["name"] for b in extract_basin_dicts(h5d))
        assert names == ["file", "mapped-file"]
        assert "basin_events" not in h5d


def test_copy_basins_like_dcnum(tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    src = tmp_path / "src.rtdc"
    make_basin_source(src, featureless=False)
    outs = {}
    for label, func in (("ours", copy_basins),
                        ("dcnum", dcnum_writer.copy_basins)):
        outs[label] = tmp_path / f"{label}.rtdc"
        with h5py.File(src) as h5s, h5py.File(outs[label], "w") as h5d:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                func(h5s, h5d)
    with h5py.File(outs["ours"]) as h1, h5py.File(outs["dcnum"]) as h2:
        assert sorted(h1["basins"]) == sorted(h2["basins"])
        for grp in ("events", "basin_events"):
            assert sorted(h1[grp]) == sorted(h2[grp])
            for feat in h1[grp]:
                assert np.array_equal(h1[grp][feat][:], h2[grp][feat][:])


# ----------------------------------------------------- create_with_basins
def test_create_with_basins(tmp_path: Path, sample_files: list[Path]
                            ) -> None:
    dclab = pytest.importorskip("dclab")
    basin = sample_files[0].parent / "dcnum_thresh_example.rtdc"
    if not basin.exists():
        pytest.skip(f"{basin} is absent")
    out = tmp_path / "sub" / "basin_only.rtdc"
    out.parent.mkdir()
    missing = tmp_path / "missing.rtdc"
    create_with_basins(out, [[Path("../nowhere.rtdc"), basin], str(missing)])
    with h5py.File(out) as h5, h5py.File(basin) as h5b:
        assert len(h5["events"]) == 0
        for key, value in h5b.attrs.items():
            assert np.array_equal(h5.attrs[key], value)
        assert sorted(h5["logs"]) == sorted(h5b["logs"])
        bdicts = {b["name"]: b for b in extract_basin_dicts(h5)}
        assert sorted(bdicts) == sorted([basin.name, str(missing)])
        first = bdicts[basin.name]
        assert first["paths"] == ["../nowhere.rtdc", str(basin)]
        assert first["identifier"] == get_measurement_identifier(h5b)
        assert first["features"] == sorted(h5b["events"])
        assert first["description"].startswith("Created by dcbulk ")
        second = bdicts[str(missing)]
        assert second["identifier"] is None and "features" not in second
    with dclab.new_dataset(out) as ds:
        assert len(ds) == len(h5py.File(basin)["events/deform"])
        with dclab.new_dataset(basin) as ds0:
            assert np.array_equal(ds["deform"], ds0["deform"])
            assert np.array_equal(ds["image"][3], ds0["image"][3])


def test_create_with_basins_relative(tmp_path: Path,
                                     shared_data_dir: Path) -> None:
    basin = shared_data_dir / "cytoshot-test-data.rtdc"
    if not basin.exists():
        pytest.skip(f"{basin} is absent")
    (tmp_path / "raw.rtdc").write_bytes(basin.read_bytes())
    out = tmp_path / "out.rtdc"
    create_with_basins(out, ["raw.rtdc"])
    with h5py.File(out) as h5:
        (bdict,) = extract_basin_dicts(h5)
        assert bdict["name"] == "raw.rtdc"
        assert bdict["paths"] == ["raw.rtdc"]
        assert bdict["identifier"] == "d5a40aed-0b6c-0412-e87c-59789fdd28d0"


def test_create_with_basins_like_dcnum(tmp_path: Path,
                                       sample_files: list[Path]) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    basins = [p for p in sample_files if p.name != "M001_data.rtdc"]
    outs = {}
    for label, func in (("ours", create_with_basins),
                        ("dcnum", dcnum_writer.create_with_basins)):
        outs[label] = tmp_path / f"{label}.rtdc"
        func(outs[label], basins)
    with h5py.File(outs["ours"]) as h1, h5py.File(outs["dcnum"]) as h2:
        d1 = extract_basin_dicts(h1)
        d2 = extract_basin_dicts(h2)
        for bd in d1 + d2:
            bd.pop("description")  # "dcbulk <v>" vs "dcnum <v>"
        # one identifier rule for dclab and dcnum (issue 9.4): where the two readers derive
        # different identifiers (no run identifier, bytes attributes), dcbulk stores none;
        # everywhere else exactly what dcnum stores
        differ = 0
        for bd in d2:
            with h5py.File(bd["paths"][0]) as bh5:
                if (get_measurement_identifier(bh5, compat="dclab")
                        != get_measurement_identifier(bh5, compat="dcnum")):
                    bd["identifier"] = None  # stored as null, as dcnum does for None
                    differ += 1
        assert differ == 1  # file_with_variable_length_logs.rtdc
        assert sorted(d1, key=str) == sorted(d2, key=str)
        assert sorted(h1.attrs) == sorted(h2.attrs)


def test_create_with_basins_empty(tmp_path: Path) -> None:
    out = tmp_path / "empty.rtdc"
    with pytest.warns(CreatingFileWithoutBasinWarning, match="empty"):
        create_with_basins(out, [])
    with h5py.File(out) as h5:
        assert list(h5) == ["events"]
