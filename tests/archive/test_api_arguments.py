"""The Python API's arguments of a wrong type: one line (a UsageError naming the argument and
what it got) before any work, never a raw TypeError or AttributeError from deep inside; and
a single feature name where a list of names is taken."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.errors import UsageError

from fixtures import small_rtdc


def _one_line(info: pytest.ExceptionInfo, *words: str) -> None:
    text = str(info.value)
    assert "\n" not in text and all(w in text for w in words), text


def test_one_feature_name_is_one_feature_and_a_filter_must_be_text(tmp_path):
    src = small_rtdc(tmp_path / "src" / "a.rtdc")
    report = dcbulk.convert_archive([tmp_path / "src"], tmp_path / "out", features="deform")
    assert report.ok, [f.error for f in report.failed]
    with h5py.File(report.files[0].output) as h5, h5py.File(src) as s:
        assert sorted(h5["events"]) == ["deform"]
        assert (h5["events/deform"][:] == s["events/deform"][:]).all()
    with pytest.raises(UsageError) as info:
        dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o2", filter=["deform < 0.1"])
    _one_line(info, "filter", "list", "deform < 0.1")
    assert issubclass(info.type, TypeError)  # a wrong type, as the style asks
    with pytest.raises(UsageError) as info:
        dcbulk.modes.split([tmp_path / "src"], tmp_path / "o3", features=["deform", 3])
    _one_line(info, "features", "int 3")
    for none in ("", [], [""]):  # no name is not "every feature" (as the CLI's --features '')
        with pytest.raises(UsageError) as info:
            dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o4", features=none)
        _one_line(info, "features names no feature")
    assert not any((tmp_path / o).exists() for o in ("o2", "o3", "o4"))
    # verify took one name as its letters (feature 'd' not available)
    out = report.files[0].output
    assert dcbulk.verify(out, src, features="deform").ok
    with pytest.raises(UsageError) as info:
        dcbulk.verify(out, src, filter=["deform < 0.1"])
    _one_line(info, "filter", "list")


def _userdef(features):
    return {"userdef1": features["deform"] * 2}


def test_sources_output_and_progress_are_checked_before_any_work(tmp_path, client):
    small_rtdc(tmp_path / "src" / "a.rtdc")
    small_rtdc(tmp_path / "src" / "b.rtdc", seed=1)
    with pytest.raises(UsageError) as info:
        dcbulk.convert_archive(None, tmp_path / "o1")
    _one_line(info, "sources", "NoneType")
    with pytest.raises(UsageError) as info:
        dcbulk.convert_archive([tmp_path / "src", 3], tmp_path / "o1")
    _one_line(info, "sources", "int 3")
    with pytest.raises(UsageError) as info:
        dcbulk.convert_archive([tmp_path / "src"], None)
    _one_line(info, "output", "NoneType")
    # progress=False was called (a TypeError) only after the first file was written
    with pytest.raises(UsageError) as info:
        dcbulk.reprocess([tmp_path / "src"], tmp_path / "o2", _userdef, progress=False,
                         client=client)
    _one_line(info, "progress", "bool False")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_split_takes_a_whole_number_of_events_per_file(tmp_path):
    import numpy as np
    small_rtdc(tmp_path / "src" / "a.rtdc", 50)
    report = dcbulk.modes.split([tmp_path / "src"], tmp_path / "out",
                                events_per_file=np.int64(20))
    assert report.ok and report.count("done") == 3, [f.error for f in report.failed]
    for value, words in [("20", ("str '20'",)), (True, ("bool True",)),
                         (20.0, ("float 20.0",)), (0, ("at least 1", "got 0"))]:
        with pytest.raises(UsageError) as info:
            dcbulk.modes.split([tmp_path / "src"], tmp_path / "o2", events_per_file=value)
        _one_line(info, "events_per_file", *words)
    assert not (tmp_path / "o2").exists()


def test_verify_convert_and_store_features_check_the_rest_before_any_work(tmp_path):
    """The second sweep's: verify(None) and verify(x, against=[s]) were raw TypeErrors and
    verify(progress=False) failed after every check had run; convert(timeout=[1]) was a
    TypeError, store_features of a 0-d array an IndexError, source_features='deform' its
    letters, max_open_outputs=0 accepted."""
    import numpy as np

    from dcbulk.errors import PlanError
    src = small_rtdc(tmp_path / "src" / "a.rtdc")
    report = dcbulk.convert_archive([tmp_path / "src"], tmp_path / "out")
    out = report.files[0].output
    for kwargs, words in [(dict(output=None), ("output", "NoneType")),
                          (dict(output=out, against=[src]), ("against", "list")),
                          (dict(output=out, progress=False), ("progress", "bool False"))]:
        with pytest.raises(UsageError) as info:
            dcbulk.verify(**kwargs, inline=True)
        _one_line(info, *words)
    with pytest.raises(UsageError) as info:
        dcbulk.convert(src, tmp_path / "t.rtdc", timeout=[1])
    _one_line(info, "time limit", "[1]")
    with pytest.raises(PlanError) as info:
        dcbulk.store_features({"userdef1": "abc"}, tmp_path / "s.rtdc")
    _one_line(info, "userdef1", "single value")
    with pytest.raises(UsageError) as info:
        dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o5", max_open_outputs=0)
    _one_line(info, "max_open_outputs", "at least 1")
    deform = dcbulk.read_features(src, ["deform"])["deform"]
    dcbulk.store_features({"deform": deform}, tmp_path / "f.rtdc", metadata_from=src,
                          source_features="deform", inline=True)
    with h5py.File(tmp_path / "f.rtdc") as h5, h5py.File(src) as s:
        assert np.array_equal(h5["events/deform"][:], s["events/deform"][:])
    assert not any((tmp_path / n).exists() for n in ("t.rtdc", "s.rtdc", "o5"))


def test_a_yes_no_argument_must_be_a_bool_a_string_overwrites_nothing(tmp_path):
    """``overwrite="no"`` or ``force="False"`` are truthy: taken as Python takes them, they
    replaced an existing output. Every yes/no argument is one line unless a bool."""
    src = small_rtdc(tmp_path / "src" / "a.rtdc")
    out = tmp_path / "one.rtdc"
    out.write_bytes(b"keep me")
    with pytest.raises(UsageError) as info:
        dcbulk.convert(src, out, overwrite="no")
    _one_line(info, "overwrite", "True or False", "str 'no'")
    assert issubclass(info.type, TypeError)
    assert out.read_bytes() == b"keep me"
    calls = [
        lambda: dcbulk.store_features({"deform": h5py.File(src)["events/deform"][:]},
                                      tmp_path / "s.rtdc", inline="yes"),
        lambda: dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o", force="False"),
        lambda: dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o", resume="no"),
        lambda: dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o", verify=1),
        lambda: dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o",
                                       basin_to_source="no"),
        lambda: dcbulk.modes.condense([tmp_path / "src"], tmp_path / "o", ancillary="no"),
        lambda: dcbulk.modes.split([tmp_path / "src"], tmp_path / "o",
                                   include_empty_boundary_images="no"),
        lambda: dcbulk.modes.join([tmp_path / "src"], tmp_path / "j.rtdc", dry_run="no"),
        lambda: dcbulk.verify(src, src, follow_external="no"),
    ]
    for call in calls:
        with pytest.raises(UsageError) as info:
            call()
        _one_line(info, "must be True or False")
    assert not any((tmp_path / o).exists() for o in ("o", "s.rtdc", "j.rtdc"))
    # numpy's bools are bools
    report = dcbulk.convert_archive([tmp_path / "src"], tmp_path / "o", verify=np.True_)
    assert report.ok, [f.error for f in report.failed]
