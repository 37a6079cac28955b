"""``dcbulk verify`` reports outside data in an output and a lost nested group (issue 16 A)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.bulk import convert_archive
from dcbulk.cli import EXIT_FAILED_FILES, main

from fixtures import small_rtdc

pytestmark = pytest.mark.hostile

N = 20


@pytest.fixture
def converted(tmp_path, client):
    src = tmp_path / "src"
    src.mkdir()
    source = small_rtdc(src / "m.rtdc", N, seed=4)
    other = small_rtdc(tmp_path / "other.rtdc", N, seed=5)
    assert convert_archive([src], tmp_path / "dst", client=client).ok
    return source, tmp_path / "dst", tmp_path / "dst" / "m.rtdc", other


def _external_storage(h5: h5py.File, other: Path) -> None:
    raw = other.parent / "raw.bin"
    raw.write_bytes(np.zeros(N).tobytes())
    h5.create_dataset("hidden/stored", shape=(N,), dtype="f8",
                      external=[(str(raw), 0, N * 8)])


def _virtual(h5: h5py.File, other: Path) -> None:
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "events/area_um", shape=(N,))
    h5.require_group("hidden").create_virtual_dataset("virtual", layout)


def _external_link(h5: h5py.File, other: Path) -> None:
    h5["hidden/link"] = h5py.ExternalLink(str(other), "/events/area_um")


@pytest.mark.parametrize("make, words", [(_external_link, "external link"),
                                         (_virtual, "virtual dataset"),
                                         (_external_storage, "stored externally")])
def test_verify_reports_outside_data_in_an_output(converted, client, make, words):
    source, dst, out, other = converted
    assert dcbulk.verify(dst, client=client).ok
    with h5py.File(out, "a") as h5:
        make(h5, other)
    report = dcbulk.verify(out, source, client=client)
    assert any(words in p and "an output must hold its own data" in p
               for p in report.problems), report.problems


def test_verify_cli_reports_a_lost_nested_group(converted, tmp_path, capsys):
    source, dst, out, other = converted
    with h5py.File(source, "a") as h5:
        h5.create_dataset("events/extra/deeper/values", data=np.arange(N))
    assert main(["verify", str(out), "--against", str(source), "--workers", "1"]) \
        == EXIT_FAILED_FILES
    assert "feature 'extra/deeper/values' is missing" in capsys.readouterr().out


def _basins(h5: h5py.File) -> dict:
    import json
    return {k: json.loads(b"".join(h5["basins"][k][()]).decode()) for k in h5["basins"]}


def _rewrite_basin(path: Path, name: str, change) -> None:
    """Rewrite the definition of basin ``name`` of ``path`` as ``change(definition)``."""
    import json
    with h5py.File(path, "a") as h5:
        key, bdict = next((k, b) for k, b in _basins(h5).items() if b["name"] == name)
        change(bdict)
        del h5["basins"][key]
        h5["basins"][key] = np.array([ln.encode() for ln in
                                      json.dumps(bdict, indent=2).splitlines()])


@pytest.fixture
def with_basins(tmp_path):
    """A source with an unmapped and a mapped file basin, its output, and another
    measurement's file of the same features."""
    from dcbulk.write import HDF5Writer
    src = tmp_path / "src"
    src.mkdir()
    source = small_rtdc(src / "m.rtdc", N, seed=4)
    for name, seed in (("m_basin.rtdc", 0), ("other.rtdc", 1)):
        with h5py.File(src / name, "w") as h5:
            h5.attrs.update({"experiment:date": "2024-01-01", "experiment:time": "10:00:00",
                             "setup:identifier": f"basin{seed}", "experiment:event count": N})
            h5["events/userdef1"] = np.arange(N, dtype=float) + 100 * seed
            h5["events/userdef2"] = np.arange(N, dtype=float) * 2 + 100 * seed
    with h5py.File(source, "a") as h5, HDF5Writer(h5) as hw:
        hw.store_basin(name="plain", paths=["m_basin.rtdc"], features=["userdef1"])
        hw.store_basin(name="mapped", paths=["m_basin.rtdc"], features=["userdef2"],
                       mapping=np.arange(N)[::-1].copy())
    out = tmp_path / "out.rtdc"
    dcbulk.convert(source, out, basin_to_source=True)
    assert dcbulk.verify(out).ok
    return source, out, src / "other.rtdc"


def _unmapped(bdict):
    bdict.pop("mapping")


def _retargeted(other):
    def change(bdict):
        bdict["paths"] = [str(other)]
        bdict.pop("identifier", None)
    return change


@pytest.mark.parametrize("name, change, words", [
    ("mapped", lambda other: _unmapped, "basin 'mapped' has no mapping, but the output's "
     "events are not the basin's"),
    ("plain", _retargeted, "basin 'plain' has no identifier, expected"),
    ("source", _retargeted, "basin 'source' has no identifier, expected"),
    ("source", lambda other: lambda b: b.update(mapping="deform"),
     "basin 'source': its mapping differs from the source's"),
    ("extra", None, "basin 'extra' is not the source's"),
])
def test_verify_checks_each_basins_mapping_identifier_and_origin(with_basins, name, change,
                                                                  words):
    """Verify said equal when a basin of an output lost its mapping (dclab then read the
    basin's features for other events), pointed at another measurement's file with its
    identifier removed, or was added: each is one line, in every mode."""
    source, out, other = with_basins
    if change is None:
        from dcbulk.write import HDF5Writer
        with h5py.File(out, "a") as h5, HDF5Writer(h5) as hw:
            hw.store_basin(name="extra", paths=[str(other)], features=["userdef1"])
    else:
        _rewrite_basin(out, name, change(other))
    for report in (dcbulk.verify(out), dcbulk.verify(out, source)):
        assert not report.ok and any(words in p for p in report.problems), report.problems


def _scalar_feature(h5):
    del h5["events/deform"]
    h5["events/deform"] = 0.5


def _dataset_for(name):
    def change(h5):
        if name in h5:
            del h5[name]
        h5.create_dataset(name, data=np.zeros(3))
    return change


@pytest.mark.parametrize("change, words", [
    (_dataset_for("logs"), "'logs' is a dataset, not a group of logs"),
    (_dataset_for("events"), "no 'events' group"),
    (_dataset_for("basins"), "'basins' is a dataset"),
    (_dataset_for("tables"), "'tables' is a dataset"),
    (_scalar_feature, "'events/deform' holds a single value (shape ())"),
], ids=["logs", "events", "basins", "tables", "scalar"])
def test_verify_names_an_output_whose_layout_no_reader_reads(converted, change, words):
    """An output whose ``logs`` (``events``, ``basins``, ``tables``) is a dataset, or with a
    single-valued feature: a traceback (single file), or a line naming a TypeError,
    AttributeError or IndexError; now one line saying what is wrong."""
    source, dst, out, _ = converted
    with h5py.File(out, "a") as h5:
        change(h5)
    for report in (dcbulk.verify(dst), dcbulk.verify(out, source)):
        assert not report.ok and len(report.problems) == 1 and words in report.problems[0], \
            report.problems
    with pytest.raises(dcbulk.errors.NotRtdcError) as info:
        dcbulk.verify(out)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_verify_compares_text_as_the_bytes_it_holds(tmp_path):
    """Logs and attributes were compared after decoding with replacement, so any two bytes
    that are no UTF-8 compared equal: a latin-1 log line 'temp 23\\xb0C' changed to
    '23\\xb1C', or an attribute 'PBS 5\\xb5M' stored as 'PBS 5\\ufffdM', passed."""
    src = small_rtdc(tmp_path / "m.rtdc", N, seed=4)
    with h5py.File(src, "a") as h5:
        h5.attrs["setup:medium"] = np.bytes_(b"PBS 5\xb5M")
        h5["logs/latin1"] = np.array([b"temp 23\xb0C", b"ok"])
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out)
    assert dcbulk.verify(out).ok  # the copy keeps the bytes
    with h5py.File(out, "a") as h5:
        lines = h5["logs/latin1"][()]
        lines[0] = b"temp 23\xb1C"
        h5["logs/latin1"][...] = lines
    report = dcbulk.verify(out)
    assert report.problems == [f"{out}: log 'latin1' differs from the source"]
    with h5py.File(out, "a") as h5:
        h5["logs/latin1"][...] = np.array([b"temp 23\xb0C", b"ok"])
        h5.attrs["setup:medium"] = "PBS 5\ufffdM"
    report = dcbulk.verify(out, src)
    assert len(report.problems) == 1 and "root attribute 'setup:medium'" in report.problems[0]


def test_verify_names_an_unsigned_feature_stored_with_another_width(converted):
    """Rows of unsigned integers were compared by value when the widths differed; the same
    values then raised an IndexError ("index 0 is out of bounds", no feature named). A
    copy keeps the source's dtype: another one is a problem line."""
    source, dst, out, _ = converted
    with h5py.File(out, "a") as h5:
        name = next(k for k, d in h5["events"].items()
                    if isinstance(d, h5py.Dataset) and d.dtype.kind == "u" and d.ndim == 1)
        values = h5["events"][name][()]
        wider = np.dtype(f"u{values.dtype.itemsize * 2}") if values.dtype.itemsize < 8 \
            else np.dtype("u4")
        del h5["events"][name]
        h5.create_dataset(f"events/{name}", data=values.astype(wider), chunks=True)
    report = dcbulk.verify(out, source)
    assert any(f"feature '{name}'" in p and f"dtype {wider} != source {values.dtype}" in p
               for p in report.problems), report.problems


def test_verify_of_a_directory_names_an_output_replaced_by_a_link(converted):
    """An output replaced by a symbolic link to its source gave 52 lines (compression, logs,
    provenance), none saying that the output is no longer there: one line says so."""
    import os
    source, dst, out, _ = converted
    out.unlink()
    os.symlink(source, out)
    assert dcbulk.verify(dst).problems == [
        f"{out}: is a symbolic link (to {source}), not the output that was written here"]


def test_verify_names_a_contour_or_basin_data_stored_with_another_dtype(tmp_path):
    """A contour (uint16 in the source) or an internal basin's data re-stored with another
    dtype, the same values, passed: they were compared by value."""
    from dcbulk.write import HDF5Writer
    src = small_rtdc(tmp_path / "m.rtdc", N, seed=4, with_contour=True)
    with h5py.File(src, "a") as h5, HDF5Writer(h5) as hw:
        hw.store_basin(name="int", mapping=np.arange(N) % 2,
                       internal_data={"userdef3": np.array([1.0, 2.0])})
    out = tmp_path / "out.rtdc"
    dcbulk.convert(src, out)
    assert dcbulk.verify(out).ok
    for name, dtype, words in [("events/contour/0", "int32", "contour 0 differs"),
                               ("basin_events/userdef3", "float32",
                                "basin 'int': basin_events/userdef3 differs")]:
        copy = tmp_path / f"{dtype}.rtdc"
        copy.write_bytes(out.read_bytes())
        with h5py.File(copy, "a") as h5:
            values = h5[name][()]
            del h5[name]
            h5[name] = values.astype(dtype)
        report = dcbulk.verify(copy, src)
        assert any(words in p for p in report.problems), report.problems
