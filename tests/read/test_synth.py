"""Tests for the synthetic .rtdc generator (dcbulk.synth, scripts/make_archive.py)."""
from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the zstd filter for reading)
import numpy as np
import pytest

from dcbulk import synth
from dcbulk.errors import OutputExistsError
from dcbulk.synth import rtdc as synth_rtdc

from helpers import dclab_verify

dclab = pytest.importorskip("dclab")

REPO = Path(__file__).resolve().parents[2]
SCALARS = {  # name -> dtype as written (cytoshot conventions; fl* as Shape-In)
    **{f: np.float64 for f in (
        "area_cvx", "area_msd", "area_ratio", "area_um", "aspect", "bg_med", "bright_avg",
        "bright_sd", "bright_bc_avg", "bright_bc_sd", "circ", "deform", "inert_ratio_cvx",
        "inert_ratio_prnc", "inert_ratio_raw", "pos_x", "pos_y", "size_x", "size_y",
        "temp", "tilt", "time", "volume")},
    "frame": np.int64, "nevents": np.int64, "index": np.uint32}
FL_SCALARS = {f"fl{c}_{k}": np.float32 for c in (1, 2, 3)
              for k in ("max", "pos", "width", "area")}
TRACES = ("fl1_median", "fl1_raw", "fl2_median", "fl2_raw", "fl3_median", "fl3_raw")


def _datasets(path: Path) -> dict[str, np.ndarray]:
    """All datasets of a file, read into memory, keyed by HDF5 path."""
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 230-event file with traces and contours (default image shape)."""
    return synth.make_rtdc(tmp_path_factory.mktemp("synth") / "small.rtdc", 230, seed=7,
                           with_contour=True, trace_length=128)


def test_file_structure_and_dtypes(small: Path) -> None:
    with h5py.File(small, "r") as h5:
        ev = h5["events"]
        assert h5.attrs["experiment:event count"] == 230
        assert h5.attrs["imaging:roi size y"] == 80 and h5.attrs["imaging:roi size x"] == 250
        assert h5.attrs["fluorescence:samples per event"] == 128
        for feat, dtype in {**SCALARS, **FL_SCALARS}.items():
            assert ev[feat].shape == (230,) and ev[feat].dtype == dtype, feat
        for feat in ("image", "image_bg", "mask"):
            assert ev[feat].shape == (230, 80, 250) and ev[feat].dtype == np.uint8
            assert ev[feat].attrs["CLASS"] == b"IMAGE"
        assert set(np.unique(ev["mask"][:20])) == {0, 255}
        for tr in TRACES:
            assert ev["trace"][tr].shape == (230, 128) and ev["trace"][tr].dtype == np.int16
        assert len(ev["contour"]) == 230 and ev["contour/229"].shape[1] == 2
        assert ev["image"].fletcher32
        assert ev["image"].id.get_create_plist().get_filter(0)[0] == 32015  # zstd
        assert h5["logs/dcbulk-synth"].dtype.kind == "S"
        assert b"seed: 7" in list(h5["logs/dcbulk-synth"][:])
        assert len(h5["logs/cytoshot-acquisition"]) >= 3
        table = h5["tables/cytoshot_monitor"]
        assert table.dtype.names[:2] == ("time", "brightness") and len(table) > 10
        assert table.attrs["time unit"] == "s"


def test_opens_in_dclab_with_consistent_features(small: Path) -> None:
    from dclab.features import inert_ratio, volume
    with dclab.new_dataset(small) as ds:
        assert len(ds) == 230
        assert set(SCALARS) | set(FL_SCALARS) <= set(ds.features_innate)
        assert {"image", "image_bg", "mask", "trace", "contour"} <= set(ds.features_innate)
        px, fr = ds.config["imaging"]["pixel size"], ds.config["imaging"]["frame rate"]
        np.testing.assert_array_equal(ds["index"], np.arange(1, 231))
        np.testing.assert_allclose(ds["deform"], 1 - ds["circ"])
        np.testing.assert_allclose(ds["area_ratio"], ds["area_cvx"] / ds["area_msd"])
        np.testing.assert_allclose(ds["area_um"], ds["area_cvx"] * px ** 2)
        np.testing.assert_allclose(ds["aspect"], ds["size_x"] / ds["size_y"])
        np.testing.assert_allclose(ds["time"], ds["frame"] / fr)
        assert np.all(ds["area_ratio"] >= 1) and np.all(np.diff(ds["frame"]) >= 0)
        assert 0 < ds["deform"].min() and ds["deform"].max() < 0.2
        _, inv, cnt = np.unique(ds["frame"], return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(ds["nevents"], cnt[inv])
        assert cnt.max() > 1  # some frames hold several events
        # shape features agree with dclab's own computations on the contours
        cont = [ds["contour"][i] for i in range(len(ds))]
        np.testing.assert_allclose(inert_ratio.get_inert_ratio_raw(cont),
                                   ds["inert_ratio_raw"], rtol=1e-9)
        np.testing.assert_allclose(inert_ratio.get_tilt(cont), ds["tilt"], atol=1e-9)
        vol = volume.get_volume(cont, ds["pos_x"], ds["pos_y"], px)
        np.testing.assert_allclose(vol, ds["volume"], rtol=0.03)
        med = np.asarray(ds["trace"]["fl2_median"][:])
        np.testing.assert_array_equal(ds["fl2_max"], np.maximum(med.max(axis=1), 1))
        assert ds["fl1_max"].min() > 0.1


def test_mask_matches_blob(small: Path) -> None:
    with h5py.File(small, "r") as h5:
        ev = h5["events"]
        image = ev["image"][:50].astype(int)
        bg = ev["image_bg"][:50].astype(int)
        mask = ev["mask"][:50] > 0
        px = h5.attrs["imaging:pixel size"]
        bright, bright_bc = ev["bright_avg"][:50], ev["bright_bc_avg"][:50]
        pos_x, pos_y, area_msd = ev["pos_x"][:50], ev["pos_y"][:50], ev["area_msd"][:50]
        contours = [ev[f"contour/{i}"][:] for i in range(50)]
    diff = image - bg
    far = mask.copy()
    for _ in range(6):  # grow the mask past the blob's halo
        far[:, 1:] |= far[:, :-1]
        far[:, :-1] |= far[:, 1:]
        far[:, :, 1:] |= far[:, :, :-1]
        far[:, :, :-1] |= far[:, :, 1:]
    assert abs(diff[~far].mean()) < 0.1 and 1.5 < diff[~far].std() < 3
    for i in range(50):
        m = mask[i]
        assert diff[i][m].mean() < -12  # the cell is darker than the background
        assert bright[i] == pytest.approx(image[i][m].mean())
        assert bright_bc[i] == pytest.approx(diff[i][m].mean())
        ys, xs = np.nonzero(m)
        assert pos_x[i] == pytest.approx(xs.mean() * px, abs=0.5 * px)
        assert pos_y[i] == pytest.approx(ys.mean() * px, abs=0.5 * px)
        # contour through boundary pixel centres: area = pixels - ~perimeter/2
        assert area_msd[i] < m.sum() < area_msd[i] + len(contours[i])
        assert m[contours[i][:, 1], contours[i][:, 0]].all()


@pytest.mark.parametrize("kwargs", [{"with_contour": True, "trace_length": 64},
                                    {"with_traces": False, "image_shape": (64, 120)}])
def test_verify_dataset_clean(tmp_path: Path, kwargs: dict) -> None:
    path = synth.make_rtdc(tmp_path / "v.rtdc", 120, seed=3, **kwargs)
    result = dclab_verify(path)
    assert (result.violations, result.alerts) == (0, 0), result.output
    assert result.returncode == 0, result.output


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    kw = {"image_shape": (40, 90), "trace_length": 32, "with_contour": True}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = synth.make_rtdc(tmp_path / "a" / "f.rtdc", 150, seed=11, chunk_events=60, **kw)
    b = synth.make_rtdc(tmp_path / "b" / "f.rtdc", 150, seed=11, **kw)
    da, db = _datasets(a), _datasets(b)
    assert da.keys() == db.keys() and len(da) > 40
    for key in da:
        assert da[key].tobytes() == db[key].tobytes(), key
    with h5py.File(a) as ha, h5py.File(b) as hb:
        assert {k: str(v) for k, v in ha.attrs.items()} == {k: str(v) for k, v in hb.attrs.items()}
        rid = ha.attrs["experiment:run identifier"]
    c = synth.make_rtdc(tmp_path / "c.rtdc", 150, seed=12, **kw)
    assert not np.array_equal(da["events/image"], _datasets(c)["events/image"])
    with h5py.File(c) as hc:
        assert hc.attrs["experiment:run identifier"] != rid
    d = synth.make_rtdc(tmp_path / "a" / "g.rtdc", 150, seed=11, **kw)
    with h5py.File(d) as hd:  # run identifier depends on the file name too
        assert hd.attrs["experiment:run identifier"] != rid


def test_written_in_bounded_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    class Spy(synth_rtdc.HDF5Writer):  # type: ignore[misc,valid-type]
        def store_feature_chunk(self, feat, data, group_name="events"):  # noqa: ANN001
            calls.append((feat, len(data)))
            return super().store_feature_chunk(feat, data, group_name=group_name)

    monkeypatch.setattr(synth_rtdc, "HDF5Writer", Spy)
    n, shape = 2500, (48, 120)
    raw_bytes = n * (3 * shape[0] * shape[1] + 6 * 2 * 40)
    tracemalloc.start()
    try:
        small = synth.make_rtdc(tmp_path / "blocks.rtdc", n, seed=5, compression="none",
                                image_shape=shape, trace_length=40, chunk_events=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sizes = [k for f, k in calls if f == "image"]
    assert sizes == [200] * 12 + [100]
    assert {k for f, k in calls if f == "fl3_raw"} <= {200, 100}
    # ~2 blocks (8 % each) are alive at once; all-in-memory would be > 100 %
    assert peak < 0.35 * raw_bytes, (peak, raw_bytes)
    monkeypatch.undo()
    whole = synth.make_rtdc(tmp_path / "whole.rtdc", n, seed=5, compression="none",
                            image_shape=shape, trace_length=40, chunk_events=n)
    da, db = _datasets(small), _datasets(whole)
    assert da.keys() == db.keys()
    for key in da:
        assert np.array_equal(da[key], db[key]), key
    with h5py.File(small) as h5:
        assert h5["events/image"].compression is None and h5["events/image"].fletcher32
        assert h5["events/index"][-1] == n


def test_compression_options(tmp_path: Path) -> None:
    g = synth.make_rtdc(tmp_path / "g.rtdc", 60, seed=1, compression="gzip:3", with_traces=False)
    with h5py.File(g) as h5:
        assert h5["events/image"].compression == "gzip"
        assert h5["events/image"].compression_opts == 3 and h5["events/image"].fletcher32
    z = synth.make_rtdc(tmp_path / "z.rtdc", 300, seed=1, with_traces=False)
    with h5py.File(z) as h5:
        ratios = {f: h5[f"events/{f}"].size / h5[f"events/{f}"].id.get_storage_size()
                  for f in ("image", "image_bg", "mask")}
    assert 1.3 < ratios["image"] < 2.2, ratios  # like real DC images, not 100x
    assert ratios["image_bg"] > 10 and ratios["mask"] > 50, ratios
    assert synth.compression_kwargs("none") == {"compression": None, "compression_opts": None}
    assert synth.compression_kwargs("zstd:7")["compression"] == 32015
    for bad in ("lzma", "zstd:x", "gzip:12", "none:3"):
        with pytest.raises(ValueError):
            synth.compression_kwargs(bad)


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    path = synth.make_rtdc(tmp_path / "x.rtdc", 10, seed=0, with_traces=False)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        synth.make_rtdc(path, 10, seed=1)
    assert path.read_bytes() == before
    with pytest.raises(ValueError):
        synth.make_rtdc(tmp_path / "y.rtdc", 0)
    with pytest.raises(ValueError):
        synth.make_rtdc(tmp_path / "y.rtdc", 5, compression="brotli")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.rtdc"]  # no leftovers


def test_archive_layout_and_broken_files(tmp_path: Path) -> None:
    kw = {"events": (10, 80), "seed": 4, "compression": "none", "bad_files": 4,
          "image_shape": (40, 60), "with_traces": False}
    good = synth.make_archive(tmp_path / "arch", 9, **kw)
    assert len(good) == 9 and len(set(good)) == 9
    counts = []
    for path in good:
        rel = path.relative_to(tmp_path / "arch")
        assert len(rel.parts) == 3 and re.fullmatch(r"\d{4}-\d\d-\d\d", rel.parts[0])
        assert re.fullmatch(r"chip-[A-D]", rel.parts[1])
        assert re.fullmatch(r"M\d{3}_data\.rtdc", rel.parts[2])
        assert synth.broken_kind(path) is None
        with h5py.File(path) as h5:
            n = int(h5.attrs["experiment:event count"])
            assert h5["events/image"].shape[0] == n and h5.attrs["experiment:date"] == rel.parts[0]
        counts.append(n)
    assert min(counts) >= 10 and max(counts) <= 80 and len(set(counts)) > 3
    every = sorted((tmp_path / "arch").rglob("*.rtdc"))
    broken = [p for p in every if p not in good]
    assert [synth.broken_kind(p) for p in broken] == ["truncated", "not_hdf5", "no_events",
                                                      "truncated"]
    for path in broken:
        kind = synth.broken_kind(path)
        if kind == "not_hdf5":
            assert not h5py.is_hdf5(path)
        elif kind == "truncated":
            with pytest.raises(OSError):
                with h5py.File(path, "r") as h5:
                    h5["events/image"][:]
        else:
            with h5py.File(path, "r") as h5:
                assert "events" not in h5 and "experiment:date" in h5.attrs
    again = synth.make_archive(tmp_path / "again", 9, **kw)
    assert [p.relative_to(tmp_path / "again") for p in again] == \
        [p.relative_to(tmp_path / "arch") for p in good]
    assert _datasets(again[3])["events/image"].tobytes() == \
        _datasets(good[3])["events/image"].tobytes()
    with pytest.raises(OutputExistsError):
        synth.make_archive(tmp_path / "arch", 1, **kw)
    flat = synth.make_archive(tmp_path / "flat", 2, events=12, layout="flat",
                              image_shape=(40, 60), with_traces=False)
    assert [p.parent for p in flat] == [tmp_path / "flat"] * 2


def test_script_cli(tmp_path: Path) -> None:
    script = REPO / "scripts" / "make_archive.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cli"), "--files", "3",
                          "--events", "10:30", "--compression", "none", "--seed", "1",
                          "--image-shape", "40x60", "--bad-files", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    made = sorted((tmp_path / "cli").rglob("M*_data.rtdc"))
    assert len(made) == 3 and all(str(p.relative_to(tmp_path / "cli")) in out.stdout
                                  for p in made)
    assert "3 files" in out.stdout and "broken" in out.stdout
    single = subprocess.run([sys.executable, str(script), "--single", str(tmp_path / "one.rtdc"),
                             "--events", "25", "--image-shape", "40x60"],
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    with h5py.File(tmp_path / "one.rtdc") as h5:
        assert h5.attrs["experiment:event count"] == 25
    again = subprocess.run([sys.executable, str(script), "--single", str(tmp_path / "one.rtdc"),
                            "--events", "25"], capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "exist" in again.stderr
