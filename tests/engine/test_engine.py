"""The dask engine on a real distributed.LocalCluster (2 worker processes)."""
from __future__ import annotations

import os
import pathlib

import dask.array as da
import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.errors import (ChecksumMismatchError, ConversionError, OutputExistsError,
                           PlanError, UsageError)
from dcbulk.synth import make_rtdc
from dcbulk.write import HDF5Writer

from fixtures import small_rtdc
from helpers import assert_features_equal, dataset_names, verify_with_dclab


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory):
    """Uncompressed synthetic file: every feature must be encoded by the workers."""
    path = tmp_path_factory.mktemp("src") / "plain.rtdc"
    return small_rtdc(path, 333, seed=3, with_traces=True)


@pytest.fixture(scope="module")
def zstd_file(tmp_path_factory):
    """File written with HDF5Writer defaults: chunks can be copied as stored."""
    path = tmp_path_factory.mktemp("src") / "zstd.rtdc"
    return make_rtdc(path, 150, seed=4, compression="zstd:5")


def test_convert_plain_file_bit_identical_and_valid(client, plain_file, tmp_path):
    out = tmp_path / "out.rtdc"
    report = dcbulk.convert(plain_file, out, client=client, max_task_bytes=2 * 1024**2)
    assert report.events == 333 and out.exists()
    assert_features_equal(plain_file, out)
    assert {f["mode"] for f in report.features.values()} == {"encode"}
    assert report.compression_ratio > 1.0 and report.bytes_out == out.stat().st_size
    with h5py.File(out) as h5:
        dcpl = h5["events/image"].id.get_create_plist()
        assert dcpl.get_filter(0)[:3] == (32015, 1, (5,)) and h5["events/image"].fletcher32
        assert h5["events/image"].chunks == HDF5Writer.get_best_nd_chunks((80, 250), np.uint8)
        assert "dcbulk-convert" in h5["logs"]
    verify_with_dclab(out)
    assert not list(tmp_path.glob("*.partial"))


def test_encoded_chunks_equal_hdf5_own(client, plain_file, tmp_path):
    """Chunks encoded on workers equal what HDF5 writes itself, incl. the partial last one."""
    out = tmp_path / "out.rtdc"
    dcbulk.convert(plain_file, out, client=client)
    ref = tmp_path / "ref.rtdc"
    with h5py.File(plain_file) as src, HDF5Writer(ref, mode="w") as hw:
        for name in dataset_names(src["events"]):
            hw.store_feature_chunk(name, src["events"][name][:])
    with h5py.File(out) as a, h5py.File(ref) as b:
        for name in dataset_names(b["events"]):
            da_, db = a["events"][name], b["events"][name]
            assert da_.chunks == db.chunks
            n_chunks = db.id.get_num_chunks()
            assert n_chunks == da_.id.get_num_chunks() and n_chunks > 0
            for i in range(n_chunks):
                ia, ib = da_.id.get_chunk_info(i), db.id.get_chunk_info(i)
                assert ia.chunk_offset == ib.chunk_offset
                assert da_.id.read_direct_chunk(ia.chunk_offset) == \
                    db.id.read_direct_chunk(ib.chunk_offset), (name, i)


def test_convert_copies_archival_chunks_as_stored(client, zstd_file, tmp_path):
    out = tmp_path / "out.rtdc"
    report = dcbulk.convert(zstd_file, out, client=client)
    assert report.features["image"]["mode"] == "raw-copy"
    assert_features_equal(zstd_file, out)
    with h5py.File(zstd_file) as a, h5py.File(out) as b:
        ds_a, ds_b = a["events/image"], b["events/image"]
        for i in range(ds_a.id.get_num_chunks()):
            off = ds_a.id.get_chunk_info(i).chunk_offset
            assert ds_a.id.read_direct_chunk(off) == ds_b.id.read_direct_chunk(off)


@pytest.mark.parametrize("kind", ["sorted", "shuffled", "boolean"])
def test_convert_with_mapping(client, plain_file, tmp_path, kind):
    rng = np.random.default_rng(7)
    if kind == "boolean":
        mapping = rng.random(333) < 0.5
        index = np.flatnonzero(mapping)
    else:
        index = np.sort(rng.choice(333, 170, replace=False))
        if kind == "shuffled":
            index = rng.permutation(np.concatenate([index, index[:20]]))
        mapping = index
    out = tmp_path / "mapped.rtdc"
    report = dcbulk.convert(plain_file, out, client=client, mapping=mapping,
                            basin_to_source=True, max_task_bytes=1024**2)
    assert report.events == index.size
    with h5py.File(plain_file) as h5:
        others = [n for n in dataset_names(h5["events"]) if n != "index"]
    assert_features_equal(plain_file, out, index=index, features=others)
    with h5py.File(out) as h5:  # a mapped index is renumbered, as dclab requires
        np.testing.assert_array_equal(h5["events/index"][:], np.arange(1, index.size + 1))
    import dclab
    with dclab.new_dataset(out) as ds, dclab.new_dataset(plain_file) as src:
        assert len(ds) == index.size
        np.testing.assert_array_equal(ds["deform"], src["deform"][index])
        np.testing.assert_array_equal(ds["basinmap0"], index)
    verify_with_dclab(out)


def test_convert_basin_only_feature(client, plain_file, tmp_path):
    """A feature that lives only in a (mapped) basin is resolved and stored as data."""
    index = np.arange(0, 333, 3)
    mid = tmp_path / "mid.rtdc"
    dcbulk.convert(plain_file, mid, client=client, features=["deform"], mapping=index,
                   basin_to_source=True)
    out = tmp_path / "final.rtdc"
    dcbulk.convert(mid, out, client=client, features=["deform", "image"])
    with h5py.File(out) as h5, h5py.File(plain_file) as src:
        np.testing.assert_array_equal(h5["events/image"][:], src["events/image"][:][index])
        np.testing.assert_array_equal(h5["events/deform"][:], src["events/deform"][:][index])


def test_read_features_aligned_chunks(plain_file):
    arrays = dcbulk.read_features(plain_file, features=["image", "deform", "trace"])
    image = arrays["image"]
    assert image.chunks[0][0] == HDF5Writer.get_best_nd_chunks((80, 250), np.uint8)[0]
    assert set(arrays) >= {"image", "deform"} and any(k.startswith("trace/") for k in arrays)
    index = np.array([5, 3, 300, 3])
    mapped = dcbulk.read_features(plain_file, features=["image"], mapping=index)["image"]
    with h5py.File(plain_file) as h5:
        np.testing.assert_array_equal(image.compute(scheduler="sync"), h5["events/image"][:])
        np.testing.assert_array_equal(mapped.compute(scheduler="sync"),
                                      h5["events/image"][:][index])


def test_store_features_new_feature_with_basin(client, plain_file, tmp_path):
    arrays = dcbulk.read_features(plain_file, features=["deform", "area_um"])
    new = (arrays["deform"] * 2 + arrays["area_um"]).rechunk(77)
    out = tmp_path / "new.rtdc"
    report = dcbulk.store_features({"userdef1": new}, out, metadata_from=plain_file,
                                   client=client)
    assert report.events == 333
    with h5py.File(plain_file) as src, h5py.File(out) as h5:
        expect = src["events/deform"][:] * 2 + src["events/area_um"][:]
        np.testing.assert_array_equal(h5["events/userdef1"][:], expect)
        assert h5["events/userdef1"].chunks == (1000,)
    import dclab
    with dclab.new_dataset(out) as ds, dclab.new_dataset(plain_file) as src:
        np.testing.assert_array_equal(ds["image"][10], src["image"][10])


def test_store_features_rejects_bad_arrays(client, tmp_path):
    with pytest.raises(PlanError, match="differ in length"):
        dcbulk.store_features({"a": da.zeros(10), "b": da.zeros(11)}, tmp_path / "x.rtdc",
                              client=client)
    assert not (tmp_path / "x.rtdc").exists()


@pytest.mark.parametrize("inline", [False, True], ids=["cluster", "inline"])
def test_store_features_refuses_blocks_of_another_shape_than_declared(client, tmp_path,
                                                                     inline):
    """A ``map_blocks`` function returning fewer (more) rows than its array declares was
    stored as done: the missing rows zero-filled, the extra ones cut."""
    values = da.from_array(np.arange(3000, dtype=float), chunks=1000)
    for func in (lambda b: b[:-1], lambda b: np.concatenate([b, b])):
        with pytest.raises(ConversionError, match=r"feature 'userdef1': block 0 \(rows "
                           r"0\.\.2999\) holds shape \((2997|6000),\), its array declares "
                           r"\(3000,\)"):
            dcbulk.store_features({"userdef1": values.map_blocks(func, dtype=float)},
                                  tmp_path / "x.rtdc", client=None if inline else client,
                                  inline=inline)
        assert not (tmp_path / "x.rtdc").exists()


@pytest.mark.parametrize("inline", [False, True], ids=["cluster", "inline"])
def test_store_features_refuses_blocks_that_would_change_values(client, tmp_path, inline):
    """A ``map_blocks`` function returning floats for an array declared ``int16`` was stored
    truncated (91.19 as 91) and said done; a block that casts without loss is stored."""
    values = da.from_array(np.linspace(0, 99.5, 3000), chunks=1000)
    with pytest.raises(ConversionError, match=r"feature 'userdef1': block 0 \(rows "
                       r"0\.\.2999\) holds dtype float64, its array declares int16 "
                       r"\(storing would change values; return the declared dtype\)"):
        dcbulk.store_features({"userdef1": values.map_blocks(lambda b: b, dtype=np.int16)},
                              tmp_path / "x.rtdc", client=None if inline else client,
                              inline=inline)
    assert not (tmp_path / "x.rtdc").exists()
    widened = values.astype(np.float32).map_blocks(lambda b: b, dtype=np.float64)
    dcbulk.store_features({"userdef1": widened}, tmp_path / "y.rtdc",
                          client=None if inline else client, inline=inline)
    with h5py.File(tmp_path / "y.rtdc") as h5:
        assert h5["events/userdef1"].dtype == np.float64
        np.testing.assert_array_equal(h5["events/userdef1"][:],
                                      np.linspace(0, 99.5, 3000).astype(np.float32))


def test_convert_and_store_features_refuse_arguments_of_a_wrong_type(client, plain_file,
                                                                     tmp_path):
    """One line naming the argument (a list of arrays was an AttributeError, a list of
    sources pathlib's TypeError)."""
    arrays = dcbulk.read_features(plain_file, features=["deform"])
    out = tmp_path / "x.rtdc"
    calls = {("arrays", "list"): lambda: dcbulk.store_features(
                 list(arrays.values()), out, metadata_from=plain_file, client=client),
             ("metadata_from", "list"): lambda: dcbulk.store_features(
                 arrays, out, metadata_from=[plain_file], client=client),
             ("source", "list"): lambda: dcbulk.convert([plain_file], out, client=client),
             ("output", "NoneType"): lambda: dcbulk.convert(plain_file, None, client=client)}
    for words, call in calls.items():
        with pytest.raises(UsageError) as info:
            call()
        assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)
    assert not list(tmp_path.iterdir())


def test_store_features_refuses_names_that_are_paths_and_python_objects(client, plain_file,
                                                                         tmp_path):
    """A trace's ``trace/<name>`` is stored, ``../x`` (was ``events/../x``) and Python
    objects (dask's bare NotImplementedError) are refused in one line naming the feature."""
    arrays = dcbulk.read_features(plain_file, features=["deform", "trace"])
    trace = next(name for name in arrays if name.startswith("trace/"))
    out = tmp_path / "x.rtdc"
    dcbulk.store_features({trace: arrays[trace]}, out, metadata_from=plain_file, client=client)
    with h5py.File(out) as h5, h5py.File(plain_file) as src:
        np.testing.assert_array_equal(h5["events"][trace][:], src["events"][trace][:])
    objects = np.array([object()] * arrays["deform"].shape[0])
    for new, words in [({"../x": arrays["deform"]}, ("'../x'", "'..'")),
                       ({"userdef1": objects}, ("'userdef1'", "Python objects"))]:
        with pytest.raises(PlanError) as info:
            dcbulk.store_features(new, tmp_path / "y.rtdc", metadata_from=plain_file,
                                  client=client)
        assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.rtdc"]


def _corrupt_chunk(path: pathlib.Path, name: str, index: int) -> None:
    with h5py.File(path) as h5:
        info = h5[name].id.get_chunk_info(index)
    with open(path, "r+b") as fd:
        fd.seek(info.byte_offset + info.size // 2)
        data = fd.read(16)
        fd.seek(info.byte_offset + info.size // 2)
        fd.write(bytes(b ^ 0xFF for b in data))


def test_worker_error_reaches_caller_and_leaves_no_output(client, tmp_path):
    src = make_rtdc(tmp_path / "bad.rtdc", 200, seed=5, compression="zstd:1")
    _corrupt_chunk(src, "events/image", 1)
    out = tmp_path / "out" / "bad.rtdc"
    with pytest.raises(ConversionError) as err:
        dcbulk.convert(src, out, client=client)
    assert "bad.rtdc" in str(err.value) and "image" in str(err.value)
    assert not out.exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_existing_output_is_refused(client, plain_file, tmp_path):
    out = tmp_path / "out.rtdc"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        dcbulk.convert(plain_file, out, client=client)
    assert out.read_bytes() == b"keep me"
    dcbulk.convert(plain_file, out, client=client, overwrite=True, features=["deform"])
    with h5py.File(out) as h5:
        assert list(h5["events"]) == ["deform"]


def test_convert_sample_files(client, sample_files, tmp_path):
    for path in sample_files:
        out = tmp_path / path.name
        dcbulk.convert(path, out, client=client)
        assert_features_equal(path, out)


def _stored_chunks(path) -> dict[str, list[bytes]]:
    """The stored bytes of every chunk of every dataset under ``events``, in index order."""
    out = {}
    with h5py.File(path) as h5:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.chunks is not None:
                infos = [obj.id.get_chunk_info(i) for i in range(obj.id.get_num_chunks())]
                out[name] = [obj.id.read_direct_chunk(info.chunk_offset) for info in
                             sorted(infos, key=lambda info: info.chunk_offset)]
        h5["events"].visititems(visit)
    return out


@pytest.mark.parametrize("mapped", [False, True])
def test_inline_writer_builds_no_graph_and_matches_cluster(plain_file, tmp_path, client,
                                                           monkeypatch, mapped):
    """A small file's writer computes its blocks itself, without a dask graph, and stores
    the very bytes the cluster's tasks store (encoded, raw-copied and gathered chunks)."""
    from dcbulk.codec import parse_compression
    from dcbulk.engine import writer
    from dcbulk.engine.api import submit_conversion
    from dcbulk.plan import plan_conversion
    from dcbulk.read.inspect import inspect_source
    compressed = make_rtdc(tmp_path / "zstd5.rtdc", 300, seed=4, compression="zstd:5",
                           with_contour=True)
    for k, source in enumerate([plain_file, compressed]):
        info = inspect_source(source)
        mapping = np.arange(info.n_events)[::3][::-1] if mapped else None

        def plan(name):
            return plan_conversion(info, str(tmp_path / f"{k}-{name}.rtdc"), mapping=mapping,
                                   codec=parse_compression("zstd:5"))
        on_cluster = submit_conversion(client, plan("cluster")).result()
        with monkeypatch.context() as m:
            m.setattr(writer, "plan_arrays", lambda *a: pytest.fail("inline built a graph"))
            inline = writer.write_output(plan("inline"), inline=True)
        assert inline.inline and not on_cluster.inline
        assert inline.events == on_cluster.events == (mapping.size if mapped else
                                                      info.n_events)
        assert any(st["mode"] == "raw-copy" for st in inline.features.values()) == (
            k == 1 and not mapped)
        assert _stored_chunks(tmp_path / f"{k}-inline.rtdc") == \
            _stored_chunks(tmp_path / f"{k}-cluster.rtdc")
        with h5py.File(source) as h5:  # a mapped index is renumbered 1..n (dclab's rule)
            kept = [f for f in dataset_names(h5["events"]) if not f.startswith("basinmap")
                    and not (mapped and (f == "index" or f.startswith("contour/")))]
        assert_features_equal(source, tmp_path / f"{k}-inline.rtdc", index=mapping,
                              features=kept)


def _windowed_probe(n_jobs: int, window: int) -> tuple[int, list[int]]:
    """Runs inside a task: count jobs in flight while consuming run_windowed's results."""
    from dcbulk.engine.window import run_windowed
    state = {"submitted": 0, "consumed": 0, "max": 0}

    def job(i, client):
        state["submitted"] += 1
        state["max"] = max(state["max"], state["submitted"] - state["consumed"])
        return client.submit(lambda x: x * x, i, pure=False)

    import functools
    results = []
    for tag, value in run_windowed(((i, functools.partial(job, i)) for i in range(n_jobs)),
                                   window=window):
        state["consumed"] += 1
        assert value == tag * tag
        results.append(value)
    return state["max"], sorted(results)


def test_writer_window_bounds_tasks_in_flight(client):
    max_in_flight, results = client.submit(_windowed_probe, 40, 3, pure=False).result()
    assert results == sorted(i * i for i in range(40))
    assert max_in_flight == 3


def test_contours_follow_the_mapping(client, tmp_path):
    src = make_rtdc(tmp_path / "contour.rtdc", 40, seed=8, compression="none",
                    with_contour=True)
    index = np.array([39, 3, 3, 17])
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out, client=client, mapping=index)
    with h5py.File(src) as a, h5py.File(out) as b:
        assert len(b["events/contour"]) == index.size
        for j, i in enumerate(index):
            np.testing.assert_array_equal(b["events/contour"][str(j)][:],
                                          a["events/contour"][str(i)][:])


def test_internal_basin_feature_is_resolved(client, tmp_path):
    """A feature stored in basin_events and mapped by basinmapN reads as source events."""
    path = tmp_path / "internal.rtdc"
    rng = np.random.default_rng(1)
    deform = rng.random(50)
    values = np.array([10.0, 20.0, 30.0])
    mapping = rng.integers(0, 3, 50)
    with HDF5Writer(path, mode="w") as hw:
        hw.store_feature_chunk("deform", deform)
        hw.store_basin(name="bg", internal_data={"userdef2": values}, mapping=mapping)
    arrays = dcbulk.read_features(path, features=["userdef2", "deform"])
    np.testing.assert_array_equal(arrays["userdef2"].compute(), values[mapping])
    out = tmp_path / "out.rtdc"
    index = np.arange(0, 50, 5)
    dcbulk.convert(path, out, client=client, features=["deform", "userdef2"], mapping=index)
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["events/userdef2"][:], values[mapping][index])
        np.testing.assert_array_equal(h5["events/deform"][:], deform[index])
        # the internal basin itself is carried over with its map composed with the mapping
        np.testing.assert_array_equal(h5["basin_events/userdef2"][:], values)
        names = [k for k in h5["events"] if k.startswith("basinmap")]
        assert len(names) == 1
        np.testing.assert_array_equal(h5["events"][names[0]][:], mapping[index])


def test_store_encoded_chunk_equals_hdf5_filter_pipeline(tmp_path):
    """HDF5Writer.store_encoded_chunk + codec bytes decode like a normal store."""
    from dcbulk.codec import encode_chunks, parse_compression
    rng = np.random.default_rng(2)
    data = rng.integers(0, 255, size=(130, 80, 250), dtype=np.uint8)
    codec = parse_compression("zstd:5")
    with HDF5Writer(tmp_path / "d.rtdc", mode="w") as hw:
        ds, _ = hw.require_feature("image", (80, 250), np.uint8)
        ds.resize(130, axis=0)
        rows = ds.chunks[0]
        for i, (mask, raw) in enumerate(encode_chunks(data, rows, codec)):
            hw.store_encoded_chunk("image", i, raw, mask)
        with pytest.raises(ValueError, match="beyond"):
            hw.store_encoded_chunk("image", 99, b"x")
    with h5py.File(tmp_path / "d.rtdc") as h5:
        np.testing.assert_array_equal(h5["events/image"][:], data)


def test_store_encoded_chunk_through_dataset_handle(tmp_path):
    """The writer loop stores through the dataset itself: same data, other files refused."""
    from dcbulk.codec import encode_chunks, parse_compression
    data = np.random.default_rng(3).random(25000)
    codec = parse_compression("zstd:5")
    with HDF5Writer(tmp_path / "d.rtdc", mode="w") as hw, \
            HDF5Writer(tmp_path / "other.rtdc", mode="w") as other:
        ds, _ = hw.require_feature("deform", (), np.float64)
        ds.resize(data.size, axis=0)
        for i, (mask, raw) in enumerate(encode_chunks(data, ds.chunks[0], codec)):
            assert hw.store_encoded_chunk(ds, i, raw, mask) == len(raw)
        foreign, _ = other.require_feature("deform", (), np.float64)
        foreign.resize(data.size, axis=0)
        with pytest.raises(ValueError, match="is not in"):
            hw.store_encoded_chunk(foreign, 0, raw, mask)
        with pytest.raises(ValueError, match="beyond"):
            hw.store_encoded_chunk(ds, 99, raw, mask)
    with h5py.File(tmp_path / "d.rtdc") as h5:
        np.testing.assert_array_equal(h5["events/deform"][:], data)


def _damaged_archival_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """zstd:5+fletcher32 (copied as stored) with 16 bytes overwritten in image chunk 1."""
    (tmp_path / "src").mkdir(exist_ok=True)
    src = make_rtdc(tmp_path / "src" / "damaged.rtdc", 200, seed=6, compression="zstd:5")
    _corrupt_chunk(src, "events/image", 1)
    return src


def test_damaged_stored_chunk_fails_the_file_and_leaves_no_output(client, tmp_path):
    """Defect 9.1: a raw-copied chunk is proven sound first; today it is copied as is."""
    src = _damaged_archival_file(tmp_path)
    out = tmp_path / "out" / "damaged.rtdc"
    with pytest.raises(ChecksumMismatchError) as err:
        dcbulk.convert(src, out, client=client)
    message = str(err.value)
    assert "\n" not in message
    assert "damaged.rtdc" in message and "'image'" in message and "chunk 1 " in message
    assert not out.exists() and not list(out.parent.glob("*"))


def test_damaged_stored_chunk_fails_that_file_of_an_archive(client, tmp_path):
    src = _damaged_archival_file(tmp_path)
    good = make_rtdc(tmp_path / "src" / "good.rtdc", 120, seed=7, compression="zstd:5")
    dst = tmp_path / "dst"
    report = dcbulk.convert_archive([src.parent], dst, client=client)
    assert report.count("failed") == 1 and report.count("done") == 1
    (failed,) = report.failed
    assert failed.source == str(src) and "'image'" in failed.error and "chunk 1 " in failed.error
    assert not (dst / "damaged.rtdc").exists() and not list(dst.glob("*.partial"))
    assert_features_equal(good, dst / "good.rtdc")


def test_read_features_and_convert_agree_on_a_mapped_index(client, plain_file, tmp_path):
    mapping = [5, 3, 300]
    index = dcbulk.read_features(plain_file, ["index"], mapping=mapping)["index"]
    np.testing.assert_array_equal(index.compute(), [1, 2, 3])
    out = tmp_path / "m.rtdc"
    dcbulk.convert(plain_file, out, client=client, features=["index"], mapping=mapping)
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["events/index"][:], index.compute())


def test_store_features_writes_a_filtered_subset(client, plain_file, tmp_path):
    """Defect 9.9: store_features(mapping=) with a basin carrying the mapping to the source."""
    keep = np.random.default_rng(3).random(333) < 0.4
    arrays = dcbulk.read_features(plain_file, ["deform", "area_um"], mapping=keep)
    out = tmp_path / "subset.rtdc"
    report = dcbulk.store_features({"userdef1": arrays["deform"] * 2, "area_um": arrays["area_um"]},
                                   out, metadata_from=plain_file, mapping=keep, client=client)
    assert report.events == keep.sum()
    import dclab
    with dclab.new_dataset(out) as ds, dclab.new_dataset(plain_file) as src:
        assert len(ds) == keep.sum()
        np.testing.assert_array_equal(ds["userdef1"], src["deform"][keep] * 2)
        np.testing.assert_array_equal(ds["area_um"], src["area_um"][keep])
        # features of the source reached through the mapped basin are the kept events'
        np.testing.assert_array_equal(ds["image"][3], src["image"][np.flatnonzero(keep)[3]])
        np.testing.assert_array_equal(ds["bright_avg"], src["bright_avg"][keep])
    with pytest.raises(PlanError, match="mapping selects"):
        dcbulk.store_features({"userdef1": arrays["deform"]}, tmp_path / "x.rtdc",
                              metadata_from=plain_file, mapping=~keep, client=client)


@pytest.mark.parametrize("dtype, value", [
    ("uint64", 2.0**64), ("int64", 2.0**63), ("int64", -2.0**63 - 2048), ("uint32", 2.0**32),
    ("int32", 2.0**31), ("uint64", -1.0), ("int16", np.float32(2.0**15))])
def test_as_dtype_refuses_the_first_float_outside_an_integer_range(dtype, value):
    """``rows > iinfo.max`` compared with a float that rounds to 2**64 (2**63 for int64),
    so exactly 2**64 passed and became 0 as uint64 (2**63: -2**63 as int64)."""
    from dcbulk.engine.columns import as_dtype
    rows = np.array([1, value], dtype=np.asarray(value).dtype)
    with pytest.raises(ConversionError, match=f"feature 'frame' holds .*outside {dtype}"):
        as_dtype(rows, dtype, "in.rtdc", "frame")


@pytest.mark.parametrize("dtype, value", [
    ("uint64", 2.0**64 - 2048), ("int64", 2.0**63 - 1024), ("int64", -2.0**63),
    ("uint32", 2.0**32 - 1), ("int32", -2.0**31), ("int16", np.float32(2**15 - 1))])
def test_as_dtype_keeps_the_last_floats_inside_an_integer_range(dtype, value):
    from dcbulk.engine.columns import as_dtype
    rows = np.array([1, value], dtype=np.asarray(value).dtype)
    got = as_dtype(rows, dtype, "in.rtdc", "frame")
    assert got.dtype == np.dtype(dtype) and int(got[1]) == int(value)
