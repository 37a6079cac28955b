"""``dcbulk verify`` of a converted output that was changed after the conversion: each change
below passed as "equal" before its fix. Each is one line naming the object, whether the
output is verified by name (its provenance log) or through its directory's manifest; the
outputs of the sample files, untouched, still verify equal.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import h5py
import hdf5plugin
import numpy as np
import pytest

import dcbulk
from dcbulk.read.identifier import get_measurement_identifier
from dcbulk.write import HDF5Writer
from fixtures import small_rtdc

N = 12
#: the sample whose root attributes hold text both as str and as bytes, and an image
SAMPLE = "file_with_variable_length_logs.rtdc"


@pytest.fixture(scope="module")
def archive(client, tmp_path_factory, shared_data_dir):
    """A converted archive (``--basin-to-source``) of a sample file and a synthetic file
    with traces, feature attributes of both text types and a file basin: its root."""
    root = tmp_path_factory.mktemp("tampered")
    src = root / "src"
    src.mkdir()
    shutil.copy(shared_data_dir / SAMPLE, src / "vl.rtdc")
    syn = small_rtdc(src / "syn.rtdc", N, seed=3, with_traces=True, image_shape=(30, 40))
    basin = root / "basins" / "b.rtdc"
    basin.parent.mkdir()
    with h5py.File(basin, "w") as h5:
        h5.attrs.update({"experiment:date": "2024-01-01", "experiment:time": "10:00:00",
                         "setup:identifier": "basin", "experiment:event count": N})
        h5["events/userdef1"] = np.arange(N, dtype=float)
    with h5py.File(syn, "a") as h5, HDF5Writer(h5) as hw:
        h5["events/deform"].attrs["unit"] = "1"
        h5["events/deform"].attrs["note"] = np.bytes_(b"fixed")
        h5["events/image"].attrs["IMAGE_WHITE_IS_ZERO"] = np.uint8(0)
        hw.store_basin(name="plain", description="a file basin", paths=[str(basin)],
                       features=["userdef1"])
    report = dcbulk.convert_archive([src], root / "dst", basin_to_source=True, client=client)
    assert report.ok, [(f.source, f.error) for f in report.failed]
    assert dcbulk.verify(root / "dst", client=client).ok
    return root


def _tampered(archive, tmp_path, name, change):
    """A copy of the archive's output directory with output ``name`` changed by
    ``change(h5)``: ``(output, directory)``."""
    dst = tmp_path / "dst"
    shutil.copytree(archive / "dst", dst)
    out = dst / name
    with h5py.File(out, "a") as h5:
        change(h5)
    return out, dst


def _reported(out, dst, client, line):
    """``line`` is a problem of ``out`` verified by name and through its directory."""
    for report in (dcbulk.verify(out, client=client), dcbulk.verify(dst, client=client)):
        assert not report.ok and f"{out}: {line}" in report.problems, report.problems


def _retyped(path, key):
    """Store attribute ``key`` of ``h5[path]`` with the same text, as the other type."""
    def change(h5):
        attrs = h5[path].attrs
        value = attrs[key]
        attrs[key] = (value.decode() if isinstance(value, bytes)
                      else np.bytes_(value.encode()))
    return change


STR = "variable-length text (str)"
BYTES = "fixed-length text (bytes)"


@pytest.mark.parametrize("name, path, key, line", [
    ("vl.rtdc", "/", "experiment:date",
     f"root attribute 'experiment:date' is stored as {BYTES}, the source's as {STR}"),
    ("vl.rtdc", "/", "setup:medium",
     f"root attribute 'setup:medium' is stored as {STR}, the source's as {BYTES}"),
    ("syn.rtdc", "events/deform", "unit",
     f"feature 'deform': attribute 'unit' is stored as {BYTES}, the source's as {STR}"),
    ("syn.rtdc", "events/deform", "note",
     f"feature 'deform': attribute 'note' is stored as {STR}, the source's as {BYTES}"),
], ids=["root-str-as-bytes", "root-bytes-as-str", "feature-str-as-bytes", "feature-bytes-as-str"])
def test_an_attribute_stored_as_the_other_text_type_is_found(archive, client, tmp_path, name,
                                                             path, key, line):
    out, dst = _tampered(archive, tmp_path, name, _retyped(path, key))
    _reported(out, dst, client, line)



@pytest.fixture(scope="module")
def joined(tmp_path_factory, shared_data_dir):
    """A joined output (``dcbulk join``) of the sample (the earliest input: its root
    attributes hold text both as str and as bytes) and a synthetic file with a table."""
    root = tmp_path_factory.mktemp("joined")
    syn = small_rtdc(root / "in" / "syn.rtdc", N, seed=5)
    out = root / "j.rtdc"
    assert dcbulk.modes.join([shared_data_dir / SAMPLE, syn], out).ok
    assert dcbulk.verify(out).ok
    return out


def _table(h5):
    """The name of the joined file's table kept of its synthetic input."""
    return "tables/" + next(name for name in h5["tables"] if name.startswith("src-#2_"))


@pytest.mark.parametrize("path, key, line", [
    ("/", "experiment:date",
     f"root attribute 'experiment:date' is stored as {BYTES}, the earliest input's as {STR}"),
    ("/", "setup:medium",
     f"root attribute 'setup:medium' is stored as {STR}, the earliest input's as {BYTES}"),
    ("/", "experiment:run identifier",
     f"root attribute 'experiment:run identifier' is stored as {BYTES}, dcbulk writes {STR}"),
    (_table, "time unit", "table '{}' differs from the input's"),
], ids=["root-str-as-bytes", "root-bytes-as-str", "run-identifier-as-bytes", "table-attribute"])
def test_an_attribute_of_a_joined_file_stored_as_the_other_text_type_is_found(
        joined, tmp_path, path, key, line):
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        path = path(h5) if callable(path) else path
        _retyped(path, key)(h5)
    report = dcbulk.verify(out)
    assert not report.ok and f"{out}: {line.format(path[len('tables/'):])}" in \
        report.problems, report.problems


def test_a_number_of_a_joined_file_stored_as_another_dtype_is_found(joined, tmp_path):
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        h5.attrs["experiment:run index"] = np.int32(1)
    report = dcbulk.verify(out)
    assert report.problems == [f"{out}: root attribute 'experiment:run index' is stored as "
                               f"int32, dcbulk writes int64"], report.problems



def _set(path, key, value):
    def change(h5):
        h5[path].attrs[key] = value
    return change


def _deleted(path, key):
    def change(h5):
        del h5[path].attrs[key]
    return change


@pytest.mark.parametrize("name, change, line", [
    ("vl.rtdc", _deleted("events/image", "CLASS"),
     "feature 'image': attribute 'CLASS' is missing (dcbulk writes 'IMAGE' for image data, "
     "as dcnum)"),
    ("syn.rtdc", _set("events/mask", "IMAGE_SUBCLASS", np.bytes_(b"IMAGE_TRUECOLOR")),
     "feature 'mask': attribute 'IMAGE_SUBCLASS' is 'IMAGE_TRUECOLOR', dcbulk writes "
     "'IMAGE_GRAYSCALE'"),
    ("syn.rtdc", _set("events/image", "IMAGE_VERSION", "1.2"),
     f"feature 'image': attribute 'IMAGE_VERSION' is stored as {STR}, dcbulk writes {BYTES}"),
    ("syn.rtdc", _set("events/deform", "CLASS", np.bytes_(b"IMAGE")),
     "feature 'deform': attribute 'CLASS' is not the source's (dcbulk writes it for image "
     "data only)"),
    # a copied attribute (neither dcnum nor dcbulk writes it): reported before too
    ("syn.rtdc", _deleted("events/image", "IMAGE_WHITE_IS_ZERO"),
     "feature 'image': attribute 'IMAGE_WHITE_IS_ZERO' is missing"),
    ("syn.rtdc", _set("events/image", "IMAGE_WHITE_IS_ZERO", np.uint8(1)),
     "feature 'image': attribute 'IMAGE_WHITE_IS_ZERO' is 1, source has 0"),
], ids=["CLASS-removed", "IMAGE_SUBCLASS-changed", "IMAGE_VERSION-as-str", "CLASS-on-a-scalar",
        "IMAGE_WHITE_IS_ZERO-removed", "IMAGE_WHITE_IS_ZERO-changed"])
def test_an_image_attribute_changed_or_removed_is_found(archive, client, tmp_path, name,
                                                        change, line):
    out, dst = _tampered(archive, tmp_path, name, change)
    _reported(out, dst, client, line)



@pytest.fixture(scope="module")
def selected(client, tmp_path_factory):
    """A conversion of features chosen by name (``features=``) of a synthetic file with
    statistics, traces and contours: ``userdef1`` followed through a file basin (its
    statistics kept), ``userdef2`` and the image data ``userdef3`` from a mapped internal
    basin (statistics computed; the writer sets the image attributes on its
    ``basin_events`` data, which verify reported as not the source's): its root."""
    root = tmp_path_factory.mktemp("selected")
    src = root / "src"
    syn = small_rtdc(src / "syn.rtdc", N, seed=4, with_traces=True, with_contour=True,
                     image_shape=(30, 40))
    with h5py.File(src / "b.rtdc", "w") as h5:
        h5.attrs.update({"experiment:date": "2024-01-01", "experiment:time": "10:00:00",
                         "setup:identifier": "basin", "experiment:event count": N})
        h5["events/userdef1"] = np.arange(N, dtype=float)
        h5["events/userdef1"].attrs.update({"unit": "m", "min": 0.0, "max": N - 1.0,
                                            "mean": (N - 1) / 2})
    with h5py.File(syn, "a") as h5, HDF5Writer(h5) as hw:
        h5["events/deform"].attrs.update({"unit": "1", "min": 0.0, "max": 1.0, "mean": 0.5})
        hw.store_basin(name="plain", description="a file basin", paths=["b.rtdc"],
                       features=["userdef1"])
        hw.store_basin(name="inner", description="an internal basin",
                       mapping=np.arange(N)[::-1].copy(),
                       internal_data={"userdef2": np.arange(N, dtype=float) * 2,
                                      "userdef3": np.zeros((N, 5, 6), np.uint8)})
    features = ["deform", "userdef1", "userdef2", "userdef3", "trace", "image", "contour"]
    report = dcbulk.convert_archive([src], root / "dst", include="syn.rtdc",
                                    features=features, client=client)
    assert report.ok, [(f.source, f.error) for f in report.failed]
    assert dcbulk.verify(root / "dst", client=client).ok
    return root


@pytest.mark.parametrize("feature, key, value, line", [
    ("deform", "mean", np.float32(0.5),
     "attribute 'mean' is stored as float32, expected float64 (the source's)"),
    ("deform", "min", "0.0",
     f"attribute 'min' is stored as {STR}, expected float64 (the source's)"),
    ("userdef1", "max", np.float32(N - 1),
     "attribute 'max' is stored as float32, expected float64 (the source's)"),
    ("userdef2", "mean", np.bytes_(b"11.0"),
     f"attribute 'mean' is stored as {BYTES}, expected float64 (that of its events)"),
], ids=["own-as-float32", "own-as-str", "followed-as-float32", "internal-as-bytes"])
def test_a_statistic_stored_as_another_type_is_found(selected, client, tmp_path, feature,
                                                     key, value, line):
    """dclab reads ``min``/``max``/``mean`` instead of the data: each stored as the writer
    stores it (the source's as copied, else as computed), not only the same value."""
    out, dst = _tampered(selected, tmp_path, "syn.rtdc", _set(f"events/{feature}", key, value))
    _reported(out, dst, client, f"feature '{feature}': {line}")



UNCOPIED = ("(dcbulk copies the attributes of the source's own features only, not a basin's "
            "or a join's input's)")


@pytest.mark.parametrize("feature, key, value, line", [
    ("userdef1", "unit", "m", f"attribute 'unit' is not the source's {UNCOPIED}"),
    ("userdef2", "note", np.bytes_(b"x"), f"attribute 'note' is not the source's {UNCOPIED}"),
    ("image", "mean", 1.0,
     "attribute 'mean' is not the source's (dcbulk writes it on numeric scalar features only)"),
    ("trace/fl1_raw", "max", np.int64(7),
     "attribute 'max' is not the source's (dcbulk writes it on numeric scalar features only)"),
], ids=["followed", "internal-basin", "statistic-on-an-image", "statistic-on-a-trace"])
def test_an_attribute_the_writer_does_not_copy_is_found(selected, client, tmp_path, feature,
                                                        key, value, line):
    """The writer copies the attributes of the source's own features only (a basin's are
    not), and statistics are only those of numeric scalar features."""
    out, dst = _tampered(selected, tmp_path, "syn.rtdc", _set(f"events/{feature}", key, value))
    _reported(out, dst, client, f"feature '{feature}': {line}")


@pytest.mark.parametrize("feature", ["image", "frame"])
def test_an_attribute_added_to_a_joined_feature_is_found(joined, tmp_path, feature):
    """A join copies no attributes of its inputs' features."""
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        h5[f"events/{feature}"].attrs["unit"] = "px"
    problems = dcbulk.verify(out).problems
    assert problems == [f"{out}: feature '{feature}': attribute 'unit' is not the source's "
                        f"{UNCOPIED}"], problems


def test_an_attribute_added_to_a_joined_log_is_found(joined, tmp_path):
    """A join keeps its inputs' log lines, and no attribute of theirs."""
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        name = sorted(n for n in h5["logs"] if n.startswith("src-#"))[0]
        h5["logs"][name].attrs["software"] = "x"
    problems = dcbulk.verify(out).problems
    assert problems == [f"{out}: log '{name}' has the attribute 'software', which dcbulk does "
                        f"not write (a join keeps the inputs' log lines only)"], problems


@pytest.mark.parametrize("change, line", [
    (_set("logs/dcbulk-join", "software", "dcbulk 0.1.0"), "log 'dcbulk-join' has the "
     "attribute 'software', which dcbulk does not write (none on its provenance log)"),
    (lambda h5: h5["logs"].create_dataset("dcbulk-convert", data=h5["logs/dcbulk-join"][()]),
     "log 'dcbulk-convert' is not kept of the inputs (the run writes one log of its own: "
     "'dcbulk-join')"),
], ids=["attribute", "another-provenance-log"])
def test_the_provenance_log_of_a_joined_file_is_checked(joined, tmp_path, change, line):
    """A joined file's logs kept of its inputs were checked, its provenance logs not: an
    attribute on the join's own, or another provenance log, was 'equal'."""
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        change(h5)
    assert dcbulk.verify(out).problems == [f"{out}: {line}"]


def _first_basin(key, value):
    def change(h5):
        h5["basins"][sorted(h5["basins"])[0]].attrs[key] = value
    return change


@pytest.mark.parametrize("change, line", [
    (_set("events/contour/3", "note", "x"), "'events/contour/3' has the attribute 'note', "
     "which dcbulk does not write (none on a contour)"),
    (_set("events/basinmap0", "unit", "1"), "'events/basinmap0' has the attribute 'unit', "
     "which dcbulk does not write (none on a basin map)"),
    (_first_basin("note", np.bytes_(b"x")), "has the attribute 'note', which dcbulk does not "
     "write (none on a basin definition)"),
    (_deleted("basin_events/userdef3", "CLASS"), "internal basin data 'userdef3': attribute "
     "'CLASS' is missing (dcbulk writes 'IMAGE' for image data, as dcnum)"),
    (_set("basin_events/userdef3", "IMAGE_VERSION", "1.2"), "internal basin data 'userdef3': "
     f"attribute 'IMAGE_VERSION' is stored as {STR}, dcbulk writes {BYTES}"),
], ids=["contour", "basin-map", "basin-definition", "basin-data-CLASS-removed",
        "basin-data-IMAGE_VERSION-as-str"])
def test_an_attribute_of_an_object_the_writer_sets_attributes_of_is_found(
        selected, client, tmp_path, change, line):
    out, dst = _tampered(selected, tmp_path, "syn.rtdc", change)
    for report in (dcbulk.verify(out, client=client), dcbulk.verify(dst, client=client)):
        assert not report.ok and any(p.startswith(f"{out}: ") and p.endswith(line)
                                     for p in report.problems), report.problems



def test_an_attribute_of_a_joined_files_events_group_is_found(joined, tmp_path):
    """A join carries no attribute of the format's groups (a converted output's were
    reported, a joined file's were not)."""
    out = tmp_path / "j.rtdc"
    shutil.copy(joined, out)
    with h5py.File(out, "a") as h5:
        h5["events"].attrs["note"] = "x"
    assert dcbulk.verify(out).problems == [
        f"{out}: attribute 'note' of /events is not from an input (no output carries it)"]



def _soft_loop(h5):
    h5["events/trace/loop"] = h5py.SoftLink("/events/trace")


def _hard_loop(h5):
    h5["events/trace/again"] = h5["events/trace"]


def _empty_group(h5):
    h5.require_group("events/trace/empty")


def _named_datatype(h5):
    h5["events/trace/dtype"] = np.dtype("f8")


def _unused_basin_data(h5):
    h5["basin_events/userdef9"] = np.arange(N, dtype=float)


@pytest.mark.parametrize("change, line", [
    (_soft_loop, "'events/trace/loop' is a soft link to '/events/trace' (dcbulk writes no "
     "links)"),
    (_hard_loop, "'events/trace/again' is another name (a hard link) of an object named "
     "elsewhere in the file (dcbulk writes one name per object)"),
    (_empty_group, "'events/trace/empty' is an empty group (dcbulk writes none below a "
     "group of 'events')"),
    (_named_datatype, "'events/trace/dtype' is a named datatype (dcbulk writes none)"),
    (_unused_basin_data, "'basin_events/userdef9' is data of no internal basin of the "
     "output"),
], ids=["soft-link-cycle", "hard-link-cycle", "empty-group", "named-datatype",
        "unused-basin-data"])
def test_an_object_the_conversion_does_not_write_is_found(archive, client, tmp_path, change,
                                                         line):
    """Each once, without a loop or a traceback."""
    out, dst = _tampered(archive, tmp_path, "syn.rtdc", change)
    _reported(out, dst, client, line)
    problems = dcbulk.verify(out, client=client).problems
    assert len([p for p in problems if line in p]) == 1, problems



def _log(name, copy=True):
    """Add log ``name``: a copy of the output's own provenance log, or other lines."""
    def change(h5):
        logs = h5["logs"]
        logs[name] = logs["dcbulk-convert"][:] if copy else [b"hello"]
    return change


@pytest.mark.parametrize("name, copy", [("dcbulk-reprocess", False), ("dcbulk-convert-1", True),
                                        ("dcbulk-convert-2", True), ("notes", False)])
def test_a_log_the_conversion_does_not_write_is_found(archive, client, tmp_path, name, copy):
    """A plain conversion writes one log of its own, 'dcbulk-convert' (the source's logs
    are copied); another log dcbulk might write is no more the run's than any other."""
    out, dst = _tampered(archive, tmp_path, "vl.rtdc", _log(name, copy))
    line = f"{out}: log '{name}' is not in the source (the run writes one log of its own: " \
           f"'dcbulk-convert')"
    report = dcbulk.verify(dst, client=client)
    assert line in report.problems, report.problems
    if copy:  # by name: paired by the newest log, a copy of the run's
        assert line in dcbulk.verify(out, client=client).problems
    elif name.startswith("dcbulk-"):  # by name: the newest log is no JSON document
        with pytest.raises(dcbulk.errors.DcbulkError, match=f"its log '{name}'"):
            dcbulk.verify(out, client=client)
    else:
        assert line in dcbulk.verify(out, client=client).problems


def test_a_missing_log_of_the_run_is_named(archive, client, tmp_path):
    def change(h5):
        h5["logs"].move("dcbulk-convert", "dcbulk-convert-1")
    out, dst = _tampered(archive, tmp_path, "vl.rtdc", change)
    problems = dcbulk.verify(dst, client=client).problems
    assert f"{out}: dcbulk's provenance log (logs/dcbulk-convert) is missing" in problems



#: the filters of the archive's outputs (the run's --compression, the default)
FILTERS = {**hdf5plugin.Zstd(clevel=5), "fletcher32": True}


def _basin(name, change, same_key=False):
    """Rewrite basin ``name``'s definition as ``change(definition)``, under the MD5 of
    its new text, stored as the writer stores it (``same_key``: under its old key)."""
    def rewrite(h5):
        for key in list(h5["basins"]):
            bdict = json.loads(b"\n".join(h5["basins"][key][:]).decode())
            if bdict["name"] == name:
                break
        change(bdict)
        text = json.dumps(bdict, indent=2)
        del h5["basins"][key]
        new = key if same_key else hashlib.md5(text.encode()).hexdigest()
        lines = [ln.encode() for ln in text.split("\n")]
        h5["basins"].create_dataset(new, data=np.array(lines, dtype=f"S{max(map(len, lines))}"),
                                    chunks=True, **FILTERS)
    return rewrite


def _other_type(h5):
    with HDF5Writer(h5) as hw:
        hw.store_basin(name="remote", paths=["https://example.org/x.rtdc"],
                       features=["userdef1"])
    _basin("remote", lambda b: b.update(type="remote"))(h5)


@pytest.mark.parametrize("change, line", [
    (_basin("plain", lambda b: b.update(description="another text")),
     "basin 'plain': its description is 'another text', the source's is 'a file basin'"),
    (_basin("source", lambda b: b.update(description="Made elsewhere")),
     "basin 'source': its description is 'Made elsewhere', dcbulk writes 'Source of this "
     "file (dcbulk <version>)'"),
    (_basin("plain", lambda b: b.update(perishable=True)),
     "basin 'plain' has the key 'perishable', which dcbulk does not write"),
    (_basin("plain", lambda b: b.update(format="h5dataset")),
     "basin 'plain': its format is 'h5dataset', dcbulk writes 'hdf5' for a file basin"),
    (_basin("plain", lambda b: b.update(description="another text"), same_key=True),
     "basin 'plain' is stored under the key '"),
    (_basin("plain", lambda b: b.update(name="renamed")),
     "basin 'renamed' is not the source's (a basin the source does not have)"),
    (_other_type, "basin 'remote' (type 'remote') is not the source's (a basin the source "
     "does not have)"),
    (_basin("plain", lambda b: b.update(mapping="same")),
     "basin 'plain' has \"mapping\": \"same\" (dclab's word for unmapped; dcnum's reader "
     "leaves such a basin out), dcbulk writes no mapping"),
], ids=["description", "description-of-basin-to-source", "extra-key", "format", "old-key",
        "name", "other-type", "mapping-same"])
def test_a_basin_definition_changed_is_found(archive, client, tmp_path, change, line):
    out, dst = _tampered(archive, tmp_path, "syn.rtdc", change)
    for report in (dcbulk.verify(out, client=client), dcbulk.verify(dst, client=client)):
        assert not report.ok and any(p.startswith(f"{out}: {line}")
                                     for p in report.problems), report.problems


def _stored(name, data, **kwds):
    """Store basin ``name``'s definition again, its text the same: its lines as
    ``data(lines)`` (fixed-length bytes), with the dataset keywords ``kwds``."""
    def change(h5):
        for key, dset in h5["basins"].items():
            if json.loads(b"\n".join(dset[()]))["name"] == name:
                break
        lines = h5["basins"][key][()]
        del h5["basins"][key]
        h5["basins"].create_dataset(key, data=data(lines), **kwds)
    return change


def _as_str(lines):
    return np.array([ln.decode() for ln in lines], dtype=h5py.string_dtype())


WRITTEN = "fixed-length ASCII text of {width} bytes (null-padded)"


@pytest.mark.parametrize("change, how", [
    (_stored("plain", _as_str, chunks=True),
     f"as variable-length UTF-8 text, dcbulk writes {WRITTEN}; none, not zstd:5+fletcher32 "
     f"(the run's --compression)"),
    (_stored("plain", lambda lines: lines.astype("S100"), chunks=True, **FILTERS),
     f"as fixed-length ASCII text of 100 bytes (null-padded), dcbulk writes {WRITTEN}"),
    (_stored("plain", lambda lines: lines, chunks=True, compression="gzip", fletcher32=True),
     "gzip:4+fletcher32, not zstd:5+fletcher32 (the run's --compression)"),
    (_stored("plain", lambda lines: lines, chunks=True, **hdf5plugin.Zstd(clevel=9),
             fletcher32=True),
     "zstd:9+fletcher32, not zstd:5+fletcher32 (the run's --compression)"),
    (_stored("plain", lambda lines: lines, chunks=(3,), **FILTERS),
     "in chunks of (3,), dcbulk writes chunks of ({lines},)"),
], ids=["variable-length", "S100", "gzip", "zstd-9", "chunks"])
def test_a_basin_definition_stored_otherwise_is_found(archive, client, tmp_path, change, how):
    """The text of a definition the same, its storage another than the writer's (a fresh
    write of that text by :func:`~dcbulk.write.basin_store.store_basin_text` with the run's
    filters) was 'equal': only features' storage was checked."""
    with h5py.File(archive / "dst" / "syn.rtdc") as h5:
        stored = [d for d in h5["basins"].values()
                  if json.loads(b"\n".join(d[()]))["name"] == "plain"][0]
        width, lines = stored.dtype.itemsize, stored.shape[0]
    out, dst = _tampered(archive, tmp_path, "syn.rtdc", change)
    line = f"basin 'plain': its definition is stored {how.format(width=width, lines=lines)}"
    _reported(out, dst, client, line)


@pytest.mark.parametrize("name, basin", [("source", ("src", "syn.rtdc")),
                                         ("plain", ("basins", "b.rtdc"))])
def test_a_basin_without_its_relative_path_is_found(archive, client, tmp_path, name, basin):
    """A file basin that lost its relative path (the writer stores each path absolute,
    then relative to the output, so that the output resolves moved with its basin) still
    resolved, and was 'equal'."""
    target = str(archive.joinpath(*basin))
    out, dst = _tampered(archive, tmp_path, "syn.rtdc",
                         _basin(name, lambda b: b.update(paths=b["paths"][:1])))
    here = [target, os.path.relpath(target, out.parent)]
    _reported(out, dst, client, f"basin '{name}': its paths are {[target]!r}, dcbulk writes "
              f"{here!r} here (each path absolute, then relative to the output, so it "
              f"resolves moved with its basin)")


def test_an_identifier_where_the_writer_stores_none_is_found(archive, client, tmp_path):
    """The sample's basin to the source holds no identifier (dclab and dcnum compute
    different ones for it); one of them added (dcnum then refuses the basin) was 'equal'."""
    with h5py.File(archive / "src" / "vl.rtdc") as h5:
        dclabs = get_measurement_identifier(h5, compat="dclab")
    out, dst = _tampered(archive, tmp_path, "vl.rtdc",
                         _basin("source", lambda b: b.update(identifier=dclabs)))
    _reported(out, dst, client, f"basin 'source' has identifier {dclabs!r}, dcbulk writes "
              f"none (null: the basin file has no identifier dclab and dcnum both compute)")


def test_an_attribute_of_the_provenance_log_is_found(archive, client, tmp_path):
    """The writer sets no attribute on the run's own log (the copied logs get a
    ``software`` attribute, which was checked; the run's own log's were not)."""
    out, dst = _tampered(archive, tmp_path, "vl.rtdc",
                         _set("logs/dcbulk-convert", "software", "dcbulk 0.1.0"))
    _reported(out, dst, client, "log 'dcbulk-convert' has the attribute 'software', which "
              "dcbulk does not write (none on its provenance log)")


def test_the_outputs_of_the_sample_files_verify_equal(client, sample_files, tmp_path):
    """No new check reports a genuine output: each sample's, by name and by directory (and
    a filtered conversion's of those with a ``frame``, whose run identifier dcbulk writes)."""
    for kind, options in (("all", {}), ("filtered", {"filter": "frame > 0"})):
        src, dst = tmp_path / kind / "src", tmp_path / kind / "dst"
        src.mkdir(parents=True)
        for path in sample_files:
            with h5py.File(path) as h5:
                if options and "frame" not in h5["events"]:
                    continue
            shutil.copy(path, src / path.name)
        report = dcbulk.convert_archive([src], dst, client=client, **options)
        assert report.ok, [(f.source, f.error) for f in report.failed]
        assert dcbulk.verify(dst, client=client).ok
        for out in sorted(dst.glob("*.rtdc")):
            assert dcbulk.verify(out, client=client).ok, out


@pytest.mark.parametrize("change, line", [
    (_set("events/deform", "min", 7.0),
     "feature 'deform': attribute 'min' is 7.0, expected none (no events)"),
    (_set("events/image", "foo", 1), "feature 'image': attribute 'foo' is not the source's"),
    (_set("events/trace/fl3_raw", "max", 1),
     "feature 'trace/fl3_raw': attribute 'max' is not the source's (dcbulk writes it on "
     "numeric scalar features only)"),
    (lambda h5: _rewritten(h5, "events/deform", "f8"),
     "feature 'deform' (no events): dtype float64 != source float32"),
], ids=["statistic", "image-attribute", "trace-statistic", "dtype"])
def test_a_feature_without_events_is_checked_too(shared_data_dir, tmp_path, change, line):
    """A file of 0 events (M001_data.rtdc) had no row check, so none of its features'
    dtypes or attributes were compared."""
    src = tmp_path / "M001_data.rtdc"
    shutil.copy(shared_data_dir / "M001_data.rtdc", src)
    dcbulk.convert(src, tmp_path / "out.rtdc")
    assert dcbulk.verify(tmp_path / "out.rtdc", src).ok
    with h5py.File(tmp_path / "out.rtdc", "a") as h5:
        change(h5)
    problems = dcbulk.verify(tmp_path / "out.rtdc", src).problems
    assert f"{tmp_path / 'out.rtdc'}: {line}" in problems, problems


def _rewritten(h5, path, dtype):
    """``h5[path]`` stored again as ``dtype``, as the writer stores a feature."""
    data, group, name = h5[path][()], h5[path].parent, path.rsplit("/", 1)[1]
    del group[name]
    group.create_dataset(name, data=data.astype(dtype), maxshape=(None,), chunks=(1000,),
                         **hdf5plugin.Zstd(clevel=5), fletcher32=True)


def _basin_led_to(path):
    """The output's basin to the source rewritten, as the writer stores one, to lead to
    ``path`` (its other keys, its identifier too, kept)."""
    def change(h5):
        from dcbulk.write.basin_store import basin_json
        for key in list(h5["basins"]):
            bdict = json.loads(b"\n".join(h5["basins"][key][()]))
            if bdict.get("name") == "source":
                del h5["basins"][key]
                text, new = basin_json({**bdict, "paths": [str(path)]})
                lines = [ln.encode() for ln in text.split("\n")]
                h5["basins"].create_dataset(new, data=np.array(
                    lines, dtype=f"S{max(map(len, lines))}"), **hdf5plugin.Zstd(clevel=5),
                    fletcher32=True)
    return change


def test_a_basin_to_a_copy_of_the_source_elsewhere_is_found(archive, tmp_path):
    """A basin to the source that leads to a copy of it elsewhere (its identifier the
    same, its images zeroed: dclab reads those through the basin) was 'equal'."""
    elsewhere = tmp_path / "elsewhere.rtdc"
    shutil.copy(archive / "src" / "syn.rtdc", elsewhere)
    with h5py.File(elsewhere, "a") as h5:
        h5["events/image"][:] = 0
    out, dst = _tampered(archive, tmp_path, "syn.rtdc", _basin_led_to(elsewhere))
    line = (f"basin 'source' leads to {elsewhere}, not to {archive / 'src' / 'syn.rtdc'} (the "
            f"file it was made for; a file elsewhere may hold other data)")
    for report in (dcbulk.verify(out), dcbulk.verify(dst)):
        assert f"{out}: {line}" in report.problems, report.problems


def _basinmap_as(dtype, name="basinmap0"):
    def change(h5):
        rows = np.arange(h5.attrs["experiment:event count"])
        if "basinmap0" in h5["events"] and name == "basinmap0":
            rows = h5["events/basinmap0"][:]
            del h5["events/basinmap0"]
        h5["events"].create_dataset(name, data=rows.astype(dtype), chunks=True,
                                    **hdf5plugin.Zstd(clevel=5), fletcher32=True)
    return change


@pytest.mark.parametrize("change, line", [
    (_basinmap_as("f8"), "'events/basinmap0' holds float64 values, not event indices "
     "(integers)"),
    (_basinmap_as("i8", "basinmap1"), "'events/basinmap1' is the mapping of no basin of the "
     "output"),
], ids=["float", "unused"])
def test_a_basin_map_of_floats_or_of_no_basin_is_found(shared_data_dir, tmp_path, change,
                                                       line):
    """A filtered output's basin map: rewritten as floats, or one more that no basin uses,
    was 'equal' (basin maps are no features, so neither their dtype nor their use was
    checked)."""
    (tmp_path / "src").mkdir()
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", tmp_path / "src" / "s.rtdc")
    dst, out = tmp_path / "dst", tmp_path / "dst" / "s.rtdc"
    assert dcbulk.convert_archive([tmp_path / "src"], dst, filter="deform < 0.05",
                                  basin_to_source=True).ok
    with h5py.File(out) as h5:
        assert "basinmap0" in h5["events"]
    assert dcbulk.verify(dst).ok
    with h5py.File(out, "a") as h5:
        change(h5)
    problems = dcbulk.verify(dst).problems
    assert f"{out}: {line}" in problems, problems
