"""Tests for dcbulk.write.HDF5Writer, chunk shapes and filter defaults."""
from __future__ import annotations

import copy
import importlib
import pickle
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

import dcbulk.write as write
from dcbulk.write import HDF5Writer, set_default_filter_kwargs

ZSTD_ID = hdf5plugin.ZSTD_ID
FLETCHER32_ID = h5py.h5z.FILTER_FLETCHER32


def filter_pipeline(ds: h5py.Dataset) -> list[tuple[int, tuple]]:
    """The (filter id, options) pipeline of a dataset, in order."""
    plist = ds.id.get_create_plist()
    return [tuple(plist.get_filter(i)[0:3:2])
            for i in range(plist.get_nfilters())]


DEFAULT_PIPELINE = [(ZSTD_ID, (5,)), (FLETCHER32_ID, ())]

PUBLIC_NAMES = ("HDF5Writer", "CreatingFileWithoutBasinWarning",
                "IgnoringBasinTypeWarning", "copy_basins", "copy_features",
                "copy_metadata", "create_with_basins",
                "set_default_filter_kwargs")


# ------------------------------------------------------------ module layout
def test_public_names_at_both_paths() -> None:
    writer_mod = importlib.import_module("dcbulk.write.writer")
    for name in PUBLIC_NAMES:
        assert getattr(write, name) is getattr(writer_mod, name)
    assert writer_mod.hdf5plugin is hdf5plugin
    assert issubclass(write.CreatingFileWithoutBasinWarning, UserWarning)
    assert issubclass(write.IgnoringBasinTypeWarning, UserWarning)


def test_public_names_match_dcnum() -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    writer_mod = importlib.import_module("dcbulk.write.writer")
    for name in PUBLIC_NAMES + ("hdf5plugin",):
        assert hasattr(dcnum_writer, name)
        assert hasattr(writer_mod, name)
    for meth in ("get_best_nd_chunks", "require_feature", "store_basin",
                 "store_feature_chunk", "store_log", "close"):
        assert hasattr(dcnum_writer.HDF5Writer, meth)
        assert hasattr(HDF5Writer, meth)


# ----------------------------------------------------------- file ownership
def test_path_is_owned_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "o.rtdc"
    hw = HDF5Writer(path, mode="w")
    assert hw.h5_owned
    assert hw.events.name == "/events"
    with h5py.File(tmp_path / "ref.h5", "w", libver="latest") as ref:
        assert hw.h5.libver == ref.libver
    nbytes = hw.h5.id.get_access_plist().get_cache()[2]
    assert nbytes == 10 * 1024 ** 2
    h5 = hw.h5
    hw.close()
    assert not h5.id.valid
    hw.close()  # second close is a no-op


def test_wrapped_file_stays_open(tmp_path: Path) -> None:
    path = tmp_path / "w.rtdc"
    with h5py.File(path, "w") as h5:
        with HDF5Writer(h5) as hw:
            assert not hw.h5_owned
            assert hw.h5 is h5
            hw.store_feature_chunk("deform", np.arange(5.0))
        assert h5.id.valid
        assert np.array_equal(h5["events/deform"][:], np.arange(5.0))
        h5.attrs["after"] = 1  # still writable
    with h5py.File(path) as h5:
        assert h5.attrs["after"] == 1


def test_context_manager_closes_owned(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "c.rtdc", mode="w") as hw:
        hw.store_feature_chunk("deform", np.arange(3.0))
        h5 = hw.h5
    assert not h5.id.valid
    with h5py.File(tmp_path / "c.rtdc") as h5:
        assert h5["events/deform"].shape == (3,)


def test_pickling_refused(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "p.rtdc", mode="w") as hw:
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(hw)
        with pytest.raises(TypeError, match="pickle"):
            hw.__getstate__()
        with pytest.raises(TypeError):
            copy.copy(hw)


def test_ds_kwds_defaults_and_no_mutation(tmp_path: Path) -> None:
    given = {"fletcher32": False}
    with HDF5Writer(tmp_path / "k.rtdc", mode="w", ds_kwds=given) as hw:
        assert given == {"fletcher32": False}
        assert hw.ds_kwds == {"compression": ZSTD_ID,
                              "compression_opts": (5,),
                              "fletcher32": False}
        hw.store_feature_chunk("deform", np.arange(3.0))
        ds = hw.h5["events/deform"]
        assert filter_pipeline(ds) == [(ZSTD_ID, (5,))]


# ------------------------------------------------ set_default_filter_kwargs
def test_set_default_filter_kwargs() -> None:
    assert set_default_filter_kwargs() == {
        "compression": ZSTD_ID, "compression_opts": (5,), "fletcher32": True}
    assert set_default_filter_kwargs(compression=False) == {
        "compression": None, "compression_opts": None, "fletcher32": True}
    given = {"compression": "gzip", "fletcher32": False}
    out = set_default_filter_kwargs(given)
    assert out is given  # updated in place, like dcnum
    assert out == {"compression": "gzip", "compression_opts": None,
                   "fletcher32": False}


def test_set_default_filter_kwargs_like_dcnum() -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    cases = [None, {}, {"compression": "gzip"}, {"fletcher32": False},
             {"compression_opts": (3,)}]
    for case in cases:
        for compression in (True, False):
            ours = set_default_filter_kwargs(copy.deepcopy(case), compression)
            theirs = dcnum_writer.set_default_filter_kwargs(
                copy.deepcopy(case), compression)
            assert ours == theirs, (case, compression)


# ------------------------------------------------------- get_best_nd_chunks
CHUNK_CASES = [
    ((), np.float64), ((), np.float32), ((), np.uint8), ((), np.int64),
    ((), bool), ((1,), np.float64), ((80, 250), np.uint8),
    ((80, 400), np.uint8), ((80, 320), np.uint8), ((80, 250), bool),
    ((80, 250), np.float64), ((1130,), np.int16), ((3, 4), np.float32),
    ((1024, 1024), np.uint8), ((2000, 2000), np.uint8), ((10, 10), "u2"),
    ((5,), "S100"), ((512, 512), np.float32), ((104857,), np.uint8),
    ((104858,), np.uint8),
]


def test_get_best_nd_chunks_values() -> None:
    best = HDF5Writer.get_best_nd_chunks
    assert best((80, 250), np.uint8) == (52, 80, 250)
    assert best((80, 400), np.uint8) == (32, 80, 400)
    assert best(()) == (1000,)
    assert best((2000, 2000), np.uint8) == (10, 2000, 2000)
    assert best((104857,), np.uint8) == (10, 104857)
    assert best((1130,), np.int16) == (463, 1130)


@pytest.mark.parametrize("item_shape,dtype", CHUNK_CASES)
def test_get_best_nd_chunks_like_dcnum(item_shape: tuple, dtype: object
                                       ) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    ours = HDF5Writer.get_best_nd_chunks(item_shape, dtype)
    theirs = dcnum_writer.HDF5Writer.get_best_nd_chunks(item_shape, dtype)
    assert ours == tuple(theirs)
    assert all(type(v) is int for v in ours)


def test_get_best_nd_chunks_sweep_like_dcnum() -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    for size in list(range(1, 2000, 7)) + [2 ** k for k in range(21)]:
        for dtype in (np.uint8, np.float32, np.float64):
            assert HDF5Writer.get_best_nd_chunks((size,), dtype) == tuple(
                dcnum_writer.HDF5Writer.get_best_nd_chunks((size,), dtype))


# ------------------------------------------------------------ require_feature
def test_require_feature_new_and_existing(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "r.rtdc", mode="w") as hw:
        ds, offset = hw.require_feature("image", (80, 250), np.uint8)
        assert offset == 0
        assert ds.shape == (0, 80, 250) and ds.maxshape == (None, 80, 250)
        assert ds.chunks == (52, 80, 250)
        assert filter_pipeline(ds) == DEFAULT_PIPELINE
        assert ds.attrs["CLASS"] == b"IMAGE"
        assert ds.attrs["IMAGE_VERSION"] == b"1.2"
        assert ds.attrs["IMAGE_SUBCLASS"] == b"IMAGE_GRAYSCALE"
        for key in ("CLASS", "IMAGE_VERSION", "IMAGE_SUBCLASS"):
            assert isinstance(ds.attrs[key], np.bytes_)  # fixed length
            atype = ds.attrs.get_id(key).get_type()
            assert not atype.is_variable_str()
        ds.resize(7, axis=0)
        ds2, offset2 = hw.require_feature("image", (80, 250), np.uint8)
        assert ds2 == ds and offset2 == 7

        scalar, _ = hw.require_feature("deform", (), np.float64)
        assert scalar.chunks == (1000,) and scalar.maxshape == (None,)
        assert len(scalar.attrs) == 0
        trace, _ = hw.require_feature("fl1", (1130,), np.int16)
        assert len(trace.attrs) == 0


def test_require_feature_ds_kwds_and_group(tmp_path: Path) -> None:
    with HDF5Writer(tmp_path / "g.rtdc", mode="w") as hw:
        kwds = {"compression": "gzip", "compression_opts": 4}
        ds, _ = hw.require_feature("userdef1", (), np.float32,
                                   ds_kwds=kwds, group_name="basin_events")
        assert kwds == {"compression": "gzip", "compression_opts": 4}
        assert ds.name == "/basin_events/userdef1"
        assert ds.compression == "gzip" and ds.compression_opts == 4
        assert ds.fletcher32  # merged from the writer's defaults
        assert "userdef1" not in hw.events
        hw.h5["events"].create_group("trace")
        with pytest.raises(ValueError, match="group"):
            hw.require_feature("trace", (10,), np.int16)


# -------------------------------------------------------- store_feature_chunk
def test_store_feature_chunk_appends(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    a, b = rng.random(1500), rng.random(700)
    imgs = rng.integers(0, 255, size=(30, 20, 25), dtype=np.uint8)
    path = tmp_path / "s.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", a)
        hw.store_feature_chunk("deform", b)
        hw.store_feature_chunk("image", imgs[:11])
        hw.store_feature_chunk("image", imgs[11:])
        hw.store_feature_chunk("userdef1", np.arange(4), group_name="grp")
        with pytest.raises(ValueError, match="event axis"):
            hw.store_feature_chunk("area_um", np.float64(1.0))
    with h5py.File(path) as h5:
        assert np.array_equal(h5["events/deform"][:], np.concatenate([a, b]))
        assert h5["events/deform"].dtype == np.float64
        assert np.array_equal(h5["events/image"][:], imgs)
        assert np.array_equal(h5["grp/userdef1"][:], np.arange(4))


def test_store_feature_chunk_mask_bool(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((12, 8, 9)) > 0.5
    path = tmp_path / "m.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("mask", mask)
        hw.store_feature_chunk("mask", mask[:2])
        hw.store_feature_chunk("other", mask[:, 0, :])  # not a mask: bool
    with h5py.File(path) as h5:
        stored = h5["events/mask"][:]
        assert stored.dtype == np.uint8
        expected = np.concatenate([mask, mask[:2]]).astype(np.uint8) * 255
        assert np.array_equal(stored, expected)
        assert set(np.unique(stored)) == {0, 255}
        assert h5["events/mask"].attrs["CLASS"] == b"IMAGE"
        assert h5["events/other"].dtype == bool


def test_store_feature_chunk_from_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 255, size=(1234, 16, 16), dtype=np.uint8)
    mask = rng.random((300, 5, 6)) > 0.3
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as h5:
        h5["images"] = images
        h5["mask"] = mask
    with h5py.File(src) as h5s, HDF5Writer(tmp_path / "d.rtdc",
                                           mode="w") as hw:
        hw.store_feature_chunk("image", h5s["images"])
        hw.store_feature_chunk("mask", h5s["mask"])
        assert np.array_equal(hw.h5["events/image"][:], images)
        assert np.array_equal(hw.h5["events/mask"][:],
                              mask.astype(np.uint8) * 255)


def test_store_feature_chunk_like_dcnum(tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    rng = np.random.default_rng(5)
    data = {"deform": rng.random(2100),
            "mask": rng.random((40, 30, 20)) > 0.5,
            "image": rng.integers(0, 255, (40, 30, 20), dtype=np.uint8),
            "frame": np.arange(40, dtype=np.uint64)}
    paths = {}
    for label, cls in (("ours", HDF5Writer),
                       ("dcnum", dcnum_writer.HDF5Writer)):
        paths[label] = tmp_path / f"{label}.rtdc"
        with cls(paths[label], mode="w") as hw:
            for feat, arr in data.items():
                hw.store_feature_chunk(feat, arr)
                hw.store_feature_chunk(feat, arr[:3])
    with h5py.File(paths["ours"]) as h1, h5py.File(paths["dcnum"]) as h2:
        for feat in data:
            d1, d2 = h1["events"][feat], h2["events"][feat]
            assert d1.dtype == d2.dtype and d1.chunks == d2.chunks
            assert filter_pipeline(d1) == filter_pipeline(d2)
            assert filter_pipeline(d1) == DEFAULT_PIPELINE
            assert dict(d1.attrs) == dict(d2.attrs)
            assert np.array_equal(d1[:], d2[:])


# ------------------------------------------------------------------ store_log
def test_store_log(tmp_path: Path) -> None:
    path = tmp_path / "l.rtdc"
    with HDF5Writer(path, mode="w") as hw:
        ds = hw.store_log("run", ["line one", "two", ""])
        assert ds.dtype == np.dtype("S8")
        assert filter_pipeline(ds) == DEFAULT_PIPELINE
        with pytest.raises(ValueError, match="already exists"):
            hw.store_log("run", ["again"])
        assert list(hw.h5["logs/run"][:]) == [b"line one", b"two", b""]
        hw.store_log("run", ["replaced"], override=True)
        hw.store_log("utf8", ["Grüße µm"])
        with pytest.raises(ValueError, match="no lines"):
            hw.store_log("empty", [])
    with h5py.File(path) as h5:
        assert list(h5["logs/run"][:]) == [b"replaced"]
        assert h5["logs/utf8"][0].decode("utf-8") == "Grüße µm"
        assert "empty" not in h5["logs"]


def test_store_log_like_dcnum(tmp_path: Path) -> None:
    dcnum_writer = pytest.importorskip("dcnum.write.writer")
    lines = ["[section]", "key = value", "", "x" * 150]
    paths = {}
    for label, cls in (("ours", HDF5Writer),
                       ("dcnum", dcnum_writer.HDF5Writer)):
        paths[label] = tmp_path / f"{label}.rtdc"
        with cls(paths[label], mode="w") as hw:
            hw.store_log("cfg", lines)
    with h5py.File(paths["ours"]) as h1, h5py.File(paths["dcnum"]) as h2:
        d1, d2 = h1["logs/cfg"], h2["logs/cfg"]
        assert d1.dtype == d2.dtype and d1.shape == d2.shape
        assert d1.chunks == d2.chunks
        assert filter_pipeline(d1) == filter_pipeline(d2) == DEFAULT_PIPELINE
        assert np.array_equal(d1[:], d2[:])


@pytest.mark.parametrize("data", ["abc", b"abc"])
def test_store_log_refuses_one_string_as_dcnum_does(tmp_path, data):
    """A log given as one string was stored one character per line (dcnum raises
    ValueError); an existing log is kept even with ``override``."""
    with HDF5Writer(tmp_path / "l.rtdc", mode="w") as hw:
        hw.store_log("mylog", ["kept"])
        with pytest.raises(ValueError, match="as a list"):
            hw.store_log("mylog", data, override=True)
        assert hw.h5["logs/mylog"][:].tolist() == [b"kept"]
