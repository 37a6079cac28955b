"""A recorded source that changed since its output was made: the finished output is kept
and that file fails in one line (``--force`` makes it again), in every mode that keeps a
manifest; an output that is missing or not of its recorded size is still made again."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import pytest

import dcbulk
import dcbulk.modes
from dcbulk.bulk import Manifest, convert_archive
from dcbulk.cli import main

from fixtures import small_rtdc

DATA = Path(__file__).resolve().parents[1] / "data"


def _events(path: Path) -> int:
    with h5py.File(path, "r") as h5:
        return int(h5.attrs["experiment:event count"])


def _rewrite(path: Path, events: int, seed: int, **kwargs) -> Path:
    path.unlink()
    return small_rtdc(path, events, seed=seed, **kwargs)


def _kept(out: Path, change: str) -> str:
    return (f"{out}: its source has changed since the output was made ({change}); the "
            f"output is kept, --force makes it again")


def test_a_replaced_source_keeps_its_verified_output_until_forced(tmp_path, capsys):
    arch, dst = tmp_path / "arch", tmp_path / "out"
    arch.mkdir()
    src = arch / "M001_data.rtdc"
    shutil.copy(DATA / "cytoshot-test-data.rtdc", src)
    assert main(["convert", str(arch), "-o", str(dst), "-q"]) == 0
    out = dst / "M001_data.rtdc"
    before = out.read_bytes()
    assert main(["verify", str(dst), "-q"]) == 0
    src.unlink()
    shutil.copy(DATA / "dcnum_thresh_example.rtdc", src)
    capsys.readouterr()
    assert main(["convert", str(arch), "-o", str(dst), "-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dcbulk: 0 converted, 0 skipped (finished before), 1 failed")
    assert lines[1:] == ["  FAILED " + str(src) + ": " + _kept(out, (
        "size 787626 -> 471667 bytes, measurement identifier "
        "d5a40aed-0b6c-0412-e87c-59789fdd28d0 -> 2024-rcs-example-data-ndio1287"))]
    assert out.read_bytes() == before and _events(out) == 40
    # the record is left as it was: verify still names the change, a re-run fails again
    assert Manifest.load(dst, read_only=True).records["M001_data.rtdc"].status == "done"
    assert main(["convert", str(arch), "-o", str(dst), "-q"]) == 1
    assert out.read_bytes() == before
    assert main(["convert", str(arch), "-o", str(dst), "-q", "--force"]) == 0
    assert _events(out) == 13
    assert main(["verify", str(dst), "-q"]) == 0


def test_a_missing_output_or_one_of_another_size_is_made_again(tmp_path, client):
    src = small_rtdc(tmp_path / "arch" / "a.rtdc", 30)
    dst = tmp_path / "out"
    assert convert_archive([src.parent], dst, client=client).count("done") == 1
    out = dst / "a.rtdc"
    _rewrite(src, 31, 5)  # another source; its output there is no longer recorded
    with open(out, "ab") as fh:
        fh.write(b"!")
    assert convert_archive([src.parent], dst, client=client).count("done") == 1
    assert _events(out) == 31
    out.unlink()
    _rewrite(src, 30, 0)
    assert convert_archive([src.parent], dst, client=client).count("done") == 1
    assert _events(out) == 30


def test_a_new_mtime_alone_remakes_a_small_source_and_keeps_a_large_ones_output(tmp_path,
                                                                               client):
    """A source of at most two MiB is hashed whole: a new mtime with the same bytes is made
    again as before; a larger one's bytes between its first and last MiB are not hashed,
    so its output is kept."""
    arch, dst = tmp_path / "arch", tmp_path / "out"
    small = small_rtdc(arch / "small.rtdc", 20, image_shape=(40, 60), compression="zstd:5")
    large = small_rtdc(arch / "large.rtdc", 120, image_shape=(80, 250))
    assert small.stat().st_size <= 2 << 20 < large.stat().st_size
    assert convert_archive([arch], dst, client=client).count("done") == 2
    kept = (dst / "large.rtdc").read_bytes()
    for path in (small, large):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = convert_archive([arch], dst, client=client)
    by_name = {Path(f.source).name: f for f in report.files}
    assert by_name["small.rtdc"].status == "done"
    assert by_name["large.rtdc"].status == "failed"
    assert by_name["large.rtdc"].error == _kept(dst / "large.rtdc", (
        "modification time only; its size and first and last MiB are as recorded, the "
        "bytes between them may differ"))
    assert (dst / "large.rtdc").read_bytes() == kept


def _add_one(features):
    return {"userdef1": features["deform"] + 1}


@pytest.mark.parametrize("mode", ["condense", "reprocess"])
def test_condense_and_reprocess_keep_the_output_of_a_changed_source(tmp_path, mode, client):
    arch, dst = tmp_path / "arch", tmp_path / "out"
    same = {"meta": {"experiment:run identifier": "run-1"}}
    src = small_rtdc(arch / "a.rtdc", 30, **same)

    def run(**kwargs):
        if mode == "condense":
            return dcbulk.modes.condense([arch], dst, client=client, **kwargs)
        return dcbulk.reprocess([arch], dst, _add_one, client=client, **kwargs)
    assert run().count("done") == 1
    (out,) = dst.rglob("*.rtdc")
    before = out.read_bytes()
    _rewrite(src, 30, 9, **same)  # the same size and identifier, other events
    report = run()
    assert [f.error for f in report.failed] == [_kept(out, "content: its first or last MiB "
                                                           "differ")]
    assert out.read_bytes() == before
    assert run(force=True).count("done") == 1
    assert out.read_bytes() != before
