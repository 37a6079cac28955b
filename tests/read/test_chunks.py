"""Rows of compressed sources decoded by numcodecs outside HDF5's lock (read.chunks)."""
from __future__ import annotations

import threading

import h5py
import hdf5plugin
import numpy as np
import pytest

from dcbulk.errors import ChecksumMismatchError, SourceError
from dcbulk.read import chunks as read_chunks
from dcbulk.read.chunks import gather_rows, read_rows

FILTERS = {
    "zstd:5+fletcher32": dict(hdf5plugin.Zstd(clevel=5), fletcher32=True),
    "zstd:1": dict(hdf5plugin.Zstd(clevel=1)),
    "gzip:6+fletcher32": dict(compression="gzip", compression_opts=6, fletcher32=True),
    "gzip:0": dict(compression="gzip", compression_opts=0),
    "none+fletcher32": dict(fletcher32=True),
    "plain": {},
}


@pytest.fixture(scope="module")
def images(shared_data_dir) -> np.ndarray:
    with h5py.File(shared_data_dir / "cytoshot-test-data.rtdc") as h5:
        return np.concatenate([h5["events/image"][:]] * 3)  # 120 real images


def _write(path, data, chunk_rows, **kwds):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=data, chunks=(chunk_rows,) + data.shape[1:], **kwds)


@pytest.mark.parametrize("name", FILTERS)
def test_read_rows_decodes_with_numcodecs(tmp_path, images, monkeypatch, name):
    """Every slice (chunk edges, short last chunk) equals h5py's; h5py reads no rows (plain
    chunks too: HDF5's own read of them is several times slower than a stored chunk)."""
    _write(tmp_path / "s.h5", images, 32, **FILTERS[name])
    with h5py.File(tmp_path / "s.h5") as h5:
        ds = h5["x"]
        assert read_chunks._decoder(ds) is not None
        want = ds[:]
        calls = []
        monkeypatch.setattr(h5py.Dataset, "__getitem__",
                            lambda self, key: calls.append(key) or want[key])
        for start, stop in [(0, 120), (5, 37), (31, 33), (64, 96), (100, 120), (119, 500),
                            (7, 7)]:
            got = read_rows(ds, start, stop)
            assert got.dtype == want.dtype and np.array_equal(got, want[start:stop])
        rows = np.array([119, 3, 3, 64, 0, 95])
        assert np.array_equal(gather_rows(ds, rows), want[rows])
        assert calls == []


@pytest.mark.parametrize("dtype", [">f8", "<i2", "S7", [("a", "<u2"), ("b", ">f4")]])
def test_read_rows_of_stored_plain_chunks_keep_the_files_bytes(tmp_path, dtype):
    """Stored plain chunks of any byte order or record layout decode to h5py's rows."""
    rng = np.random.default_rng(3)
    data = np.frombuffer(rng.integers(0, 255, 50 * 3 * np.dtype(dtype).itemsize,
                                      dtype=np.uint8).tobytes(), dtype=dtype).reshape(50, 3)
    _write(tmp_path / "p.h5", data, 8)
    with h5py.File(tmp_path / "p.h5") as h5:
        ds = h5["x"]
        assert read_chunks._decoder(ds) == ()
        want = ds[:]
        for start, stop in [(0, 50), (3, 21), (47, 60)]:
            got = read_rows(ds, start, stop)
            assert got.dtype == want.dtype and got.tobytes() == want[start:stop].tobytes()


def test_read_rows_falls_back_to_h5py(tmp_path, images):
    """Filters numcodecs cannot decode, a fill value, contiguous data and unwritten chunks
    go through h5py."""
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5.create_dataset("filled", data=images, chunks=(32, 80, 400), fillvalue=7)
        h5.create_dataset("lz4", data=images, chunks=(32, 80, 400), **hdf5plugin.LZ4())
        h5.create_dataset("contiguous", data=images)
        part = h5.create_dataset("sparse", shape=images.shape, dtype=np.uint8,
                                 chunks=(32, 80, 400), **hdf5plugin.Zstd())
        part[40:60] = images[40:60]  # chunks 0, 2, 3 never written
    with h5py.File(tmp_path / "f.h5") as h5:
        for name in ("filled", "lz4", "contiguous"):
            assert read_chunks._decoder(h5[name]) is None
            assert np.array_equal(read_rows(h5[name], 10, 100), images[10:100])
        want = h5["sparse"][:]
        assert np.array_equal(read_rows(h5["sparse"], 0, 120), want)
        assert not want[:32].any() and np.array_equal(want[40:60], images[40:60])


def test_read_rows_damaged_chunk_names_file_dataset_and_chunk(tmp_path, images):
    _write(tmp_path / "d.h5", images, 32, **FILTERS["zstd:5+fletcher32"])
    with h5py.File(tmp_path / "d.h5", "r+") as h5:
        mask, raw = h5["x"].id.read_direct_chunk((64, 0, 0))
        raw = raw[:100] + bytes(b ^ 0xFF for b in raw[100:110]) + raw[110:]
        h5["x"].id.write_direct_chunk((64, 0, 0), raw, mask)
    with h5py.File(tmp_path / "d.h5") as h5:
        assert np.array_equal(read_rows(h5["x"], 0, 64), images[:64])
        with pytest.raises(ChecksumMismatchError, match=r"d.h5: '/x' chunk 2 is damaged"):
            read_rows(h5["x"], 60, 70)


@pytest.mark.parametrize("rows", [slice(32, 48), slice(32, 80)])
def test_read_rows_into_a_buffer_never_keeps_what_a_short_chunk_left(tmp_path, images, rows):
    """A whole zstd chunk decodes straight into the caller's buffer; one whose frame holds
    half or 1.5 chunks (its checksum right) is damaged, even where the buffer already holds
    the rows it should have given."""
    from numcodecs import Zstd

    from dcbulk.codec.fletcher import Fletcher32
    from dcbulk.codec.into import zstd_content_size
    _write(tmp_path / "h.h5", images, 32, **FILTERS["zstd:5+fletcher32"])
    frame = Zstd(level=5).encode(images[rows])
    assert zstd_content_size(frame) == images[rows].nbytes
    with h5py.File(tmp_path / "h.h5", "r+") as h5:
        h5["x"].id.write_direct_chunk((32, 0, 0), Fletcher32().encode(frame), 0)
    buf = images[:96].copy()  # what a reused buffer may hold: the right rows
    with h5py.File(tmp_path / "h.h5") as h5:
        assert np.array_equal(read_rows(h5["x"], 0, 32, out=buf[:32]), images[:32])
        with pytest.raises(ChecksumMismatchError, match="chunk 1 is damaged"):
            read_rows(h5["x"], 0, 96, out=buf)


def test_read_rows_in_parallel_threads(tmp_path, images):
    _write(tmp_path / "t.h5", images, 16, **FILTERS["zstd:5+fletcher32"])
    results = {}

    def work(i):
        with h5py.File(tmp_path / "t.h5") as h5:
            results[i] = read_rows(h5["x"], 0, 120)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, images) for r in results.values()) and len(results) == 3


@pytest.mark.parametrize("name", ["zstd:5+fletcher32", "plain"])
def test_read_rows_into_a_reused_buffer(tmp_path, images, name):
    _write(tmp_path / "b.h5", images, 32, **FILTERS.get(name, {}))
    buf = np.full((50, 80, 400), 7, dtype=np.uint8)
    with h5py.File(tmp_path / "b.h5") as h5:
        got = read_rows(h5["x"], 20, 70, out=buf)
    assert got is buf and np.array_equal(buf, images[20:70])


def test_read_rows_with_the_inspections_ref_never_decodes_a_changed_dataset_wrong(
        tmp_path, images):
    """``ref`` (the inspection's description) spares HDF5's creation properties; a dataset
    rewritten since with other filters or chunks fails with one line saying so (never
    "damaged", never wrong rows); one rewritten with the same reads as it is now."""
    from dcbulk.read.inspect import describe_dataset
    path = tmp_path / "s.h5"
    _write(path, images, 32, **FILTERS["zstd:5+fletcher32"])
    with h5py.File(path) as h5:
        ref = describe_dataset(path, h5["x"], "x")
        assert np.array_equal(read_rows(h5["x"], 5, 100, ref=ref), images[5:100])
        assert np.array_equal(gather_rows(h5["x"], np.array([99, 3, 64]), ref),
                              images[[99, 3, 64]])
    later = images[::-1].copy()
    _write(path, later, 32, **FILTERS["zstd:5+fletcher32"])
    with h5py.File(path) as h5:
        assert np.array_equal(read_rows(h5["x"], 5, 100, ref=ref), later[5:100])
    for kwds, chunk_rows in [(FILTERS["gzip:6+fletcher32"], 32), (FILTERS["zstd:1"], 32),
                             ({}, 32), (FILTERS["none+fletcher32"], 32),
                             (FILTERS["zstd:5+fletcher32"], 16),
                             (FILTERS["zstd:5+fletcher32"], 64)]:
        _write(path, later, chunk_rows, **kwds)
        with h5py.File(path) as h5, pytest.raises(SourceError, match="rewritten with other "
                                                  "filters or chunks after it was inspected"):
            read_rows(h5["x"], 5, 100, ref=ref)
