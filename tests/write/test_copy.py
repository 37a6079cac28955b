"""Tests for copy_features, copy_metadata and the block-wise helpers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from dcbulk.write import (HDF5Writer, copy_basins, copy_features,
                          copy_metadata)
from dcbulk.write import blockwise, copy as copy_mod


class RecordingArray:
    """A numpy-backed stand-in for an h5py Dataset that records reads."""

    def __init__(self, data: np.ndarray,
                 chunks: tuple[int, ...] | None = None) -> None:
        self.data = data
        self.chunks = chunks
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.name = "/events/fake"
        self.rows_read: list[int] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        out = self.data[key]
        self.rows_read.append(len(out))
        return out


# ----------------------------------------------------------- block helpers
def test_arrays_equal_blockwise_stops_early(monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setattr(blockwise, "COMPARE_BLOCK_ELEMENTS", 100)
    a = RecordingArray(np.arange(10_000))
    b = np.arange(10_000)
    assert blockwise.arrays_equal(a, b)
    assert max(a.rows_read) == 100 and sum(a.rows_read) == 10_000
    a.rows_read.clear()
    c = b.copy()
    c[150] = -1
    assert not blockwise.arrays_equal(a, c)
    assert sum(a.rows_read) == 200  # stopped after the second block
    assert not blockwise.arrays_equal(np.arange(3), np.arange(4))
    assert not blockwise.arrays_equal(np.zeros((2, 3)), np.zeros((3, 2)))
    nan = np.array([1.0, np.nan])
    assert not blockwise.arrays_equal(nan, nan.copy())
    assert blockwise.arrays_equal(nan, nan.copy(), equal_nan=True)
    assert blockwise.arrays_equal(np.float64(3), np.float64(3))


def test_check_mapping() -> None:
    assert np.array_equal(blockwise.check_mapping([0, 2, 1], 3), [0, 2, 1])
    assert blockwise.check_mapping([], 0).size == 0
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        blockwise.check_mapping([0, 3], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        blockwise.check_mapping([-1, 2], 3)
    with pytest.raises(TypeError, match="integer"):
        blockwise.check_mapping([0.0, 1.0], 3)
    with pytest.raises(TypeError, match="integer"):
        blockwise.check_mapping(np.array([True, False]), 3)
    with pytest.raises(ValueError, match="one-dimensional"):
        blockwise.check_mapping(np.zeros((2, 2), int), 3)


@pytest.mark.parametrize("kind", ["sorted", "dups", "sparse", "unsorted",
                                  "reversed", "empty", "all"])
def test_iter_mapped_blocks(kind: str) -> None:
    rng = np.random.default_rng(11)
    src = rng.random((1000, 3))
    mapping = {
        "sorted": np.sort(rng.choice(1000, 300, replace=False)),
        "dups": np.sort(rng.integers(0, 1000, 700)),
        "sparse": np.array([0, 999]),
        "unsorted": rng.integers(0, 1000, 500),
        "reversed": np.arange(1000)[::-1].copy(),
        "empty": np.zeros(0, dtype=np.int64),
        "all": np.arange(1000),
    }[kind]
    for chunks in (None, (7, 3)):
        fake = RecordingArray(src, chunks=chunks)
        parts = list(blockwise.iter_mapped_blocks(fake, mapping, 64))
        result = np.concatenate(parts) if parts else np.zeros((0, 3))
        assert np.array_equal(result, src[mapping])
        if kind in ("unsorted", "reversed"):  # served per output block
            assert all(len(p) <= 64 for p in parts)
        assert not fake.rows_read or max(fake.rows_read) <= 4 * 64
        if kind == "sparse":  # blocks without mapped events are not read
            assert sum(fake.rows_read) == 2
        if kind == "unsorted" and chunks:
            # scattered rows are read one HDF5 chunk at a time
            assert max(fake.rows_read) <= 7


# ------------------------------------------------------------- fixtures
def make_source(path: Path, n: int = 1234) -> dict[str, np.ndarray]:
    """A source file with scalar, image and mask features."""
    rng = np.random.default_rng(1)
    data = {
        "deform": rng.random(n),
        "area_um": (rng.random(n) * 100).astype(np.float32),
        "frame": np.arange(n, dtype=np.uint64),
        "bright_avg": np.where(rng.random(n) > 0.9, np.nan, rng.random(n)),
        "image": rng.integers(0, 255, (n, 12, 17), dtype=np.uint8),
        "mask": (rng.random((n, 12, 17)) > 0.5).astype(np.uint8) * 255,
    }
    with HDF5Writer(path, mode="w") as hw:
        for feat, arr in data.items():
            hw.store_feature_chunk(feat, arr)
        hw.h5["events/deform"].attrs["unit"] = "a.u."
        hw.h5["events"].create_group("trace")
        hw.h5["events/trace"]["fl1_raw"] = np.zeros((n, 8), np.int16)
    return data


# ----------------------------------------------------------- copy_features
def test_copy_features_raw(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    data = make_source(src)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        copy_features(h5s, h5d, list(data))
        for feat, arr in data.items():
            ds, dso = h5d["events"][feat], h5s["events"][feat]
            assert np.array_equal(ds[:], arr, equal_nan=True)
            assert ds.chunks == dso.chunks and ds.dtype == dso.dtype
            assert ds.id.get_create_plist().get_nfilters() == 2
            assert dict(ds.attrs) == dict(dso.attrs)
            # raw chunks are identical (a copy, not a re-encode)
            assert ds.id.read_direct_chunk((0,) * ds.ndim) == \
                dso.id.read_direct_chunk((0,) * ds.ndim)
        assert h5d["events/deform"].attrs["unit"] == "a.u."


@pytest.mark.parametrize("kind", ["sorted", "unsorted", "dups", "empty"])
def test_copy_features_mapped(tmp_path: Path, kind: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_mod, "MAPPED_READ_CHUNKS", 1)  # many blocks
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    data = make_source(src)
    rng = np.random.default_rng(2)
    mapping = {
        "sorted": np.sort(rng.choice(1234, 700, replace=False)),
        "unsorted": rng.permutation(1234)[:900],
        "dups": np.repeat(np.arange(0, 1234, 5), 3),
        "empty": np.zeros(0, dtype=np.uint64),
    }[kind]
    kwds = {"fletcher32": False}
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        copy_features(h5s, h5d, list(data), mapping=mapping, ds_kwds=kwds)
        assert kwds == {"fletcher32": False}
        for feat, arr in data.items():
            ds = h5d["events"][feat]
            assert ds.dtype == arr.dtype
            assert np.array_equal(ds[:], arr[mapping], equal_nan=True)
            assert ds.chunks == HDF5Writer.get_best_nd_chunks(arr.shape[1:],
                                                              arr.dtype)
            assert not ds.fletcher32
        assert h5d["events/image"].attrs["CLASS"] == b"IMAGE"


def test_copy_features_mapped_like_dcnum(tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    src = tmp_path / "s.rtdc"
    data = make_source(src, n=3000)
    mapping = np.sort(np.random.default_rng(3).choice(3000, 2000,
                                                      replace=False))
    outs = {}
    for label, func in (("ours", copy_features),
                        ("dcnum", dcnum_writer.copy_features)):
        outs[label] = tmp_path / f"{label}.rtdc"
        with h5py.File(src) as h5s, h5py.File(outs[label], "w") as h5d:
            func(h5s, h5d, list(data), mapping=mapping)
    with h5py.File(outs["ours"]) as h1, h5py.File(outs["dcnum"]) as h2:
        for feat in data:
            d1, d2 = h1["events"][feat], h2["events"][feat]
            assert d1.chunks == d2.chunks and d1.dtype == d2.dtype
            assert dict(d1.attrs) == dict(d2.attrs)
            assert np.array_equal(d1[:], d2[:], equal_nan=True)


def test_copy_features_existing(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    data = make_source(src)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        copy_features(h5s, h5d, ["deform", "bright_avg", "image"])
        before = h5d["events/deform"].id.get_offset()
        # identical scalar features (NaN included) are skipped
        copy_features(h5s, h5d, ["deform", "bright_avg"])
        assert h5d["events/deform"].id.get_offset() == before
        # identical non-scalar features are refused, as in dcnum
        with pytest.raises(ValueError, match="already contains the feature"):
            copy_features(h5s, h5d, ["image"])
        h5d["events/area_um"] = data["area_um"] + 1
        with pytest.raises(ValueError, match="area_um"):
            copy_features(h5s, h5d, ["area_um"])
        h5d["events/frame"] = data["frame"][:10]
        with pytest.raises(ValueError, match="frame"):
            copy_features(h5s, h5d, ["frame"])
        with pytest.raises(NotImplementedError, match="trace"):
            copy_features(h5s, h5d, ["trace"])
        with pytest.raises(KeyError):
            copy_features(h5s, h5d, ["volume"])


def test_copy_features_existing_mapped(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    data = make_source(src)
    mapping = np.arange(0, 1234, 2)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        copy_features(h5s, h5d, ["deform"], mapping=mapping)
        copy_features(h5s, h5d, ["deform"], mapping=mapping)  # skipped
        assert np.array_equal(h5d["events/deform"][:],
                              data["deform"][mapping])
        with pytest.raises(ValueError, match="deform"):
            copy_features(h5s, h5d, ["deform"], mapping=mapping + 1)
        with pytest.raises(ValueError, match="deform"):
            copy_features(h5s, h5d, ["deform"])  # unmapped: other length


def test_copy_features_bad_mapping(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    make_source(src, n=50)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        with pytest.raises(ValueError, match=r"\[0, 50\)"):
            copy_features(h5s, h5d, ["deform"], mapping=np.arange(51))
        with pytest.raises(TypeError, match="integer"):
            copy_features(h5s, h5d, ["deform"], mapping=np.arange(5.0))
        assert "deform" not in h5d["events"]


# ----------------------------------------------------------- copy_metadata
def test_copy_metadata(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    vlen = h5py.string_dtype()
    with h5py.File(src, "w") as h5:
        h5.attrs["experiment:date"] = "2024-01-01"
        h5.attrs["setup:identifier"] = np.bytes_(b"RC-x")
        h5.attrs["imaging:pixel size"] = 0.34
        logs = h5.create_group("logs")
        logs.create_dataset("vlen", data=["ab", "Grüße", ""], dtype=vlen)
        logs.create_dataset("fixed", data=np.array([b"x", b"yz"]))
        logs["fixed"].attrs["software"] = "tool 1.0"
        logs.create_dataset("empty", shape=(0,), dtype=vlen)
        logs.create_dataset("kept", data=np.array([b"source"]))
        table = np.zeros((4, 1, 1), dtype=[("t", "<f8"), ("v", "<i4")])
        table["t"][:, 0, 0] = [0, 1, 2, np.nan]
        tables = h5.create_group("tables")
        tables.create_dataset("mon", data=table)
        tables["mon"].attrs["unit"] = "s"
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        h5d.attrs["imaging:pixel size"] = 0.5
        h5d.require_group("logs").create_dataset(
            "kept", data=np.array([b"dest"]))
        copy_metadata(h5s, h5d)
        assert h5d.attrs["imaging:pixel size"] == 0.5  # not overridden
        assert h5d.attrs["experiment:date"] == "2024-01-01"
        assert h5d.attrs["setup:identifier"] == b"RC-x"
        assert isinstance(h5d.attrs["setup:identifier"], np.bytes_)
        lg = h5d["logs"]
        assert lg["vlen"].dtype == np.dtype(f"S{len('Grüße'.encode())}")
        assert [v.decode() for v in lg["vlen"][:]] == ["ab", "Grüße", ""]
        assert list(lg["fixed"][:]) == [b"x", b"yz"]
        assert lg["fixed"].attrs["software"].startswith("tool 1.0 | dcbulk ")
        assert lg["vlen"].attrs["software"].startswith("dcbulk ")
        assert "empty" not in lg
        assert list(lg["kept"][:]) == [b"dest"]
        mon = h5d["tables/mon"]
        assert mon.dtype == table.dtype and mon[:].tobytes() == table.tobytes()
        assert mon.attrs["unit"] == "s"
        plist = mon.id.get_create_plist()
        codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert codes == [32015, h5py.h5z.FILTER_FLETCHER32]
        # a second call changes nothing
        copy_metadata(h5s, h5d)
        assert lg["fixed"].attrs["software"].count("dcbulk") == 1


def test_copy_metadata_like_dcnum(sample_file: Path, tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    outs = {}
    for label, func in (("ours", copy_metadata),
                        ("dcnum", dcnum_writer.copy_metadata)):
        outs[label] = tmp_path / f"{label}.rtdc"
        with h5py.File(sample_file) as h5s, h5py.File(outs[label], "w") as h:
            func(h5s, h)
    with h5py.File(outs["ours"]) as h1, h5py.File(outs["dcnum"]) as h2:
        assert sorted(h1.attrs) == sorted(h2.attrs)
        for grp in ("logs", "tables"):
            assert sorted(h1.get(grp, {})) == sorted(h2.get(grp, {}))
            for key in h1.get(grp, {}):
                d1, d2 = h1[grp][key], h2[grp][key]
                assert d1.dtype == d2.dtype and d1.shape == d2.shape
                assert d1[:].tobytes() == d2[:].tobytes()
                a1, a2 = dict(d1.attrs), dict(d2.attrs)
                assert a1.pop("software").replace("dcbulk", "dcnum") \
                    .split(" ")[:-1] == a2.pop("software").split(" ")[:-1]
                assert a1 == a2


def test_copy_basins_no_basins(tmp_path: Path) -> None:
    src, dst = tmp_path / "s.rtdc", tmp_path / "d.rtdc"
    make_source(src, n=20)
    with h5py.File(src) as h5s, h5py.File(dst, "w") as h5d:
        copy_basins(h5s, h5d)
        assert "basins" not in h5d
