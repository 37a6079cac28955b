"""Fidelity on the community's own test data (issue 21): every ``.rtdc`` file of dclab's and
dcnum's source distributions converts with no new alert in dclab's ``IntegrityChecker``, the
same keys in dcnum and equal values in dclab; and the details found there, each of which
failed on main before its fix (log lines over 100 characters, a dropped empty group,
condense's ``index`` dtype and ``basin_to_source``, ``verify -q``).
"""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

import dcbulk
import dcbulk.cli
import dcbulk.modes
from dcbulk.provenance import (LOG_MAX_LINE_LENGTH, is_provenance_log, read_provenance,
                               unwrap_lines, wrap_lines)
from fixtures import cache_dir, fetch_all_test_data, small_rtdc
from helpers import integrity_cues

#: a folder name that makes every absolute path in the tree longer than a log line may be
DEEP = "a-folder-whose-name-is-long-enough-to-push-absolute-paths-past-dclab-s-line-limit"


@pytest.fixture(scope="module")
def converted_tree(client, tmp_path_factory):
    """dclab's and dcnum's test data, one deep tree, converted once: (sources, src, dst)."""
    root = tmp_path_factory.mktemp("fidelity") / DEEP
    files = fetch_all_test_data(cache_dir(), root / "src")
    report = dcbulk.convert_archive([root / "src"], root / "dst", client=client)
    assert report.ok, [(f.source, f.error) for f in report.failed]
    assert report.count("done") == len(files)
    return files, root / "src", root / "dst"


def _dclab_values(path) -> dict[str, object]:
    """Every feature dclab offers (innate and from basins), every event."""
    import dclab
    got: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dclab.new_dataset(path) as ds:
            for feat in sorted(set(ds.features_innate) | set(ds.features_basin)):
                if feat == "trace":
                    got[feat] = {k: np.asarray(ds["trace"][k][:]) for k in ds["trace"]}
                elif dclab.dfn.scalar_feature_exists(feat):
                    got[feat] = np.asarray(ds[feat][:])
                else:
                    got[feat] = [np.asarray(ds[feat][i]) for i in range(len(ds))]
    return got


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _dcnum_keys(path) -> list[str]:
    from dcnum.read import HDF5Data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with HDF5Data(path) as h5:
            return sorted(h5.keys())


def test_community_test_data_converts_faithfully(client, converted_tree, tmp_path,
                                                 monkeypatch):
    """Issue 21: per file no new IntegrityChecker cue, dcnum's keys, dclab's values equal."""
    files, src_root, dst_root = converted_tree
    assert len(files) >= 18, files  # 12 of dclab 0.73.4, 6 of dcnum 0.31.0
    monkeypatch.chdir(tmp_path)  # read from another working directory
    for src in files:
        out = dst_root / src.relative_to(src_root)
        new = integrity_cues(out) - integrity_cues(src)
        assert not new, f"{out}: {sorted(new)}"
        assert _dcnum_keys(out) == _dcnum_keys(src), out
        want, got = _dclab_values(src), _dclab_values(out)
        assert sorted(got) == sorted(want), out
        for feat in want:
            assert _same(want[feat], got[feat]), f"{out}: {feat} differs"
    assert dcbulk.verify(dst_root, client=client).ok


def test_every_log_line_within_dclab_limit_and_read_back(converted_tree):
    """Issue 21.1: long absolute paths are wrapped, and the log reads back exactly."""
    from dclab.rtdc_dataset.check import LOG_MAX_LINE_LENGTH as DCLAB_LIMIT
    assert LOG_MAX_LINE_LENGTH == DCLAB_LIMIT
    files, src_root, dst_root = converted_tree
    wrapped = 0
    for src in files:
        out = dst_root / src.relative_to(src_root)
        assert len(str(src)) > LOG_MAX_LINE_LENGTH  # so the path itself must be wrapped
        with h5py.File(out) as h5:
            for name in (n for n in h5["logs"] if is_provenance_log(n)):
                lines = h5["logs"][name][:]
                assert max(len(ln) for ln in lines) <= LOG_MAX_LINE_LENGTH, (out, name)
                wrapped += len(lines) - len(unwrap_lines(ln.decode() for ln in lines))
        doc = read_provenance(out)
        assert doc["source"] == str(src) and doc["mode"] == "convert"
    assert wrapped >= len(files)


@pytest.mark.parametrize("line", [
    "", "short", "x" * 100, "y" * 101, "z\\" * 120 + "z", '  "source": "' + "/é" * 80 + '",',
    "\\" + "a" * 250, "ab" * 99 + "\\\\" + "cd" * 40])
def test_wrap_lines_round_trip_within_the_limit(line):
    pieces = wrap_lines([line, "next"])
    assert all(len(p.encode()) <= LOG_MAX_LINE_LENGTH for p in pieces)
    assert unwrap_lines(pieces) == [line, "next"]


def test_single_file_verify_and_resume_read_wrapped_logs(client, tmp_path, capsys):
    """Issue 21.1: ``verify OUT.rtdc`` and resume adoption read a wrapped provenance log."""
    from dcbulk.bulk.manifest import MANIFEST_NAME
    src_dir = tmp_path / DEEP / DEEP
    src_dir.mkdir(parents=True)
    small_rtdc(src_dir / "x.rtdc", 40, seed=2)
    dst = tmp_path / "dst"
    assert dcbulk.convert_archive([src_dir], dst, client=client).count("done") == 1
    out = dst / "x.rtdc"
    with h5py.File(out) as h5:
        lines = h5["logs/dcbulk-convert"][:]
    assert max(len(ln) for ln in lines) <= LOG_MAX_LINE_LENGTH
    assert dcbulk.cli.main(["verify", str(out), "--workers", "1"]) == 0
    assert "1 equal" in capsys.readouterr().out
    manifest = dst / MANIFEST_NAME  # forget the record: the log alone must adopt it
    kept = [ln for ln in manifest.read_bytes().splitlines(keepends=True)
            if b'"relpath"' not in ln]
    manifest.write_bytes(b"".join(kept))
    again = dcbulk.convert_archive([src_dir], dst, client=client)
    assert [(f.status, f.reason) for f in again.files] == \
        [("skipped", "finished (found by its provenance log)")]


def test_mode_logs_within_the_limit_and_one_schema(client, tmp_path):
    """Issue 21.1 and 20.3: condense, reprocess, split, join write one schema, wrapped."""
    from dcbulk.provenance import SCHEMA_KEYS
    src_dir = tmp_path / DEEP / DEEP
    src_dir.mkdir(parents=True)
    a = small_rtdc(src_dir / "a.rtdc", 40, seed=2)
    small_rtdc(src_dir / "b.rtdc", 30, seed=3,
               meta={"experiment:date": "2030-01-01"})
    outs = {
        "condense": dcbulk.modes.condense([a], tmp_path / "c", client=client),
        "reprocess": dcbulk.reprocess([a], tmp_path / "r", _double, client=client),
        "split": dcbulk.modes.split([a], tmp_path / "s", events_per_file=25, client=client),
        "join": dcbulk.modes.join([src_dir], tmp_path / "j.rtdc", client=client),
    }
    for mode, report in outs.items():
        assert report.ok, (mode, [f.error for f in report.failed])
        for result in report.files:
            with h5py.File(result.output) as h5:
                for name, ds in h5["logs"].items():
                    assert max(len(ln) for ln in ds[:]) <= LOG_MAX_LINE_LENGTH, (mode, name)
                own = [n for n in h5["logs"] if is_provenance_log(n)]
            assert own == [f"dcbulk-{mode}"], (mode, own)
            doc = read_provenance(result.output)
            assert sorted(doc) == sorted(SCHEMA_KEYS), mode
            assert doc["mode"] == mode
            assert doc["source"] == (None if mode == "join" else str(a))


def _double(features):
    return {"userdef1": features["deform"] * 2}


def test_empty_group_is_kept_and_verify_notices_it_missing(client, tmp_path):
    """Issue 21.2: an empty ``events/trace`` stays; an output without it differs."""
    src = small_rtdc(tmp_path / "e.rtdc", 30, seed=4)
    with h5py.File(src, "a") as h5:
        h5["events"].create_group("trace")
    out = tmp_path / "out" / "e.rtdc"
    dcbulk.convert(src, out, client=client)
    with h5py.File(out) as h5:
        assert isinstance(h5["events/trace"], h5py.Group) and not len(h5["events/trace"])
    assert _dcnum_keys(out) == _dcnum_keys(src)
    assert dcbulk.verify(out, src, client=client).ok
    with h5py.File(out, "a") as h5:
        del h5["events/trace"]
    report = dcbulk.verify(out, src, client=client)
    assert not report.ok
    assert any("empty group 'events/trace'" in p for p in report.problems), report.problems


def test_condense_stores_a_computed_index_as_dclab(client, tmp_path):
    """Issue 21.3: a computed ``index`` is uint32, dclab's dtype (dclab's writer's rule)."""
    import dclab
    from dclab.rtdc_dataset.writer import FEATURES_UINT32
    assert "index" in FEATURES_UINT32
    (tmp_path / "in").mkdir()
    src = small_rtdc(tmp_path / "in" / "i.rtdc", 50, seed=6)
    with h5py.File(src, "a") as h5:
        if "index" in h5["events"]:
            del h5["events/index"]
    for kw in ({}, {"filter": "deform > 0"}):
        out_dir = tmp_path / f"out{len(kw)}"
        report = dcbulk.modes.condense([tmp_path / "in"], out_dir, client=client, **kw)
        assert report.ok, [f.error for f in report.failed]
        ref = tmp_path / f"dclab{len(kw)}.rtdc"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with dclab.new_dataset(src) as ds:
                if kw:
                    ds.config["filtering"]["deform min"] = 0
                    ds.config["filtering"]["deform max"] = 1e9
                    ds.apply_filter()
                ds.export.hdf5(ref, features=["index", "deform"], filtered=bool(kw))
        with h5py.File(report.files[0].output) as h5, h5py.File(ref) as r:
            assert h5["events/index"].dtype == r["events/index"].dtype == np.uint32
            np.testing.assert_array_equal(h5["events/index"][:], r["events/index"][:])


def test_condense_keeps_feature_attributes_and_adds_statistics_as_dclab(client, tmp_path):
    """A file without ``index`` is condensed through ``store_features``, which dropped a
    feature's own attributes (a ``unit``) that dclab-condense keeps; where the source has
    no ``min``/``max``/``mean``, condense computes them as dclab-condense does (unfiltered,
    filtered and with ancillary features), while a conversion stores none, as dcnum's
    ``copy_features`` (dclab-compress computes them). Verify agrees with both, and finds a
    statistic changed."""
    from dclab.cli import condense
    from dcnum.write import copy_features
    (tmp_path / "in").mkdir()
    src = small_rtdc(tmp_path / "in" / "s.rtdc", 40, seed=9)
    with h5py.File(src, "a") as h5:
        del h5["events/index"]
        h5["events/deform"].attrs["unit"] = "none"
        for name in h5["events"]:
            for key in ("min", "max", "mean"):
                h5["events"][name].attrs.pop(key, None)  # none in the source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        condense(path_in=src, path_out=tmp_path / "ref.rtdc")
    with h5py.File(src) as s, h5py.File(tmp_path / "dcnum.rtdc", "w") as d:
        copy_features(s, d, ["deform"])
    runs = {"condense": dict(), "filtered": dict(filter="deform > 0.01"),
            "ancillary": dict(ancillary=True)}
    for label, kw in runs.items():
        report = dcbulk.modes.condense([tmp_path / "in"], tmp_path / label, client=client,
                                       **kw)
        assert report.ok, [f.error for f in report.failed]
    conv = dcbulk.convert_archive([tmp_path / "in"], tmp_path / "convert", client=client)
    assert conv.ok
    with h5py.File(tmp_path / "ref.rtdc") as ref, h5py.File(tmp_path / "dcnum.rtdc") as dcn:
        want = dict(ref["events/deform"].attrs)
        assert set(want) == {"unit", "min", "max", "mean"}
        for label in ("condense", "ancillary"):
            with h5py.File(tmp_path / label / "s.rtdc") as h5:
                assert dict(h5["events/deform"].attrs) == want, label
                assert dict(h5["events/area_um"].attrs) == dict(
                    ref["events/area_um"].attrs), label
        with h5py.File(tmp_path / "convert" / "s.rtdc") as h5:
            assert dict(h5["events/deform"].attrs) == dict(dcn["events/deform"].attrs) == {
                "unit": "none"}
        with h5py.File(tmp_path / "filtered" / "s.rtdc") as h5:
            got = h5["events/deform"]
            assert got.attrs["unit"] == "none" and got.shape[0] < 40
            assert got.attrs["min"] == got[:].min() > 0.01
    for label in ("convert", "condense"):
        assert dcbulk.verify(tmp_path / label, client=client).ok, label
    out = tmp_path / "condense" / "s.rtdc"
    with h5py.File(out, "a") as h5:
        h5["events/deform"].attrs["mean"] = 0.5
    problems = dcbulk.verify(tmp_path / "condense", client=client).problems
    assert any("feature 'deform': attribute 'mean' is 0.5, expected" in p
               and "(that of its events)" in p for p in problems), problems


def test_condense_log_says_it_has_a_basin_to_its_source(client, tmp_path):
    """Issue 21.4: ``basin_to_source`` is true in the ``dcbulk-condense`` log."""
    (tmp_path / "in").mkdir()
    src = small_rtdc(tmp_path / "in" / "c.rtdc", 30, seed=7)
    report = dcbulk.modes.condense([tmp_path / "in"], tmp_path / "out", client=client)
    out = report.files[0].output
    doc = read_provenance(out)
    with h5py.File(out) as h5:
        names = [json_basin["name"] for json_basin in _basins(h5)]
    assert "source" in names
    assert doc["basin_to_source"] is True and doc["options"]["basin_to_source"] is True
    assert doc["source"] == str(src)


def _basins(h5):
    import json
    for key in h5.get("basins", {}):
        yield json.loads("\n".join(x.decode() for x in h5["basins"][key][:]))


def test_verify_accepts_quiet(client, tmp_path, capsys):
    """Issue 21.5: ``dcbulk verify -q`` is no usage error."""
    src = small_rtdc(tmp_path / "q.rtdc", 20, seed=8)
    out = tmp_path / "out" / "q.rtdc"
    dcbulk.convert(src, out, client=client)
    status = dcbulk.cli.main(["verify", str(out), "--against", str(src), "-q",
                              "--workers", "1"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.strip().splitlines()[-1].startswith("dcbulk verify: 1 file, 1 equal")


def test_a_basin_dclab_writes_unmapped_is_kept_and_verify_notices_it_missing(tmp_path):
    """dclab's writer stores an unmapped file basin as ``"mapping": "same"``; dcnum's rule
    (a mapping must be a feature) left it out of every output, so features dclab found
    through it (here the images) were gone from the output, and verify said 'equal'. It is
    kept, unmapped (no ``mapping`` key: dclab and dcnum both read that as unmapped), mapped
    by the filter when there is one; verify reports a source's file basin missing."""
    import dclab
    from dclab.rtdc_dataset.writer import RTDCWriter
    from dcnum.read import HDF5Data
    full = small_rtdc(tmp_path / "full.rtdc", 30, seed=4)
    small = tmp_path / "src" / "small.rtdc"
    small.parent.mkdir()
    with dclab.new_dataset(full) as ds, RTDCWriter(small, mode="reset") as hw:
        hw.store_metadata(ds.config.as_dict(pop_filtering=True))
        hw.store_feature("deform", ds["deform"])
        hw.store_basin(basin_name="raw", basin_type="file", basin_format="hdf5",
                       basin_locs=[str(full)], basin_feats=["image", "area_um"])
    with h5py.File(small, "r") as h5:
        assert '"mapping": "same"' in "".join(h5["basins"][list(h5["basins"])[0]].asstr()[:])
    for extra in ([], ["--filter", "deform > 0.02"]):
        dst = tmp_path / f"dst{len(extra)}"
        assert dcbulk.cli.main(["convert", str(small.parent), "-o", str(dst), "-q", *extra]) == 0
        out = dst / "small.rtdc"
        with dclab.new_dataset(full) as ref, dclab.new_dataset(out) as ds:
            keep = np.flatnonzero(ref["deform"] > 0.02) if extra else np.arange(30)
            assert np.array_equal(ds["image"][:], ref["image"][:][keep])
        data = HDF5Data(out)
        assert "image" in data.keys() and len(data["image"]) == keep.size
        data.close()
        assert dcbulk.verify(dst).ok
    with h5py.File(dst / "small.rtdc", "a") as h5:
        del h5["basins"][[k for k in h5["basins"]
                          if '"raw"' in "".join(h5["basins"][k].asstr()[:])][0]]
    assert dcbulk.verify(dst).problems == [  # its map is now the map of no basin too
        f"{dst / 'small.rtdc'}: basin 'raw' of the source is missing",
        f"{dst / 'small.rtdc'}: 'events/basinmap0' is the mapping of no basin of the output"]


def _not_carried_line(src, dst, capsys) -> str:
    """``dcbulk convert`` of ``src``'s directory into ``dst``: its one "not carried" line."""
    assert dcbulk.cli.main(["convert", str(src.parent), "-o", str(dst), "-q"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "not carried" in line]
    assert len(err) == 1, err
    return err[0]


def test_feature_attributes_are_kept_and_what_is_left_out_is_said(tmp_path, capsys):
    """A feature's own attributes (a ``unit``) were dropped, where dclab-compress and dcnum's
    ``copy_features`` keep them; top-level objects besides the format's groups and the
    attributes of ``events`` (which those leave out too) went without a word. Now the
    attributes are kept and verified, and what is left out is one warning line."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 20, seed=8)
    with h5py.File(src, "a") as h5:
        h5["events/deform"].attrs["unit"] = "none"
        h5["events/area_um"].attrs["range"] = np.array([0.0, 100.0])
        # variable-length text and an empty value were dropped with references
        h5["events/deform"].attrs["names"] = np.array(["a", "bb"], dtype=h5py.string_dtype())
        h5["events/deform"].attrs["empty"] = h5py.Empty("f8")
        h5["events/area_um"].attrs["ref"] = h5["events/deform"].ref  # names the source's
        h5["junk"] = [1, 2]
        h5["events"].attrs["note"] = "x"
    dst = tmp_path / "dst"
    assert _not_carried_line(src, dst, capsys).endswith(
        "s.rtdc: not carried into its outputs (dclab's and dcnum's exports leave them out "
        "too): /junk, attribute 'note' of /events")
    with h5py.File(dst / "s.rtdc", "r") as h5:
        assert h5["events/deform"].attrs["unit"] == "none"
        assert np.array_equal(h5["events/area_um"].attrs["range"], [0.0, 100.0])
        assert list(h5["events/deform"].attrs["names"]) == ["a", "bb"]
        assert h5["events/deform"].attrs["empty"] == h5py.Empty("f8")
        assert "ref" not in h5["events/area_um"].attrs
        assert "junk" not in h5 and not h5["events"].attrs
    assert dcbulk.verify(dst).ok
    with h5py.File(dst / "s.rtdc", "a") as h5:
        h5["events/deform"].attrs["unit"] = "m"
        h5["events/time"].attrs["added"] = 1
        h5["events/area_um"].attrs["range"] = np.zeros(5000)  # shown on one line
        h5["events/size_x"].attrs["x"] = 1
        h5["junk"] = [3]  # what no output carries: not from the source
        h5["events"].attrs["note"] = "x"
        log = sorted(h5["logs"])[0]  # a copied log's attributes were not compared
        h5["logs"][log].attrs["software"] = "another tool"
    out = dst / "s.rtdc"
    problems = dcbulk.verify(dst).problems
    assert set(problems) >= {
        f"{out}: feature 'deform': attribute 'unit' is 'm', source has 'none'",
        f"{out}: feature 'time': attribute 'added' is not the source's",
        f"{out}: feature 'size_x': attribute 'x' is not the source's",
        f"{out}: /junk is not from the source (no output carries it)",
        f"{out}: attribute 'note' of /events is not from the source (no output carries it)",
        f"{out}: log '{log}' differs from the source"}
    big = [p for p in problems if "'range' is array([0., 0., 0.," in p]
    assert len(big) == 1 and big[0].endswith("source has array([  0., 100.])"), problems
    assert all("\n" not in p and len(p) < 400 for p in problems)


def test_attributes_of_format_groups_left_out_are_said_and_verified(tmp_path, capsys):
    """Attributes of ``events/trace``, ``logs``, ``tables`` and of an internal basin's data
    were left out of every output without a word (dclab's and dcnum's exports leave them
    out too), and verify did not look at them: now one warning line names them, and an
    output holding such an attribute is a problem line."""
    from dcbulk.write import HDF5Writer
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 20, seed=8, with_traces=True)
    with h5py.File(src, "a") as h5:
        assert "trace" in h5["events"] and "logs" in h5 and "tables" in h5
        h5["events/trace"].attrs["unit"] = "a.u."
        h5["logs"].attrs["owner"] = "lab"
        h5["tables"].attrs["kind"] = "t"
        with HDF5Writer(h5) as hw:
            hw.store_basin(name="int", mapping=np.arange(20) % 2,
                           internal_data={"userdef3": np.array([1.0, 2.0])})
        h5["basin_events/userdef3"].attrs["unit"] = "m"
    dst = tmp_path / "dst"
    assert _not_carried_line(src, dst, capsys).endswith(
        "attribute 'unit' of /events/trace, attribute 'owner' of /logs, attribute 'kind' of "
        "/tables, attribute 'unit' of /basin_events/userdef3")
    out = dst / "s.rtdc"
    assert dcbulk.verify(dst).ok
    with h5py.File(out, "a") as h5:
        h5["events/trace"].attrs["unit"] = "a.u."
        h5["logs"].attrs["owner"] = "lab"
    assert dcbulk.verify(out).problems == [  # the file alone: its size changed too
        f"{out}: attribute 'unit' of /events/trace is not from the source (no output "
        f"carries it)",
        f"{out}: attribute 'owner' of /logs is not from the source (no output carries it)"]


def test_a_same_basin_of_another_measurement_is_not_carried(tmp_path, capsys):
    """A basin stored as ``"mapping": "same"`` whose file is another measurement's: dclab
    ignores it (the identifiers must match exactly); written unmapped into the output,
    dcnum took that file's rows as this file's events. It is left out, in one line."""
    import json

    import dclab
    from dclab.rtdc_dataset.writer import RTDCWriter
    from dcnum.read import HDF5Data
    full = small_rtdc(tmp_path / "src" / "full.rtdc", 30, seed=4)
    other = small_rtdc(tmp_path / "src" / "other.rtdc", 40, seed=5)  # another identifier
    small = tmp_path / "src" / "small.rtdc"
    with dclab.new_dataset(full) as ds, RTDCWriter(small, mode="reset") as hw:
        hw.store_metadata(ds.config.as_dict(pop_filtering=True))
        hw.store_feature("deform", ds["deform"])
        hw.store_basin(basin_name="raw", basin_type="file", basin_format="hdf5",
                       basin_locs=[str(full)], basin_feats=["image"])
    with h5py.File(small, "a") as h5:  # pointed at another measurement's file
        key = list(h5["basins"])[0]
        doc = json.loads("\n".join(h5["basins"][key].asstr()[:]))
        doc["paths"] = [str(other)]
        doc.pop("identifier", None)
        del h5["basins"][key]
        h5["basins"][key] = json.dumps(doc).splitlines()
    with dclab.new_dataset(small) as ds:
        assert "image" not in ds.features  # dclab ignores it
    dst = tmp_path / "dst"
    assert dcbulk.cli.main(["convert", str(small), "-o", str(dst), "-q"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "basin 'raw'" in line]
    assert len(err) == 1 and f"is the file {other}, of another measurement" in err[0], err
    data = HDF5Data(dst / "small.rtdc")
    assert "image" not in data.keys()  # dcnum took other.rtdc's first 30 images before
    data.close()
    assert dcbulk.verify(dst).ok
