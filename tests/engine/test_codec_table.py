"""The codec table: every ``--compression`` choice stores exactly the chunks h5py writes
with hdf5plugin's own filter classes, and numcodecs encodes where the table says so.

The reference files are written by h5py with ``hdf5plugin.Zstd``, ``LZ4``, ``Blosc2``,
``Bitshuffle``, ``compression="gzip"`` and ``fletcher32=`` spelled out here, never with
dcbulk's own ``ds_kwds()``; chunks are compared with ``read_direct_chunk``, short last
chunk included, on real image and scalar data of the sample files.
"""
from __future__ import annotations

import threading

import h5py
import hdf5plugin
import numpy as np
import pytest

import dcbulk
from dcbulk.codec import (COMPRESSION_CHOICES, COMPRESSORS, FILTER_NAMES, ChunkCodec,
                          choices_text, decode_stored_chunks, encode_chunks, encodes_in_threads,
                          parse_compression)
from dcbulk.codec import hdf5 as codec_hdf5
from dcbulk.errors import ChecksumMismatchError
from dcbulk.write import HDF5Writer

#: the h5py keywords of each choice, written out with hdf5plugin's classes (not dcbulk's)
REFERENCE = {
    "zstd": lambda level: dict(hdf5plugin.Zstd(clevel=level)),
    "gzip": lambda level: {"compression": "gzip", "compression_opts": level},
    "lz4": lambda level: dict(hdf5plugin.LZ4()),
    "blosc2-zstd": lambda level: dict(hdf5plugin.Blosc2(
        cname="zstd", clevel=level, filters=hdf5plugin.Blosc2.SHUFFLE)),
    "blosc2-lz4": lambda level: dict(hdf5plugin.Blosc2(
        cname="lz4", clevel=level, filters=hdf5plugin.Blosc2.SHUFFLE)),
    "bitshuffle-zstd": lambda level: dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=level)),
    "bitshuffle-lz4": lambda level: dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "none": lambda level: {},
}

#: (spec, level): every choice at its default and at both ends of its levels
SPECS = sorted({(row.name, level) for row in COMPRESSORS
                for level in ([row.default] if row.levels is None else
                              [row.levels.start, row.default, row.levels.stop - 1])}
               | {("zstd", 12), ("zstd", 13), ("gzip", 1)})


def _spec(name: str, level: int) -> str:
    return name if parse_compression(name).row.levels is None else f"{name}:{level}"


@pytest.fixture(scope="module")
def real_data(shared_data_dir) -> dict[str, np.ndarray]:
    """Image, mask and scalars of a real sample file; scalars repeated past one chunk."""
    with h5py.File(shared_data_dir / "cytoshot-test-data.rtdc") as h5:
        ev = h5["events"]
        image, mask = ev["image"][:], ev["mask"][:]
        scalars = {k: ev[k][:] for k in ("deform", "area_um", "bright_avg")}
    out = {"image": image, "mask": mask}
    for name, values in scalars.items():  # 40 real values -> 2345 rows: 3 chunks, short last
        out[name] = np.resize(values, 2345)
    out["index"] = np.arange(1, 2346, dtype=np.uint64)
    # traces (int16): the sample files have none with events; built from real image rows
    out["trace"] = np.resize(image.astype(np.int16).reshape(-1, 200) * 7 - 300, (1300, 177))
    return out


def _reference_chunks(path, data: np.ndarray, chunks, kwds: dict, fletcher32: bool) -> list:
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=data, chunks=chunks, maxshape=(None,) + data.shape[1:],
                          fletcher32=fletcher32, **kwds)
    with h5py.File(path) as h5:
        dset = h5["x"]
        tail = (0,) * (data.ndim - 1)
        return [dset.id.read_direct_chunk((s,) + tail) for s in range(0, len(data), chunks[0])]


def _dcbulk_chunks(path, name: str, data: np.ndarray, codec: ChunkCodec) -> list:
    """Encode with dcbulk, store through HDF5Writer, read the stored chunks back."""
    chunks = HDF5Writer.get_best_nd_chunks(data.shape[1:], data.dtype)
    with HDF5Writer(path, mode="w") as hw:
        ds, _ = hw.require_feature(name, data.shape[1:], data.dtype, ds_kwds=codec.ds_kwds())
        ds.resize(len(data), axis=0)
        for k, (mask, raw) in enumerate(encode_chunks(data, chunks[0], codec)):
            hw.store_encoded_chunk(ds, k, raw, mask)
    with h5py.File(path) as h5:
        dset = h5["events"][name]
        assert np.array_equal(dset[:], data)  # HDF5 decodes what dcbulk stored
        tail = (0,) * (data.ndim - 1)
        return [dset.id.read_direct_chunk((s,) + tail) for s in range(0, len(data), chunks[0])]


def test_reference_covers_the_table():
    """A new table row fails here until the test knows its hdf5plugin reference."""
    assert set(REFERENCE) == {row.name for row in COMPRESSORS}
    assert COMPRESSION_CHOICES == tuple(row.spec_text() for row in COMPRESSORS)
    assert all(row.name in choices_text() for row in COMPRESSORS)


@pytest.mark.parametrize("fletcher32", [True, False], ids=["fletcher32", "plain"])
@pytest.mark.parametrize("name,level", SPECS, ids=lambda v: str(v))
def test_every_choice_stores_hdf5plugins_bytes(tmp_path, real_data, name, level, fletcher32):
    codec = parse_compression(_spec(name, level), fletcher32=fletcher32)
    assert (codec.compression or "none", codec.level or level) == (name, level) or \
        codec.row.levels is None
    for feature, data in real_data.items():
        chunks = HDF5Writer.get_best_nd_chunks(data.shape[1:], data.dtype)
        assert len(data) % chunks[0], f"{feature}: the last chunk must be short"
        ref = _reference_chunks(tmp_path / "ref.h5", data, chunks, REFERENCE[name](level),
                                fletcher32)
        mine = _dcbulk_chunks(tmp_path / "mine.rtdc", feature, data, codec)
        assert len(mine) == len(ref) >= 2
        for k, (a, b) in enumerate(zip(mine, ref)):
            assert a == b, (f"{codec.describe()} {feature} chunk {k}: "
                            f"{len(a[1])} vs {len(b[1])} bytes")


def test_numcodecs_encodes_where_the_table_says(monkeypatch, real_data):
    """zstd 1-12, gzip 1-9 and none (with or without Fletcher-32) never touch HDF5."""
    def refuse(*args, **kwargs):
        raise AssertionError("encoded through HDF5")

    data = real_data["image"]
    threaded = [parse_compression(spec, fletcher32=fletcher32)
                for spec in ("zstd:1", "zstd:5", "zstd:12", "gzip:1", "gzip:9", "none")
                for fletcher32 in (True, False)]
    for codec in threaded:  # (its once-per-process check against HDF5 runs here)
        assert encodes_in_threads(codec, data.dtype)
    monkeypatch.setattr(codec_hdf5, "encode_chunks", refuse)
    for codec in threaded:
        assert len(encode_chunks(data, 32, codec)) == 2
    for spec in ("zstd:13", "gzip:0", "lz4", "blosc2-zstd", "bitshuffle-lz4"):
        codec = parse_compression(spec)
        assert not encodes_in_threads(codec, data.dtype)
        with pytest.raises(AssertionError, match="through HDF5"):
            encode_chunks(data, 32, codec)
    records = np.zeros(10, dtype=[("a", "<i2"), ("b", "<f8")])
    assert not encodes_in_threads(parse_compression("zstd"), records.dtype)


def test_a_numcodecs_that_disagrees_with_hdf5_is_not_used(monkeypatch, real_data, caplog):
    """Should the installed numcodecs stop giving HDF5's bytes (a library update), dcbulk
    notices in the process, says so once, and encodes through HDF5 instead."""
    import logging

    import numcodecs

    from dcbulk.codec import encode as codec_encode
    codec = parse_compression("zstd:5")
    data = real_data["image"]
    expect = codec_hdf5.encode_chunks(data, 32, codec)
    monkeypatch.setattr(ChunkCodec, "numcodecs_pipeline",  # other bytes (zstd level 3)
                        lambda self, exact=True: (numcodecs.Zstd(level=3),
                                                  numcodecs.Fletcher32()))
    codec_encode.agrees_with_hdf5.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=codec_encode.__name__):
            assert not encodes_in_threads(codec, data.dtype)
            assert encode_chunks(data, 32, codec) == expect
            assert encode_chunks(data, 32, codec) == expect
        assert caplog.text.count("does not give HDF5's bytes") == 1
    finally:
        codec_encode.agrees_with_hdf5.cache_clear()


def test_numcodecs_encoding_runs_in_parallel_threads(real_data):
    """Two threads encoding at once give the same bytes as one (no shared state)."""
    data = np.concatenate([real_data["image"]] * 4)
    codec = ChunkCodec()
    serial = encode_chunks(data, 32, codec)
    results, barrier = [None, None], threading.Barrier(2)

    def work(i):
        barrier.wait()
        results[i] = encode_chunks(data, 32, codec)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [serial, serial]


def test_info_filter_names_follow_the_table():
    for row in COMPRESSORS:
        if row.filter_id is not None:
            assert FILTER_NAMES[row.filter_id] == row.filter_name
    assert FILTER_NAMES[3] == "fletcher32" and FILTER_NAMES[2] == "shuffle"


@pytest.mark.parametrize("spec", ["zstd:5", "zstd:1", "gzip:6", "gzip:0", "none"])
@pytest.mark.parametrize("fletcher32", [True, False], ids=["fletcher32", "plain"])
def test_numcodecs_proof_of_stored_chunks(tmp_path, real_data, spec, fletcher32):
    """Stored chunks checked without HDF5: sound ones pass, a damaged one names its index."""
    codec = parse_compression(spec, fletcher32=fletcher32)
    data = real_data["image"]
    ref = _reference_chunks(tmp_path / "d.h5", data, (32, 80, 400),
                            REFERENCE[spec.split(":")[0]](codec.level), fletcher32)
    with h5py.File(tmp_path / "d.h5") as h5:
        dcpl = h5["x"].id.get_create_plist()
        assert ChunkCodec.from_dataset(h5["x"]) == codec
    assert codec.numcodecs_pipeline(exact=False) is not None
    decode_stored_chunks(ref, dcpl, np.uint8, data.shape, label="d.h5: feature 'image'",
                         first_chunk=3, codec=codec)
    mask, raw = ref[1]
    mid = len(raw) // 2
    damaged = [ref[0], (mask, raw[:mid] + bytes(b ^ 0x5A for b in raw[mid:mid + 8])
                        + raw[mid + 8:])]
    if fletcher32:  # without the checksum a flipped byte may still decompress (as in HDF5)
        with pytest.raises(ChecksumMismatchError,
                           match=r"d.h5: feature 'image': stored chunk 4 "):
            decode_stored_chunks(damaged, dcpl, np.uint8, data.shape,
                                 label="d.h5: feature 'image'", first_chunk=3, codec=codec)
    truncated = [(mask, raw[:-10])]
    with pytest.raises(ChecksumMismatchError, match="stored chunk 3 "):
        decode_stored_chunks(truncated, dcpl, np.uint8, data.shape, label="t", first_chunk=3,
                             codec=codec)


@pytest.mark.parametrize("name,level", [s for s in SPECS if s[1] in (5, 4, 0, 13)],
                         ids=lambda v: str(v))
def test_convert_stores_hdf5plugins_bytes(client, shared_data_dir, tmp_path, name, level):
    """The whole engine (workers encode, one writer stores) on a real sample file."""
    src = shared_data_dir / "cytoshot-test-data.rtdc"
    out = tmp_path / "out.rtdc"
    spec = _spec(name, level)
    dcbulk.convert(src, out, client=client, compression=spec,
                   features=["image", "mask", "deform", "area_um"])
    with h5py.File(src) as h5s, h5py.File(out) as h5o:
        for feature in ("image", "mask", "deform", "area_um"):
            data = h5s["events"][feature][:]
            dset = h5o["events"][feature]
            ref = _reference_chunks(tmp_path / "ref.h5", data, dset.chunks,
                                    REFERENCE[name](level), True)
            tail = (0,) * (data.ndim - 1)
            mine = [dset.id.read_direct_chunk((s,) + tail)
                    for s in range(0, len(data), dset.chunks[0])]
            assert mine == ref, f"{spec} {feature}"


@pytest.mark.parametrize("command", ["convert", "condense", "split", "join"])
def test_cli_help_lists_every_choice(capsys, command):
    from dcbulk.cli import main
    try:
        assert main([command, "--help"]) == 0
    except SystemExit as exc:
        assert exc.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for row in COMPRESSORS:
        assert row.spec_text() in text, (command, row.name)


def test_synthetic_generator_reads_the_table(tmp_path):
    from dcbulk.synth import compression_kwargs
    for row in COMPRESSORS:
        codec = parse_compression(row.name, fletcher32=False)
        assert compression_kwargs(row.name) == {
            k: v for k, v in codec.ds_kwds().items() if k != "fletcher32"}
    assert compression_kwargs("lz4") == dict(hdf5plugin.LZ4())
