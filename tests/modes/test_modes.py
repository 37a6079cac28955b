"""The modes beyond compress (reprocess, condense, split, join), each checked on data.

Every mode is compared with dclab's own command on the same inputs (same events, same values
of every feature dclab writes); outputs are opened with dclab and dcnum from another working
directory and checked with ``dclab-verify-dataset``.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.provenance import read_provenance
from dcbulk.read import get_measurement_identifier
from dcbulk.synth import make_rtdc
from dcbulk.verify.compare import log_lines
from helpers import assert_features_equal, dclab_verify, stored_chunks

dclab = pytest.importorskip("dclab")
pytest.importorskip("dcnum")


@contextlib.contextmanager
def elsewhere(path):
    """Run the block in another working directory (basins must not rely on the cwd)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def open_dclab(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dclab.new_dataset(path)


def dcnum_features(path, names):
    from dcnum.read import HDF5Data
    with HDF5Data(path) as data:
        return {name: np.asarray(data[name][:]) for name in names}


_INFO = ("Checking ", "Compression:", "Data file format:", "Fluorescence:", "Check Complete")


@functools.lru_cache(maxsize=None)
def _verify(path: str):
    result = dclab_verify(path)
    lines = {ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", result.output).splitlines()}
    return result, {ln for ln in lines if ln and not ln.startswith(_INFO)
                    and "warn" not in ln.lower()}


def assert_verify_adds_nothing(source, output) -> None:
    """``dclab-verify-dataset`` finds nothing in the output that it does not find in the source."""
    src, src_lines = _verify(str(source))
    out, out_lines = _verify(str(output))
    assert out.violations <= src.violations and out.alerts <= src.alerts, out.output
    assert out_lines <= src_lines, sorted(out_lines - src_lines)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory, shared_data_dir):
    """Two synthetic files (one in a subdirectory) plus a real sample file."""
    root = tmp_path_factory.mktemp("archive")
    make_rtdc(root / "a.rtdc", 120, seed=11, image_shape=(40, 60), trace_length=32)
    (root / "sub").mkdir()
    make_rtdc(root / "sub" / "b.rtdc", 70, seed=12, image_shape=(40, 60), trace_length=32)
    shutil.copy(shared_data_dir / "cytoshot-test-data.rtdc", root / "c.rtdc")
    return root


# -- reprocess -----------------------------------------------------------------------------

def image_mean(features):
    return {"userdef1": features["image"].mean(axis=(1, 2))}


def image_mean_plus_one(features):
    return {"userdef1": features["image"].mean(axis=(1, 2)) + 1}


def test_reprocess_new_feature_and_basin_to_source(small_archive, tmp_path, client):
    out = tmp_path / "out"
    report = dcbulk.reprocess([small_archive], out, image_mean, client=client)
    assert report.ok, [f.error for f in report.failed]
    assert report.count("done") == 3
    other = tmp_path / "cwd"
    other.mkdir()
    for res in report.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            expect = src["events/image"][:].mean(axis=(1, 2))
            assert sorted(dst["events"]) == ["userdef1"]
            np.testing.assert_array_equal(dst["events/userdef1"][:], expect)
            # same events: same measurement identifier (the basin's identifier must match)
            assert get_measurement_identifier(dst) == get_measurement_identifier(src)
            deform = src["events/deform"][:]
        with elsewhere(other):
            with open_dclab(res.output) as ds:
                np.testing.assert_array_equal(ds["userdef1"], expect)
                np.testing.assert_array_equal(ds["deform"], deform)
                assert "image" in ds
            got = dcnum_features(res.output, ["deform", "userdef1"])
            np.testing.assert_array_equal(got["deform"], deform)
            np.testing.assert_array_equal(got["userdef1"], expect)
        assert_verify_adds_nothing(res.source, res.output)


def test_reprocess_small_files_are_made_by_their_file_task_alone(small_archive, tmp_path,
                                                                client):
    """A small file's features are computed and written inside its own task: no writer or
    encode task goes to the cluster, where it could wait behind a worker thread that another
    file's never-returning function blocks (which made that file time out too)."""
    from distributed import get_task_stream
    out = tmp_path / "out"
    with get_task_stream(client) as ts:
        report = dcbulk.reprocess([small_archive], out, image_mean, client=client)
    assert report.ok, [f.error for f in report.failed]
    keys = [str(t["key"]) for t in ts.data]
    assert len(keys) == 3 and all(k.startswith("dcbulk-file-") for k in keys), keys
    for res in report.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            np.testing.assert_array_equal(dst["events/userdef1"][:],
                                          src["events/image"][:].mean(axis=(1, 2)))
        assert_verify_adds_nothing(res.source, res.output)


def make_image_stat(offset):
    def image_stat(features):
        return {"userdef1": features["image"].mean(axis=(1, 2)) + offset}
    return image_stat


def test_reprocess_resumes_and_redoes_after_function_change(small_archive, tmp_path, client):
    out = tmp_path / "out"
    first = dcbulk.reprocess([small_archive], out, make_image_stat(0), client=client)
    assert first.count("done") == 3
    again = dcbulk.reprocess([small_archive], out, make_image_stat(0), client=client)
    assert again.count("skipped") == 3 and again.count("done") == 0
    # the same function, edited (here: another captured value): every file is made again
    preview = dcbulk.reprocess([small_archive], out, make_image_stat(1), dry_run=True)
    assert preview.count("planned") == 3, [(f.status, f.reason) for f in preview.files]
    changed = dcbulk.reprocess([small_archive], out, make_image_stat(1), client=client)
    assert changed.count("done") == 3, [(f.status, f.reason, f.error) for f in changed.files]
    for res in changed.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            np.testing.assert_array_equal(dst["events/userdef1"][:],
                                          src["events/image"][:].mean(axis=(1, 2)) + 1)
    assert dcbulk.reprocess([small_archive], out, make_image_stat(1),
                            client=client).count("skipped") == 3
    # another function into the same directory is refused like changed options ...
    with pytest.raises(dcbulk.errors.ManifestError, match="image_mean_plus_one"):
        dcbulk.reprocess([small_archive], out, image_mean_plus_one, client=client)
    # ... unless forced
    forced = dcbulk.reprocess([small_archive], out, image_mean_plus_one, client=client,
                              force=True)
    assert forced.count("done") == 3


def test_function_identity_follows_code_and_captured_values():
    from dcbulk.modes.common import func_identity

    def make(offset):
        def func(features):
            return {"userdef1": features["image"].mean(axis=(1, 2)) + offset}
        return func

    assert func_identity(make(1)) == func_identity(make(1))
    assert func_identity(make(1)) != func_identity(make(2))
    assert func_identity(image_mean) != func_identity(image_mean_plus_one)
    assert func_identity(image_mean)["name"].endswith("test_modes.image_mean")


def broken_on_short_files(features):
    if features["deform"].shape[0] < 100:
        raise RuntimeError("too short")
    return {"userdef2": features["deform"] * 2}


def test_reprocess_failures_are_per_file(small_archive, tmp_path, client):
    report = dcbulk.reprocess([small_archive], tmp_path / "out", broken_on_short_files,
                              client=client)
    failed = {Path(f.source).name: f.error for f in report.failed}
    assert set(failed) == {"b.rtdc", "c.rtdc"}, failed
    assert all("too short" in e and "broken_on_short_files" in e for e in failed.values())
    done = [f for f in report.files if f.status == "done"]
    assert [Path(f.source).name for f in done] == ["a.rtdc"]
    with h5py.File(done[0].source) as src, h5py.File(done[0].output) as dst:
        np.testing.assert_array_equal(dst["events/userdef2"][:], src["events/deform"][:] * 2)


def exits_on_short_files(features):
    if features["deform"].shape[0] < 100:
        raise SystemExit(3)
    return {"userdef2": features["deform"] * 2}


def multi_line_failure(features):
    raise ValueError("first\nsecond\nthird")


def contour_as_one_array(features):
    return {"contour": features["deform"] * 1}


def test_reprocess_a_function_that_exits_or_misbehaves_fails_that_file_in_one_line(
        small_archive, tmp_path, client):
    """``sys.exit()`` in the user's function killed the worker four times over and failed
    with dask's KilledWorker text; a multi-line message made a multi-line error; a
    ``contour`` array was stored as done though dclab could not read the file; a scheduler
    address given as ``client`` was an AttributeError."""
    report = dcbulk.reprocess([small_archive], tmp_path / "o1", exits_on_short_files,
                              client=client)
    failed = {Path(f.source).name: f.error for f in report.failed}
    assert set(failed) == {"b.rtdc", "c.rtdc"}, failed
    assert all("exits_on_short_files failed on" in e and "SystemExit: 3" in e
               for e in failed.values()), failed
    assert [Path(f.source).name for f in report.files if f.status == "done"] == ["a.rtdc"]
    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "o2", multi_line_failure,
                              client=client)
    assert report.failed[0].error.endswith("ValueError: first second third")
    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "o3",
                              contour_as_one_array, client=client)
    assert "the feature name 'contour' is dclab's contour" in report.failed[0].error
    assert not list((tmp_path / "o3").glob("*.rtdc"))
    with pytest.raises(dcbulk.errors.UsageError, match="client must be a distributed.Client"):
        dcbulk.reprocess([small_archive], tmp_path / "o4", image_mean,
                         client="tcp://127.0.0.1:1")
    assert not (tmp_path / "o4").exists()


def test_reprocess_hands_only_the_chosen_features(small_archive, tmp_path, client):
    seen = []

    def brightest(features):
        seen.append(sorted(features))  # runs on a worker: only its return value comes back
        assert sorted(features) == ["image", "mask"], sorted(features)
        return {"userdef3": features["image"].max(axis=(1, 2)).astype(np.float64)}

    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "out", brightest,
                              features=["image", "mask"], client=client)
    assert report.ok, [f.error for f in report.failed]
    with h5py.File(small_archive / "a.rtdc") as src, h5py.File(report.files[0].output) as h5:
        np.testing.assert_array_equal(h5["events/userdef3"][:],
                                      src["events/image"][:].max(axis=(1, 2)))
    log = read_provenance(report.files[0].output)
    assert log["mode"] == "reprocess" and log["details"]["new features"] == ["userdef3"]
    assert log["details"]["func"]["name"].endswith("brightest")


def test_reprocess_takes_one_feature_name_as_one_feature(small_archive, tmp_path, client):
    def doubled(features):
        assert sorted(features) == ["deform"], sorted(features)  # not 'd', 'e', 'f', ...
        return {"userdef4": features["deform"] * 2}

    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "out", doubled,
                              features="deform", client=client)
    assert report.ok, [f.error for f in report.failed]
    with h5py.File(small_archive / "a.rtdc") as src, h5py.File(report.files[0].output) as h5:
        np.testing.assert_array_equal(h5["events/userdef4"][:], src["events/deform"][:] * 2)


def test_reprocess_rejects_bad_results(small_archive, tmp_path, client):
    def wrong_length(features):
        return {"userdef1": features["deform"][:5]}
    report = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "out", wrong_length,
                              client=client)
    assert report.count("failed") == 1
    assert "shape (5,)" in report.files[0].error and "120 events" in report.files[0].error
    assert not (tmp_path / "out" / "a.rtdc").exists()


def doubled_deform(features):
    return {"userdef2": features["deform"] * 2, "deform": features["deform"] * 2}


def test_reprocess_refuses_a_feature_name_the_source_has(small_archive, tmp_path, client):
    """A function returning 'deform' made it the output's own 'deform', which dclab reads
    instead of the source's (reached through the output's basin): the source's values were
    hidden without a word. Now that file fails in one line saying what to do instead."""
    source = small_archive / "a.rtdc"
    report = dcbulk.reprocess([source], tmp_path / "out", doubled_deform, client=client)
    (failed,) = report.failed
    assert failed.error == (
        f"PlanError: {doubled_deform.__module__}.doubled_deform returned 'deform', which "
        f"{source} has "
        f"already; the output's own 'deform' would hide the source's (dclab and dcnum read "
        f"it first); return it under a name the source does not have"), failed.error
    assert not list((tmp_path / "out").glob("*.rtdc"))


#: what ``unstorable`` returns for a file of so many events, and what its one line says
UNSTORABLE = {40: ("user\x00def", "'user\\x00def' holds a NUL"),  # was stored as 'user'
              41: ("../x", "'../x' holds '/'"),                      # was events/../x
              42: ("a/b", "'a/b' holds '/'"),                        # was events/a/b
              43: ("..", "'..' is or holds"),
              44: ("", "'' is no feature name"),
              45: ("userdef1", "'userdef1' holds Python objects")}   # was dask's bare error


def unstorable(features):
    name, _ = UNSTORABLE[features["deform"].shape[0]]
    if name == "userdef1":
        return {name: np.array([object()] * 45)}
    return {"userdef2": features["deform"] * 2, name: features["deform"]}


def test_reprocess_refuses_names_that_are_no_names_and_python_objects(tmp_path, client):
    src = tmp_path / "src"
    src.mkdir()
    for n in UNSTORABLE:
        make_rtdc(src / f"{n}.rtdc", n, seed=n)
    report = dcbulk.reprocess([src], tmp_path / "out", unstorable, client=client)
    assert report.count("failed") == len(UNSTORABLE), [(f.status, f.error) for f in report.files]
    for res in report.files:
        expect = UNSTORABLE[int(Path(res.source).stem)][1]
        assert "\n" not in res.error and "PlanError" in res.error, res.error
        assert "unstorable" in res.error and expect in res.error, res.error
    assert not list((tmp_path / "out").rglob("*.rtdc"))


# -- dclab's commands on the same inputs ---------------------------------------------------

def _dclab_quiet(func, **kwargs):
    with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):
        warnings.simplefilter("ignore")
        return func(**kwargs)


def event_names(h5) -> list[str]:
    """Datasets in ``events`` (``trace/x`` style); contours are not compared."""
    names = []
    for key, obj in h5["events"].items():
        if isinstance(obj, h5py.Group):
            names += [f"{key}/{sub}" for sub in obj] if key != "contour" else []
        else:
            names.append(key)
    return sorted(names)


def assert_same_as_dclab(mine, theirs, *, skip=()) -> list[str]:
    """Every feature dclab wrote is in ours with the same events and values."""
    with h5py.File(mine) as m, h5py.File(theirs) as t:
        names = [n for n in event_names(t) if n not in skip]
        assert names
        missing = sorted(set(names) - set(event_names(m)))
        assert not missing, f"{mine} lacks {missing} that dclab wrote"
        assert m.attrs["experiment:event count"] == t.attrs["experiment:event count"]
        for name in names:
            np.testing.assert_array_equal(m["events"][name][:], t["events"][name][:],
                                          err_msg=f"{mine}: {name}")
    return names


def test_condense_matches_dclab_condense(small_archive, tmp_path, client):
    from dclab.cli import condense as dclab_condense
    report = dcbulk.modes.condense([small_archive], tmp_path / "out", client=client)
    assert report.ok and report.count("done") == 3, [f.error for f in report.failed]
    other = tmp_path / "cwd"
    other.mkdir()
    for res in report.files:
        ref = tmp_path / f"dclab-{Path(res.output).name}"
        _dclab_quiet(dclab_condense, path_in=res.source, path_out=ref,
                     store_ancillary_features=False)
        names = assert_same_as_dclab(res.output, ref)
        with h5py.File(res.output) as out, h5py.File(res.source) as src:
            assert event_names(out) == names  # scalars only, exactly dclab's set
            assert all(out["events"][n].ndim == 1 for n in names)
            image = src["events/image"][:] if "image" in src["events"] else None
            rest = {k for k, v in src["events"].items() if k != "contour"
                    and (isinstance(v, h5py.Group) or v.ndim > 1)}
            assert dict(out.attrs)["experiment:sample"] == dict(src.attrs)["experiment:sample"]
            assert set(out.get("logs", {})) >= set(src.get("logs", {}))
        with elsewhere(other):  # the rest through the basin to the source
            with open_dclab(res.output) as ds:
                assert rest <= set(ds.features), rest - set(ds.features)
                if image is not None:
                    np.testing.assert_array_equal(ds["image"][:], image)
        assert_verify_adds_nothing(res.source, res.output)


def test_condense_takes_scalars_from_basins_as_dclab(small_archive, tmp_path, client):
    """A file whose features live in a basin (a reprocess output): condensed as dclab does."""
    from dclab.cli import condense as dclab_condense
    made = dcbulk.reprocess([small_archive / "a.rtdc"], tmp_path / "rep", image_mean,
                            client=client)
    basin_only = made.files[0].output
    report = dcbulk.modes.condense([basin_only], tmp_path / "out", client=client)
    assert report.ok, [f.error for f in report.failed]
    ref = tmp_path / "dclab.rtdc"
    _dclab_quiet(dclab_condense, path_in=basin_only, path_out=ref,
                 store_ancillary_features=False)
    names = assert_same_as_dclab(report.files[0].output, ref)
    assert {"userdef1", "deform", "area_um", "index"} <= set(names)
    with h5py.File(small_archive / "a.rtdc") as src, \
            h5py.File(report.files[0].output) as out:
        np.testing.assert_array_equal(out["events/deform"][:], src["events/deform"][:])
    with elsewhere(tmp_path):
        with open_dclab(report.files[0].output) as ds:
            assert ds["image"].shape[0] == 120  # through the basins, two levels down
    assert_verify_adds_nothing(small_archive / "a.rtdc", report.files[0].output)


def test_condense_ancillary_matches_dclab(small_archive, tmp_path, client):
    from dclab.cli import condense as dclab_condense
    source = small_archive / "a.rtdc"
    report = dcbulk.modes.condense([source], tmp_path / "out", ancillary=True, client=client)
    assert report.ok, [f.error for f in report.failed]
    ref = tmp_path / "dclab.rtdc"
    _dclab_quiet(dclab_condense, path_in=source, path_out=ref)
    names = assert_same_as_dclab(report.files[0].output, ref)
    with h5py.File(source) as src:
        assert set(names) - set(src["events"]), "dclab computed no ancillary feature"
    with elsewhere(tmp_path):
        got = dcnum_features(report.files[0].output, ["volume", "image"])
    assert got["image"].shape[0] == 120


def test_condense_ancillary_without_dclab_is_one_line(small_archive, tmp_path, client):
    def hide(name):  # on each worker: "import dclab" fails, find_spec finds nothing
        import sys
        sys.modules[f"_hidden_{name}"] = sys.modules.get(name)
        sys.modules[name] = None

    def restore(name):
        import sys
        module = sys.modules.pop(f"_hidden_{name}")
        if module is None:
            del sys.modules[name]
        else:
            sys.modules[name] = module

    client.run(hide, "dclab")
    try:
        with pytest.raises(dcbulk.errors.PlanError) as info:
            dcbulk.modes.condense([small_archive], tmp_path / "out", ancillary=True,
                                  client=client)
    finally:
        client.run(restore, "dclab")
    assert "\n" not in str(info.value) and "pip install 'dcbulk[dclab]'" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def split_source(tmp_path_factory):
    """250 events whose first image is all zero (dclab-split leaves such an event out)."""
    path = tmp_path_factory.mktemp("split") / "long.rtdc"
    make_rtdc(path, 250, seed=21, image_shape=(40, 60), trace_length=32)
    with h5py.File(path, "a") as h5:
        h5["events/image"][0] = 0
    return path


def test_split_matches_dclab_split(split_source, tmp_path, client):
    from dclab.cli import split as dclab_split
    report = dcbulk.modes.split([split_source], tmp_path / "out", events_per_file=100,
                                client=client)
    assert report.ok and report.count("done") == 3, [f.error for f in report.failed]
    ref_dir = tmp_path / "dclab"
    ref_dir.mkdir()
    refs = _dclab_quiet(dclab_split, path_in=split_source, path_out=ref_dir,
                        split_events=100, ret_out_paths=True)
    mine = sorted(Path(f.output) for f in report.files)
    assert [p.name for p in mine] == [p.name for p in refs] == \
        ["long_0001.rtdc", "long_0002.rtdc", "long_0003.rtdc"]
    other = tmp_path / "cwd"
    other.mkdir()
    identifiers = set()
    for k, (out, ref) in enumerate(zip(mine, refs), start=1):
        assert_same_as_dclab(out, ref, skip=("basinmap0",))
        with h5py.File(out) as h5, h5py.File(ref) as r:
            assert h5.attrs["experiment:sample"] == r.attrs["experiment:sample"]
            assert h5.attrs["experiment:sample"].endswith(f" {k}/3")
            identifiers.add(h5.attrs["experiment:run identifier"])
            deform = h5["events/deform"][:]
        with elsewhere(other):  # complete alone, and the source is reachable
            with open_dclab(out) as ds:
                np.testing.assert_array_equal(ds["deform"], deform)
                assert len(ds) == (99, 100, 50)[k - 1]
            assert dcnum_features(out, ["deform"])["deform"].size == len(deform)
        assert_verify_adds_nothing(split_source, out)
    assert len(identifiers) == 3
    assert not any(i == get_measurement_identifier(h5py.File(split_source)) for i in identifiers)


def test_verify_of_split_pieces_names_a_missing_piece(split_source, tmp_path):
    """Split writes no manifest: with one piece deleted, ``dcbulk verify pieces/*.rtdc``
    said "2 files, 2 equal". A piece a filter left without events was never written and
    is not missing."""
    pieces = dcbulk.modes.split([split_source], tmp_path / "p", events_per_file=100)
    assert pieces.ok and pieces.count("done") == 3
    gone = tmp_path / "p" / "long_0003.rtdc"
    gone.unlink()
    report = dcbulk.verify(sorted((tmp_path / "p").glob("*.rtdc")))
    assert report.problems == [f"{gone}: missing (one of the 3 pieces of {split_source}; "
                               f"split writes no manifest: split it again)"], report.problems
    filtered = dcbulk.modes.split([split_source], tmp_path / "f", events_per_file=100,
                                  filter="index <= 100")  # pieces 2 and 3: no events
    assert filtered.ok and filtered.count("done") == 1
    assert dcbulk.verify(sorted((tmp_path / "f").glob("*.rtdc"))).ok


def test_split_then_join_gives_back_the_source(split_source, tmp_path, client):
    pieces = dcbulk.modes.split([split_source], tmp_path / "pieces", events_per_file=60,
                                include_empty_boundary_images=True, client=client)
    assert pieces.count("done") == 5
    joined = dcbulk.modes.join(sorted(f.output for f in pieces.files), tmp_path / "j.rtdc",
                               client=client)
    assert joined.ok, [f.error for f in joined.failed]
    assert_features_equal(split_source, joined.files[0].output)


def test_join_without_a_cluster_is_made_in_process(split_source, tmp_path, client,
                                                  monkeypatch):
    """A join asks for no cluster: its blocks are made by threads of this process, and
    the chunks stored are those of a join on a cluster."""
    import dcbulk.bulk.executor as executor
    pieces = dcbulk.modes.split([split_source], tmp_path / "pieces", events_per_file=60,
                                include_empty_boundary_images=True, client=client)
    inputs = sorted(f.output for f in pieces.files)
    there = dcbulk.modes.join(inputs, tmp_path / "there" / "j.rtdc", client=client)
    monkeypatch.setattr(executor, "client_context",
                        lambda *a, **k: pytest.fail("a cluster was started for a join"))
    here = dcbulk.modes.join(inputs, tmp_path / "here" / "j.rtdc")
    assert here.ok and there.ok and here.dashboard is None
    assert_features_equal(split_source, here.files[0].output)
    assert stored_chunks(here.files[0].output) == stored_chunks(there.files[0].output)
    assert sorted(os.listdir(tmp_path / "here")) == ["j.rtdc"]  # no marker left
    monkeypatch.undo()
    kept = [dcbulk.modes.join(inputs, tmp_path / where / "f.rtdc", filter="deform > 0.05",
                              **kwds)
            for where, kwds in (("here", {}), ("there", {"client": client}))]
    assert all(r.ok for r in kept), [f.error for r in kept for f in r.failed]
    mine, theirs = (stored_chunks(r.files[0].output) for r in kept)
    assert mine == theirs and len(mine["index"]) >= 1
    with h5py.File(kept[0].files[0].output) as h5:  # filtered: fewer events, index renumbered
        n = h5["events/deform"].shape[0]
        assert 0 < n < 300 and (h5["events/deform"][:] > 0.05).all()
        np.testing.assert_array_equal(h5["events/index"][:], np.arange(1, n + 1))


def _alone_on_no_host() -> None:
    """On a worker: a lone output gets no block pool, as on a cluster of several hosts."""
    import contextlib

    import dcbulk.bulk.job as job
    job._one_host_pool, job.lone_block_pool = (
        job.lone_block_pool, lambda lone: contextlib.nullcontext(False))


def _restore_pool() -> None:
    import dcbulk.bulk.job as job
    job.lone_block_pool = job.__dict__.pop("_one_host_pool")


def test_a_join_on_several_hosts_is_made_by_block_tasks(split_source, tmp_path, client):
    """Where its worker has no block pool (several hosts) a join beyond its inline limit
    is made by block tasks on every worker (each column a dask array): the chunks stored
    are those of a join in dcbulk's process."""
    from distributed import get_task_stream

    from dcbulk.bulk import make_options, run_job
    from dcbulk.modes.join import JoinJob
    pieces = dcbulk.modes.split([split_source], tmp_path / "pieces", events_per_file=60,
                                include_empty_boundary_images=True, client=client)
    inputs = sorted(f.output for f in pieces.files)
    here = dcbulk.modes.join(inputs, tmp_path / "here" / "j.rtdc")
    client.run(_alone_on_no_host)
    try:
        with get_task_stream(client) as ts:
            there = run_job(JoinJob(), inputs, tmp_path / "there" / "j.rtdc", make_options(),
                            client=client, inline_bytes=0)
    finally:
        client.run(_restore_pool)
    assert here.ok and there.ok, [f.error for f in there.failed]
    assert len(ts.data) > 2  # the writer's task and its blocks'
    assert stored_chunks(here.files[0].output) == stored_chunks(there.files[0].output)


def test_join_copies_the_first_inputs_whole_chunks_as_stored(tmp_path, client):
    """The earliest input's whole chunks that line up with the output's and keep its filters
    (here zstd 9 >= the 5 asked) are copied as stored, in dcbulk's process and on a cluster;
    the rest is encoded; a damaged one fails the join with one line naming it, and no
    output is left."""
    first, second = tmp_path / "first.rtdc", tmp_path / "second.rtdc"
    day = {"experiment:date": "2024-04-14"}
    make_rtdc(first, 250, seed=3, compression="zstd:9", with_traces=False,
              meta={**day, "experiment:time": "10:00:00"})
    make_rtdc(second, 120, seed=4, with_traces=False, meta={**day, "experiment:time": "11:00:00"})
    report = dcbulk.modes.join([second, first], tmp_path / "out" / "j.rtdc")
    assert report.ok, [f.error for f in report.failed]
    out = report.files[0].output
    mine, theirs = stored_chunks(out)["image"], stored_chunks(first)["image"]
    assert len(mine) == 8 and mine[:4] == theirs[:4]  # 52-event chunks: 4 whole ones in 250
    assert read_provenance(out)["features"]["image"] == \
        "zstd:5+fletcher32 (4 of 8 chunks copied as stored)"  # and said so
    with h5py.File(out) as h5, h5py.File(first) as a, h5py.File(second) as b:
        assert h5["events/image"].chunks == a["events/image"].chunks == (52, 80, 250)
        for name in ("image", "mask", "deform"):
            np.testing.assert_array_equal(h5["events"][name][:], np.concatenate(
                [a["events"][name][:], b["events"][name][:]]).astype(h5["events"][name].dtype))
        level5 = dcbulk.codec.encode_chunks(a["events/image"][:52], 52,
                                            dcbulk.codec.parse_compression("zstd:5"))
    assert level5[0][1] != mine[0][1]  # (so the equality above is not what encoding gives)
    there = dcbulk.modes.join([second, first], tmp_path / "there" / "j.rtdc", client=client)
    assert there.ok and stored_chunks(there.files[0].output) == stored_chunks(out)
    with h5py.File(first, "a") as h5:  # a flipped byte in stored chunk 2 of the image
        mask, data = h5["events/image"].id.read_direct_chunk((104, 0, 0))
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
        h5["events/image"].id.write_direct_chunk((104, 0, 0), bytes(data), filter_mask=mask)
    broken = dcbulk.modes.join([second, first], tmp_path / "bad" / "j.rtdc")
    assert not broken.ok
    error = broken.failed[0].error
    assert "\n" not in error and "'image'" in error and "chunk 2" in error, error
    assert not list((tmp_path / "bad").glob("*.rtdc*"))


def test_join_names_a_damaged_chunk_of_a_later_input(tmp_path, client):
    """A later input's rows are decoded (not copied): a damaged chunk there fails the join
    with one line naming that input, the feature and the chunk, in dcbulk's process and on
    a cluster, and no output is left."""
    first, second = tmp_path / "first.rtdc", tmp_path / "second.rtdc"
    day = {"experiment:date": "2024-04-14"}
    make_rtdc(first, 120, seed=3, with_traces=False, meta={**day, "experiment:time": "10:00:00"})
    make_rtdc(second, 130, seed=4, with_traces=False, meta={**day, "experiment:time": "11:00:00"})
    with h5py.File(second, "a") as h5:  # a flipped byte in stored chunk 1 of the image
        mask, data = h5["events/image"].id.read_direct_chunk((52, 0, 0))
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
        h5["events/image"].id.write_direct_chunk((52, 0, 0), bytes(data), filter_mask=mask)
    for where, kwds in (("here", {}), ("there", {"client": client})):
        report = dcbulk.modes.join([second, first], tmp_path / where / "j.rtdc", **kwds)
        assert not report.ok
        error = report.failed[0].error
        assert "\n" not in error and str(second) in error, error
        assert "'image'" in error and "chunk 1 is damaged" in error, error
        assert not list((tmp_path / where).glob("*.rtdc*"))


def test_join_matches_dclab_join(small_archive, tmp_path, client):
    from dclab.cli import join as dclab_join
    inputs = [small_archive / "sub" / "b.rtdc", small_archive / "a.rtdc"]  # b is later
    report = dcbulk.modes.join(inputs, tmp_path / "joined.rtdc", client=client)
    assert report.ok, [f.error for f in report.failed]
    out = report.files[0].output
    ref = tmp_path / "dclab.rtdc"
    _dclab_quiet(dclab_join, paths_in=inputs, path_out=ref)
    names = assert_same_as_dclab(out, ref)
    assert {"time", "frame", "index", "image", "trace/fl1_raw"} <= set(names)
    with h5py.File(out) as h5, h5py.File(small_archive / "a.rtdc") as a, \
            h5py.File(small_archive / "sub" / "b.rtdc") as b:
        assert h5.attrs["experiment:date"] == a.attrs["experiment:date"]  # a is earliest
        assert h5.attrs["experiment:run identifier"] not in (
            a.attrs["experiment:run identifier"], b.attrs["experiment:run identifier"])
        logs = set(h5["logs"])
        assert {f"src-#1_{n}" for n in a["logs"]} | {f"src-#2_{n}" for n in b["logs"]} <= logs
        with h5py.File(ref) as r:  # dclab's configuration text, as dclab-join writes it
            for k in (1, 2):
                assert log_lines(h5["logs"][f"src-#{k}_cfg"]) == log_lines(
                    r["logs"][f"src-#{k}_cfg"]), k
        ids = [str(f.attrs["experiment:run identifier"]) for f in (a, b)]
        assert {f"src-#1_{n}" for n in a.get("tables", {})} <= set(h5.get("tables", {}))
    assert [d["identifier"] for d in read_provenance(out)["details"]["inputs"]] == ids
    (tmp_path / "cwd").mkdir()
    with elsewhere(tmp_path / "cwd"):
        with open_dclab(out) as ds:
            assert len(ds) == 190
        assert dcnum_features(out, ["deform"])["deform"].size == 190
    assert_verify_adds_nothing(small_archive / "a.rtdc", out)
    report = dcbulk.verify(out, client=client)  # against its inputs, by its log
    assert report.ok and "trace/fl1_raw" in report.files[0].checked, report.problems


def test_join_of_a_file_given_twice_joins_it_twice_as_dclab_join(tmp_path, capsys):
    """``join a.rtdc a.rtdc`` said "needs at least two input files, got 1" (each file was
    taken once), where dclab-join joins the file with itself; and two files of the same name
    in two directories were refused as if both were written to one output path. Both are
    joined now, as dclab-join does, with a warning line for the file given twice."""
    from dclab.cli import join as dclab_join

    from dcbulk.cli import main
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, compression="none")
    out = tmp_path / "j.rtdc"
    assert main(["join", str(a), str(tmp_path / "." / "a.rtdc"), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"join: {a} is given 2 times" in err[0], err
    ref = tmp_path / "dclab.rtdc"
    _dclab_quiet(dclab_join, paths_in=[a, a], path_out=ref)
    assert {"time", "frame", "deform", "image"} <= set(assert_same_as_dclab(out, ref))
    with h5py.File(out) as h5:
        assert h5["events/deform"].shape == (40,)
    assert dcbulk.verify(out).ok
    os.link(a, tmp_path / "hard.rtdc")  # the same file by another name: warned of too
    assert main(["join", str(a), str(tmp_path / "hard.rtdc"), "-o", str(tmp_path / "h.rtdc"),
                 "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"join: {a} is given 2 times" in err[0], err
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    x = make_rtdc(tmp_path / "x" / "m.rtdc", 20, seed=2, meta=meta)
    y = make_rtdc(tmp_path / "y" / "m.rtdc", 20, seed=3, meta={**meta,
                                                              "experiment:time": "10:00:09"})
    report = dcbulk.modes.join([x, y], tmp_path / "xy.rtdc")
    assert report.ok, [f.error for f in report.failed]
    with h5py.File(tmp_path / "xy.rtdc") as h5, h5py.File(x) as hx, h5py.File(y) as hy:
        np.testing.assert_array_equal(h5["events/deform"][:], np.concatenate(
            [hx["events/deform"][:], hy["events/deform"][:]]))


def test_a_join_run_again_says_why_it_cannot_tell_its_output_is_finished(tmp_path, capsys):
    """A second run of the same join failed with "exists and is not a finished output of
    this archive": join keeps no manifest, which the line now says."""
    from dcbulk.cli import main
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1)
    out = tmp_path / "j.rtdc"
    assert main(["join", str(a), str(a), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["join", str(a), str(a), "-o", str(out), "-q"]) == 1
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "FAILED" in ln]
    assert (f"{out}: exists (this mode keeps no manifest: a finished output cannot be told "
            f"from another file); use --force to replace it") in line, line


def test_join_drops_features_not_everywhere_as_dclab(small_archive, tmp_path, client):
    from dclab.cli import join as dclab_join
    # (dclab-join fails when two neighbouring features are missing: it removes them from
    # the list it iterates over; one missing feature it handles)
    later = make_rtdc(tmp_path / "later.rtdc", 30, seed=13, image_shape=(40, 60),
                      trace_length=32, meta={"experiment:date": "2030-01-01"})
    with h5py.File(later, "a") as h5:
        del h5["events/temp"]
    inputs = [later, small_archive / "a.rtdc"]
    report = dcbulk.modes.join(inputs, tmp_path / "joined.rtdc", client=client)
    assert report.ok, [f.error for f in report.failed]
    ref = tmp_path / "dclab.rtdc"
    _dclab_quiet(dclab_join, paths_in=inputs, path_out=ref)
    names = assert_same_as_dclab(report.files[0].output, ref)
    with h5py.File(report.files[0].output) as h5:
        assert event_names(h5) == names and "temp" not in names
    assert read_provenance(report.files[0].output)["details"]["features dropped"] == ["temp"]
    assert dcbulk.verify(report.files[0].output).ok


def test_join_refuses_different_image_shapes(small_archive, tmp_path, client):
    with pytest.raises(dcbulk.errors.PlanError, match="'image' has different shapes"):
        dcbulk.modes.join([small_archive / "a.rtdc", small_archive / "c.rtdc"],
                          tmp_path / "j.rtdc", client=client)
    assert not (tmp_path / "j.rtdc").exists()


# -- command line --------------------------------------------------------------------------

def test_cli_modes_share_converts_options(small_archive, split_source, tmp_path, client,
                                          capsys):
    import json

    from dcbulk.cli import main
    cluster = ["--scheduler", client.scheduler.address, "-q"]
    dst = tmp_path / "pieces"
    assert main(["split", str(split_source), "-o", str(dst), "--events-per-file", "100",
                 "--dry-run", *cluster]) == 0
    assert "long_0003.rtdc (new)" in capsys.readouterr().out and not dst.exists()
    report = tmp_path / "split.json"
    assert main(["split", str(split_source), "-o", str(dst), "--events-per-file", "100",
                 "--filter", "deform < 0.05", "--features", "deform,image",
                 "--compression", "zstd:7", "--report", str(report), *cluster]) == 0
    files = json.loads(report.read_text())["files"]
    # each mode says its own verb and names its run log after itself
    assert "dcbulk: 3 split, 0 skipped (finished before), 0 failed" in capsys.readouterr().out
    assert [p.name.split("-")[0] for p in (dst / "dcbulk-logs").iterdir()] == ["split"]
    assert sorted(Path(f["output"]).name for f in files) == \
        ["long_0001.rtdc", "long_0002.rtdc", "long_0003.rtdc"]
    with h5py.File(split_source) as src:
        deform = src["events/deform"][:]
    got = []
    for name in ("long_0001.rtdc", "long_0002.rtdc", "long_0003.rtdc"):
        with h5py.File(dst / name) as h5:
            assert sorted(h5["events"]) == ["basinmap0", "deform", "image"]
            _, zstd_options, _ = h5["events/deform"].id.get_create_plist() \
                .get_filter_by_id(32015)  # hdf5plugin's Zstandard filter
            assert zstd_options == (7,)
            got.append(h5["events/deform"][:])
    expect = deform[1:][deform[1:] < 0.05]  # event 0 has an empty image
    np.testing.assert_array_equal(np.concatenate(got), expect)
    # an existing output is a per-file failure (exit 1), not a crash
    assert main(["split", str(split_source), "-o", str(dst), *cluster]) == 1
    capsys.readouterr()
    out = tmp_path / "joined.rtdc"
    assert main(["join", *(str(dst / f"long_000{k}.rtdc") for k in (1, 2, 3)), "-o", str(out),
                 *cluster]) == 0
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["events/deform"][:], expect)
    assert "dcbulk: 1 joined, 0 skipped" in capsys.readouterr().out
    assert [p.name.split("-")[0] for p in (tmp_path / "dcbulk-logs").iterdir()] == ["join"]
    assert main(["condense", str(small_archive), "-o", str(tmp_path / "c"), *cluster]) == 0
    assert "dcbulk: 3 condensed, 0 skipped" in capsys.readouterr().out
    assert main(["condense", str(small_archive), "-o", str(tmp_path / "c"), *cluster]) == 0
    assert "3 skipped" in capsys.readouterr().out
    assert {p.name.split("-")[0] for p in (tmp_path / "c" / "dcbulk-logs").iterdir()} == \
        {"condense"}
    assert main(["condense", str(small_archive), "-o", str(tmp_path / "cf"),
                 "--filter", "area_um > 20", *cluster]) == 0
    with h5py.File(small_archive / "a.rtdc") as src, h5py.File(tmp_path / "cf/a.rtdc") as h5:
        np.testing.assert_array_equal(h5["events/area_um"][:],
                                      src["events/area_um"][:][src["events/area_um"][:] > 20])
    capsys.readouterr()
    assert main(["join", str(out), "-o", str(tmp_path / "x.rtdc"), *cluster]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dcbulk: usage error: join needs at least two input files, got 1"
    assert main(["split", str(out), "-o", str(tmp_path / "p"), "--events-per-file", "0",
                 *cluster]) == 2  # a count below 1 (was exit 3)
    assert "--events-per-file: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["convert", str(out), "-o", str(tmp_path / "f"), "--features", ",",
                 *cluster]) == 2  # no name: not "all features" (converted all before)
    assert "--features: no name in ','" in capsys.readouterr().err


def test_readme_reprocess_example_runs(small_archive, tmp_path, client):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Reprocessing"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    code = code.replace('"/data/archive"', repr(str(small_archive)))
    code = code.replace('"/data/image-mean"', repr(str(tmp_path / "out")))
    namespace = {"client": client}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.count("done") == 3
    for res in report.files:
        with h5py.File(res.source) as src, h5py.File(res.output) as dst:
            np.testing.assert_array_equal(dst["events/userdef1"][:],
                                          src["events/image"][:].mean(axis=(1, 2)))


# -- follow-up of issue 12: condense --filter, one run-identifier rule, adoption -------------

def test_condense_filter_keeps_the_matching_events_with_a_mapped_basin(small_archive, tmp_path,
                                                                       client):
    """As dclab-condense of a filtered dataset: the kept events' scalars, the rest via basin."""
    from dcbulk.read.identifier import filtered_run_identifier
    report = dcbulk.modes.condense([small_archive], tmp_path / "out", filter="area_um > 20",
                                   client=client)
    assert report.ok and report.count("done") == 3, [f.error for f in report.failed]
    other = tmp_path / "cwd"
    other.mkdir()
    for res in report.files:
        with open_dclab(res.source) as sds:
            mask = np.asarray(sds["area_um"]) > 20
            assert 0 < mask.sum() < len(mask)
            src_id = sds.get_measurement_identifier()
            image = np.asarray(sds["image"][:])[mask]
            innate = {f for f in sds.features_innate if dclab.dfn.scalar_feature_exists(f)}
            with h5py.File(res.output) as out:
                names = {n for n in out["events"] if not n.startswith("basinmap")}
                assert names >= innate | {"index"}, sorted(innate - names)
                assert all(out["events"][n].ndim == 1 for n in names)
                for name in names - {"index"}:  # dclab's values of the kept events
                    np.testing.assert_array_equal(out["events"][name][:],
                                                  np.asarray(sds[name])[mask], err_msg=name)
                # renumbered, as dclab's writer enumerates the index of a filtered export
                np.testing.assert_array_equal(out["events/index"][:],
                                              np.arange(1, mask.sum() + 1))
                ident = out.attrs["experiment:run identifier"]
        assert ident == filtered_run_identifier(src_id, np.flatnonzero(mask), mask.size)
        with elsewhere(other):  # the rest through the mapped basin to the source
            with open_dclab(res.output) as ds:
                assert len(ds) == mask.sum()
                np.testing.assert_array_equal(ds["image"][:], image)
            got = dcnum_features(res.output, ["image", "deform"])
            np.testing.assert_array_equal(got["image"], image)
        assert_verify_adds_nothing(res.source, res.output)


def _run_id(path) -> str:
    with h5py.File(path) as h5:
        return h5.attrs["experiment:run identifier"]


def test_one_run_identifier_rule_for_convert_split_and_join(split_source, tmp_path, client):
    from dcbulk.read.identifier import filtered_run_identifier
    with h5py.File(split_source) as h5:
        src_id = get_measurement_identifier(h5, compat="dclab")
    pieces = dcbulk.modes.split([split_source], tmp_path / "p", events_per_file=100,
                                include_empty_boundary_images=True, client=client)
    assert pieces.count("done") == 3
    conv = dcbulk.convert(split_source, tmp_path / "c.rtdc", mapping=np.arange(100, 200),
                          client=client)
    want = filtered_run_identifier(src_id, np.arange(100, 200), 250)
    assert re.fullmatch(re.escape(src_id) + "_dcb-[0-9a-f]{7}", want)
    # the same events of the same source: the same identifier, whichever mode made them
    assert _run_id(tmp_path / "p" / "long_0002.rtdc") == _run_id(conv.output) == want
    inputs = sorted(f.output for f in pieces.files)
    first = _run_id(inputs[0])
    made = [dcbulk.modes.join(inputs, tmp_path / f"j{k}.rtdc", client=client) for k in (1, 2)]
    ids = {_run_id(r.files[0].output) for r in made}
    assert len(ids) == 1  # reproducible
    assert re.fullmatch(re.escape(first) + "_dcb-[0-9a-f]{7}", ids.pop())
    filtered = dcbulk.modes.join(inputs, tmp_path / "jf.rtdc", filter="deform < 0.05",
                                 client=client)
    assert _run_id(filtered.files[0].output) != _run_id(made[0].files[0].output)


def test_mode_outputs_committed_but_not_recorded_are_adopted(small_archive, tmp_path, client):
    """A kill between an output's final rename and its manifest record loses nothing."""
    from dcbulk.bulk.manifest import MANIFEST_NAME
    runs = {
        "condense": lambda out: dcbulk.modes.condense([small_archive], out, client=client),
        "condense-filter": lambda out: dcbulk.modes.condense(
            [small_archive], out, filter="area_um > 20", client=client),
        "reprocess": lambda out: dcbulk.reprocess([small_archive], out, image_mean,
                                                  client=client),
    }
    for name, run in runs.items():
        out = tmp_path / name
        assert run(out).count("done") == 3, name
        stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.rtdc")}
        manifest = out / MANIFEST_NAME
        lines = manifest.read_bytes().splitlines(keepends=True)
        manifest.write_bytes(b"".join(ln for ln in lines if b'"relpath"' not in ln))
        again = run(out)
        assert [(f.status, f.reason) for f in again.files] == \
            [("skipped", "finished (found by its provenance log)")] * 3, \
            (name, [(f.status, f.reason, f.error) for f in again.files])
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*.rtdc")} == stamps
        # and now recorded: the next run skips them by the manifest
        assert [(f.status, f.reason) for f in run(out).files] == [("skipped", "finished")] * 3


def _retyped(path, **dtypes) -> None:
    with h5py.File(path, "a") as h5:
        for name, dtype in dtypes.items():
            data = h5["events"][name][:].astype(dtype)
            del h5["events"][name]
            h5["events"][name] = data


def test_join_offsets_are_kept_whole_and_bad_starts_or_rates_are_one_line(
        tmp_path, capsys, monkeypatch):
    """A join took the earliest input's dtype (as dclab-join appends to it): an int32 frame
    overflowed (18200, then -1912017030) and a float32 time rounded a later input's to 16 s,
    and verify agreed. A later input without a frame rate got no frame offset (frames ran
    backwards); a negative offset or a bad rate was a traceback. And verify recomputed the
    offsets in its own time zone: a join across a DST change made in Berlin 'differed' in
    UTC."""
    import time as _time
    from dcbulk.cli import main
    from dcbulk.modes.join import join
    from dcbulk.read.joining import start_seconds
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:date": "2024-05-09"})
    _retyped(a, frame=np.int32, time=np.float32)
    out = tmp_path / "j.rtdc"
    assert join([b, a], out).ok
    with h5py.File(out, "r") as h5, h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        offset = (start_seconds(dict(hb.attrs), str(b)) - start_seconds(dict(ha.attrs), str(a)))
        shift = np.uint64(round(offset * hb.attrs["imaging:frame rate"]))
        assert h5["events/frame"].dtype == np.uint64 and h5["events/time"].dtype == np.float64
        assert np.array_equal(h5["events/frame"][20:], hb["events/frame"][:].astype(np.uint64)
                              + shift)
        assert np.array_equal(h5["events/time"][20:], hb["events/time"][:] + offset)
        assert np.array_equal(h5["events/time"][:20], ha["events/time"][:].astype(np.float64))
    assert dcbulk.verify(out).ok
    for attrs, words in (({"imaging:frame rate": None}, "'imaging:frame rate' is missing"),
                         ({"imaging:frame rate": "fast"}, "'imaging:frame rate' is fast"),
                         # by text, "10:00:00.5" comes before "10:00:00": a starts 0.5 s
                         # before b, the earliest by dclab-join's order
                         ({"experiment:date": "2020-05-01", "experiment:time": "10:00:00.5"},
                          "a.rtdc: starts 0.5 s before the earliest input"),
                         ({"experiment:time": "10:00:01nan"}, "cannot read the recording start")):
        with h5py.File(b, "a") as h5:
            for key, value in attrs.items():
                if value is None:
                    del h5.attrs[key]
                else:
                    h5.attrs[key] = value
        assert main(["join", str(a), str(b), "-o", str(tmp_path / "bad.rtdc"), "-q"]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        assert not (tmp_path / "bad.rtdc").exists()
    # a join across the spring DST change, made in Berlin, verified in UTC
    monkeypatch.setenv("TZ", "Europe/Berlin")
    _time.tzset()
    try:
        c = make_rtdc(tmp_path / "c.rtdc", 10, seed=3, meta={
            "experiment:date": "2023-03-26", "experiment:time": "01:59:00"})
        d = make_rtdc(tmp_path / "d.rtdc", 10, seed=4, meta={
            "experiment:date": "2023-03-26", "experiment:time": "03:01:00"})
        dst = tmp_path / "dst.rtdc"
        assert join([c, d], dst).ok
        assert read_provenance(dst)["details"]["inputs"][1]["time offset"] == 120.0
        monkeypatch.setenv("TZ", "UTC")
        _time.tzset()
        assert dcbulk.verify(dst).ok  # 3720 s in UTC: 'time' rows differed
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()


def test_join_of_inputs_with_an_attribute_dclab_cannot_read(tmp_path):
    """An input with an array-valued root attribute (``setup:flow rate = [0.1, 0.2]``) made
    the join's ``src-#k_cfg`` log fail with a 35-line traceback (dclab's configuration
    refuses the value; dclab-join fails too): the value is kept as its text."""
    day = {"experiment:date": "2024-04-14"}
    first, second = tmp_path / "a.rtdc", tmp_path / "b.rtdc"
    make_rtdc(first, 20, seed=3, with_traces=False, meta={**day, "experiment:time": "10:00:00"})
    make_rtdc(second, 20, seed=4, with_traces=False, meta={**day, "experiment:time": "11:00:00"})
    for path in (first, second):
        with h5py.File(path, "a") as h5:
            h5.attrs["setup:flow rate"] = np.array([0.1, 0.2])
    out = tmp_path / "j.rtdc"
    report = dcbulk.modes.join([second, first], out)
    assert report.ok, [f.error for f in report.failed]
    with h5py.File(out) as h5:
        assert "flow rate = [0.1 0.2]" in log_lines(h5["logs/src-#2_cfg"])
    assert dcbulk.verify(out).ok


def test_condense_announces_basin_files_outside_the_tree_as_convert(tmp_path, client, capsys):
    """condense copied the scalars of a file basin outside the archive tree without a word
    (convert and split said 'lies outside the archive tree'), and its per-file inspection
    warnings ('has another identifier; skipped', 'unusable') went only to its log."""
    from dcbulk.cli import main
    (tmp_path / "outside").mkdir()
    ext = make_rtdc(tmp_path / "outside" / "ext.rtdc", 20, seed=3)
    (tmp_path / "outside" / "notes.txt").write_text("not hdf5")
    arch = tmp_path / "arch"
    arch.mkdir()
    for name, paths, ident in (("rel", ["../outside/ext.rtdc"], None),
                               ("wrongid", [str(ext)], "not-its-identifier"),
                               ("bad", ["../outside/notes.txt"], None)):
        src = make_rtdc(arch / f"{name}.rtdc", 20, seed=4)
        with h5py.File(src, "a") as h5:
            del h5["events/deform"], h5["events/area_um"]
        with dcbulk.write.HDF5Writer(src, mode="a") as hw:
            hw.store_basin(name="ext", paths=paths, features=["deform", "area_um"],
                           identifier=ident)
    cluster = ["--scheduler", client.scheduler.address, "-q"]
    assert main(["condense", str(arch), "-o", str(tmp_path / "cond"), *cluster]) == 0
    err = capsys.readouterr().err
    assert f"rel.rtdc: file basin {ext} lies outside the archive tree {arch}" in err, err
    assert "wrongid.rtdc: file basin 'ext' at" in err and "has another identifier" in err, err
    assert "bad.rtdc: file basin 'ext' unusable" in err, err
    assert len(err.strip().splitlines()) == 3, err


def test_join_refuses_a_requested_feature_an_input_lacks(tmp_path, capsys):
    """join --features area_um,... with an input lacking area_um made the file without it
    (exit 0, '1 joined'; only the provenance log said 'features dropped'), where split and
    convert refuse. It is one line naming the input; a feature left out without --features
    (the inputs differ) is one warning line."""
    from dcbulk.cli import main
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:time": "10:00:09"})
    with h5py.File(b, "a") as h5:  # the later input
        del h5["events/area_um"]
    out = tmp_path / "j.rtdc"
    assert main(["join", str(a), str(b), "-o", str(out), "-q",
                 "--features", "area_um,deform,time"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{b}: feature 'area_um' not available" in err[0], err
    assert not out.exists()
    assert main(["join", str(a), str(b), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'area_um'" in err[0] and str(b) in err[0] \
        and "left out" in err[0], err
    with h5py.File(out) as h5:
        assert "area_um" not in h5["events"]


def test_join_says_it_writes_no_contour_when_asked_for_one(tmp_path, capsys):
    """join --features contour,... of inputs with contours said "feature 'contour' not
    available; available: ..." (a list without it): join writes no contours. One usage line
    says so, before any work."""
    from dcbulk.cli import main
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta, with_contour=True)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, with_contour=True,
                  meta={**meta, "experiment:time": "10:00:09"})
    out = tmp_path / "j.rtdc"
    for features in ("contour,deform", "contour"):
        assert main(["join", str(a), str(b), "-o", str(out), "-q",
                     "--features", features]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "join does not write 'contour'" in err[0], err
        assert "not available" not in err[0], err
    assert not out.exists() and not (tmp_path / "dcbulk-logs").exists()


def test_join_refuses_a_nan_that_must_become_an_integer(tmp_path, capsys):
    """A later input whose float 'frame' held NaN was joined as a garbage uint64
    (9223372068647266808), with numpy's two-line RuntimeWarning on the terminal, and
    verify passed. Its join now fails in one line naming the input and the feature."""
    from dcbulk.cli import main
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:time": "10:00:09"})
    with h5py.File(b, "a") as h5:
        frame = h5["events/frame"][:].astype(np.float64)
        frame[3] = np.nan
        del h5["events/frame"]
        h5["events/frame"] = frame
    out = tmp_path / "j.rtdc"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["join", str(a), str(b), "-o", str(out), "-q"]) == 1
    captured = capsys.readouterr()
    assert "RuntimeWarning" not in captured.err + captured.out
    lines = [ln for ln in captured.out.splitlines() if "FAILED" in ln]
    assert len(lines) == 1 and f"{b}: feature 'frame'" in lines[0] \
        and "NaN" in lines[0] and "integer" in lines[0], captured
    assert not out.exists()


def test_join_refuses_text_that_holds_no_utf8_in_one_line(tmp_path, capsys):
    """An input whose experiment:sample is a str holding no valid UTF-8 (h5py's surrogate
    escapes) ended the join in a UnicodeEncodeError traceback, from the src-#k_cfg log."""
    from dcbulk.cli import main
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:time": "10:00:09"})
    with h5py.File(b, "a") as h5:
        del h5.attrs["experiment:sample"]
        h5.attrs.create("experiment:sample", b"caf\xe9", dtype=h5py.string_dtype("utf-8"))
    out = tmp_path / "j.rtdc"
    assert main(["join", str(a), str(b), "-o", str(out), "-q"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{b}: attribute 'experiment:sample'" in err[0] \
        and "no valid UTF-8" in err[0], err
    assert not out.exists()


def test_join_output_must_name_a_file(tmp_path, capsys, monkeypatch):
    """join -o '' or -o . wrote '<parent of cwd>.rtdc', -o adir/ wrote adir.rtdc (and the
    summary named the directory). An empty output, an existing directory or a path ending in
    a separator is one usage line; the summary names the file written."""
    from dcbulk.cli import main
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2)
    work = tmp_path / "work"
    (work / "adir").mkdir(parents=True)
    monkeypatch.chdir(work)
    for output in ("", ".", "adir", "adir/", "newdir/", str(work / "adir") + os.sep):
        assert main(["join", str(a), str(b), "-o", output, "-q"]) == 2, output
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dcbulk: usage error: ") \
            and "-o" in err[0], (output, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.rtdc", "b.rtdc", "work"]
    assert sorted(p.name for p in work.iterdir()) == ["adir"]
    assert not any((work / "adir").iterdir())
    assert main(["join", str(a), str(b), "-o", "notes.txt", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"-> {work / 'notes.txt.rtdc'};" in out, out
    assert (work / "notes.txt.rtdc").is_file()


def test_split_keeps_a_sample_that_is_no_utf8(tmp_path):
    """An ``experiment:sample`` of bytes that are no UTF-8 made split raise
    UnicodeDecodeError (a traceback; a directory with good files split nothing). Each
    piece now keeps the source's bytes, then `` k/n``, and verifies equal; a sample h5py
    reads as str holding no UTF-8 (it cannot be written back as such) fails that file
    alone, in one line."""
    from fixtures import small_rtdc
    src = tmp_path / "src"
    bad, good, vlen = (small_rtdc(src / f"{n}.rtdc", 30, seed=k)
                       for k, n in enumerate(("bad", "good", "vlen")))
    with h5py.File(bad, "a") as h5:
        h5.attrs["experiment:sample"] = np.bytes_(b"caf\xe9 \xff")
    with h5py.File(vlen, "a") as h5:
        h5.attrs.create("experiment:sample", np.array(b"caf\xe9", dtype=object),
                        dtype=h5py.string_dtype("utf-8"))
    report = dcbulk.modes.split([src], tmp_path / "out", events_per_file=20)
    assert report.count("done") == 4, [f.error for f in report.failed]
    (failed,) = report.failed
    assert "vlen" in failed.output and "\n" not in failed.error
    assert "experiment:sample" in failed.error, failed.error
    for k in (1, 2):
        with h5py.File(tmp_path / "out" / f"bad_{k:04d}.rtdc") as h5:
            assert h5.attrs["experiment:sample"] == np.bytes_(b"caf\xe9 \xff %d/2" % k)
        with h5py.File(tmp_path / "out" / f"good_{k:04d}.rtdc") as h5, h5py.File(good) as s:
            assert h5.attrs["experiment:sample"] == f"{s.attrs['experiment:sample']} {k}/2"
    result = dcbulk.verify(sorted((tmp_path / "out").glob("*.rtdc")))
    assert result.ok, result.problems


def test_split_and_join_name_text_without_utf8_in_the_same_words(tmp_path):
    """split (its sample) and join (its src-#k_cfg log) each checked a str attribute that
    holds no valid UTF-8 with its own code and words; one helper now says it for both."""
    from dcbulk.errors import PlanError
    meta = {"experiment:date": "2020-05-01", "experiment:time": "10:00:00"}
    a = make_rtdc(tmp_path / "a.rtdc", 20, seed=1, meta=meta)
    b = make_rtdc(tmp_path / "b.rtdc", 20, seed=2, meta={**meta, "experiment:time": "10:00:09"})
    with h5py.File(b, "a") as h5:
        h5.attrs.create("experiment:sample", np.array(b"caf\xe9", dtype=object),
                        dtype=h5py.string_dtype("utf-8"))
    said = f"{b}: attribute 'experiment:sample' is text (str) that holds no valid UTF-8, which"
    report = dcbulk.modes.split([b], tmp_path / "pieces", events_per_file=10)
    (failed,) = report.failed
    assert failed.error.startswith(f"PlanError: {said} a piece cannot keep"), failed.error
    with pytest.raises(PlanError, match="which the join cannot write into its logs") as info:
        dcbulk.modes.join([a, b], tmp_path / "j.rtdc")
    assert str(info.value).startswith(said), info.value
    from dcbulk.verify.values import writable_text
    assert writable_text(b"caf\xe9", "x", "k", "-") == b"caf\xe9"  # bytes need no UTF-8
