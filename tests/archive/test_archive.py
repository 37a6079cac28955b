"""Whole archives: mirrored trees, isolation of bad files, the CLI (resume after a kill:
tests/faults)."""
from __future__ import annotations

import json
import os
import pathlib

import h5py
import numpy as np
import pytest

from dcbulk.bulk import MANIFEST_NAME, convert_archive
from dcbulk.cli import EXIT_ERROR, EXIT_FAILED_FILES, EXIT_OK, EXIT_USAGE, main

from fixtures import small_rtdc, small_sources, synthetic_archive
from helpers import assert_features_equal, verify_with_dclab


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return synthetic_archive(tmp_path_factory.mktemp("archive"), 6, events=(20, 300), seed=2,
                             bad_files=3)


def _outputs(dst: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in dst.rglob("*.rtdc"))


def test_archive_mirrored_equal_and_bad_files_isolated(client, archive, tmp_path):
    root, good = archive
    dst = tmp_path / "out"
    report = convert_archive([root], dst, client=client)
    assert report.count("done") == len(good) and report.count("failed") == 3 and not report.ok
    for src in good:
        out = dst / src.relative_to(root)
        assert out.exists(), out
        assert_features_equal(src, out)
    failed = {pathlib.Path(f.source).name: f.error for f in report.failed}
    assert all("broken" in name for name in failed) and all(failed.values())
    assert not list(dst.rglob("*.partial"))
    verify_with_dclab(next(iter(_outputs(dst))))
    # a second run skips everything it finished and retries only the failures
    again = convert_archive([root], dst, client=client)
    assert again.count("skipped") == len(good) and again.count("failed") == 3


def test_filter_and_features_and_option_change_refused(client, archive, tmp_path):
    root, good = archive
    dst = tmp_path / "filtered"
    report = convert_archive([str(root / "**" / "M*.rtdc")], dst, client=client,
                             features=["deform", "image"], filter="deform > 0.02")
    assert report.ok and report.count("done") == len(good)
    for src in good:
        with h5py.File(src) as a, h5py.File(dst / src.relative_to(root)) as b:
            keep = a["events/deform"][:] > 0.02
            assert sorted(b["events"]) == ["deform", "image"]
            np.testing.assert_array_equal(b["events/image"][:], a["events/image"][:][keep])
    from dcbulk.errors import ManifestError
    with pytest.raises(ManifestError):
        convert_archive([str(root / "**" / "M*.rtdc")], dst, client=client, compression="none")
    forced = convert_archive([str(root / "**" / "M*.rtdc")], dst, client=client,
                             compression="none", force=True)
    assert forced.count("done") == len(good)
    with h5py.File(dst / good[0].relative_to(root)) as h5:
        assert h5["events/image"].id.get_create_plist().get_nfilters() == 1  # fletcher32 only


def test_existing_foreign_output_is_not_overwritten(client, tmp_path):
    (tmp_path / "src").mkdir()
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 30, seed=1, with_traces=True)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "a.rtdc").write_bytes(b"precious")
    report = convert_archive([src], dst, client=client)
    assert report.count("failed") == 1 and "exists" in report.failed[0].error
    assert (dst / "a.rtdc").read_bytes() == b"precious"
    report = convert_archive([src], dst, client=client, force=True)
    assert report.ok
    assert_features_equal(src, dst / "a.rtdc")


def test_cli_info_demo_usage_and_errors(tmp_path, capsys):
    assert main(["info", "/nonexistent.rtdc"]) == EXIT_ERROR
    assert "error" in capsys.readouterr().err
    assert main(["convert"]) == EXIT_USAGE
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--files", "3", "--events", "60",
                 "--workers", "1"]) == EXIT_OK
    text = capsys.readouterr()
    assert "3 converted" in text.out and "dashboard" in text.err
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["counts"]["done"] == 3
    assert (tmp_path / "demo" / "performance-report.html").stat().st_size > 1000
    out = next((tmp_path / "demo" / "converted").rglob("*.rtdc"))
    assert main(["info", str(out)]) == EXIT_OK
    assert "image" in capsys.readouterr().out
    # second run: everything is skipped
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--workers", "1"]) == EXIT_OK
    assert "3 skipped" in capsys.readouterr().out


def test_cli_dry_run_and_failed_files_exit(tmp_path, archive, capsys):
    root, good = archive
    dst = tmp_path / "dry"
    assert main(["convert", str(root), "-o", str(dst), "--dry-run"]) == EXIT_OK
    assert capsys.readouterr().out.count("planned") == len(good) + 3
    assert not _outputs(dst)
    status = main(["convert", str(root), "-o", str(dst), "--workers", "2", "--quiet",
                   "--report", str(tmp_path / "r.json")])
    assert status == EXIT_FAILED_FILES
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["counts"] == {"done": len(good), "skipped": 0, "failed": 3, "planned": 0}


def test_dry_run_writes_nothing_and_option_conflict_fails_before_a_cluster(archive, tmp_path,
                                                                          capsys):
    root, good = archive
    dst = tmp_path / "never"
    report = convert_archive([root], dst, dry_run=True)
    assert report.count("planned") == len(good) + 3 and not dst.exists()
    small = tmp_path / "small"
    small.mkdir()
    src = small_rtdc(small / "a.rtdc", 20, seed=3, with_traces=True)
    out = tmp_path / "out"
    assert main(["convert", str(src), "-o", str(out), "--workers", "1", "-q"]) == EXIT_OK
    capsys.readouterr()
    # other options: refused at once, before any cluster (no dashboard line), nothing changed
    before = (out / MANIFEST_NAME).read_bytes()
    assert main(["convert", str(src), "-o", str(out), "--compression", "none"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "--force" in err and "dashboard" not in err
    assert (out / MANIFEST_NAME).read_bytes() == before
    # nothing left to do: no cluster either
    assert main(["convert", str(src), "-o", str(out)]) == EXIT_OK
    text = capsys.readouterr()
    assert "1 skipped" in text.out and "dashboard" not in text.err


def test_cli_decides_once_and_holds_one_lock(client, tmp_path, monkeypatch, capsys):
    """The CLI plans a run once (one manifest read, one content check per source, one
    partial-file sweep) and executes that plan; the output lock is taken once and is not
    reentrant (a second hold, also from this process, is refused like another run)."""
    import dcbulk.bulk.runplan as runplan
    from dcbulk.bulk import Manifest, output_lock
    from dcbulk.errors import OutputLockedError
    src = tmp_path / "src"
    paths = small_sources(src, ["0.rtdc", "1.rtdc"], events=30, step=0, with_traces=True)
    dst = tmp_path / "dst"
    calls = {"load": 0, "clean": 0}
    real_load, real_clean = Manifest.load.__func__, runplan.clean_partials

    def load(cls, *args, **kwargs):
        calls["load"] += 1
        return real_load(cls, *args, **kwargs)

    def clean(*args, **kwargs):
        calls["clean"] += 1
        return real_clean(*args, **kwargs)

    monkeypatch.setattr(Manifest, "load", classmethod(load))
    monkeypatch.setattr(runplan, "clean_partials", clean)
    args = ["convert", str(src), "-o", str(dst), "--scheduler", client.scheduler.address, "-q"]
    assert main(args) == EXIT_OK
    assert calls == {"load": 1, "clean": 1}
    for path in paths:
        assert_features_equal(path, dst / path.name)
    calls.update(load=0, clean=0)
    assert main(args) == EXIT_OK  # nothing left to do: decided once, still swept once
    assert calls == {"load": 1, "clean": 1} and "2 skipped" in capsys.readouterr().out
    with output_lock(dst):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with output_lock(dst):
                pass
        assert main(args) == EXIT_ERROR  # a run in this process is refused too
