"""The executor's optional job hooks (what ``dcbulk process`` needs, kept general).

``Job.finished`` (adopt an output without a record or a dcbulk provenance log),
``Job.sweep`` (leftovers removed under the lock at a run's start and end),
``Report.note`` (a source left alone on purpose: skipped, unrecorded) and
``Command.compression`` (a command's own compression option instead of the shared one),
on a real LocalCluster with data read back.
"""
from __future__ import annotations

import os
import sys

import cloudpickle
import h5py
import numpy as np

from dcbulk.bulk import ConvertJob, Manifest, make_options, run_job
from dcbulk.cli import EXIT_USAGE, main
from dcbulk.command import Command
from dcbulk.engine.report import Report
from dcbulk.synth import make_rtdc

# the workers unpickle this module's job class by value (it is not importable there)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

JUNK = ".junk"


class HookedJob(ConvertJob):
    """A conversion with every optional hook: ``skip*.rtdc`` is left alone (a note),
    an output whose ``adopt-me`` attribute names its source is finished, and each made
    output leaves a ``.junk`` file beside it (swept)."""

    name = "hooked"
    fingerprint = {"mode": "hooked"}

    def make(self, target, options, **kwargs):
        if os.path.basename(target.source.path).startswith("skip"):
            return Report(source=target.source.path, output="", note="left alone on purpose")
        report = super().make(target, options, **kwargs)
        with open(target.output + JUNK, "w") as fh:  # what a killed task would leave
            fh.write("x")
        return report

    def finished(self, source, output):
        with h5py.File(output, "r") as h5:
            return h5.attrs.get("adopt-me") == source

    def sweep(self, targets):
        removed = 0
        for target in targets:
            if os.path.exists(target.output + JUNK):
                os.unlink(target.output + JUNK)
                removed += 1
        return removed


def test_hooks_adopt_note_and_sweep(client, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    a = make_rtdc(src / "a.rtdc", 30, seed=1)
    b = make_rtdc(src / "b.rtdc", 20, seed=2)
    make_rtdc(src / "skip.rtdc", 10, seed=3)
    with h5py.File(dst / "b.rtdc", "w") as h5:  # finished by "a killed run", unrecorded
        h5.attrs["adopt-me"] = str(b)
    (dst / ("skip.rtdc" + JUNK)).write_text("left by a killed task")
    report = run_job(HookedJob(), [src], dst, make_options(), client=client)
    by_name = {os.path.basename(f.source): f for f in report.files}
    assert by_name["a.rtdc"].status == "done"
    assert by_name["b.rtdc"].status == "skipped"
    assert by_name["b.rtdc"].reason.startswith("finished")
    assert (by_name["skip.rtdc"].status, by_name["skip.rtdc"].reason) == \
        ("skipped", "left alone on purpose")
    assert report.ok
    # swept at the start (the old leftover) and at the end (the one a.rtdc's task left)
    assert sorted(p.name for p in dst.iterdir() if p.name.endswith(JUNK)) == []
    records = Manifest.load(str(dst), read_only=True).records
    assert sorted(records) == ["a.rtdc", "b.rtdc"]  # the note is not recorded
    assert records["b.rtdc"].status == "done"
    with h5py.File(dst / "b.rtdc", "r") as h5:  # adopted, not rewritten
        assert h5.attrs["adopt-me"] == str(b) and "events" not in h5
    with h5py.File(a, "r") as h5a, h5py.File(dst / "a.rtdc", "r") as out:
        for name in ("deform", "area_um", "image"):
            np.testing.assert_array_equal(out["events"][name][:], h5a["events"][name][:])
    assert not (dst / "skip.rtdc").exists()
    # a second run: a settled, b recorded, skip left alone again
    again = run_job(HookedJob(), [src], dst, make_options(), client=client)
    assert sorted((os.path.basename(f.source), f.status) for f in again.files) == [
        ("a.rtdc", "skipped"), ("b.rtdc", "skipped"), ("skip.rtdc", "skipped")]


def test_command_with_its_own_compression_has_no_shared_one(tmp_path, capsys):
    def own(p):
        p.add_argument("-c", "--compression", default="zstd-5")

    cmd = Command(name="own", help="h", description="d", job=lambda ns: HookedJob(),
                  add_arguments=own, compression=lambda ns: ns.compression.replace("-", ":"))
    src = tmp_path / "src"
    src.mkdir()
    make_rtdc(src / "a.rtdc", 5, seed=1)
    args = ["own", str(src), "-o", str(tmp_path / "dst"), "--dry-run"]
    # the shared --compression would clash with the command's own (argparse refuses both)
    assert main([*args, "-c", "zstd-3"], modes=(cmd,)) == 0
    assert "planned" in capsys.readouterr().out
    assert main([*args, "-c", "bogus-3"], modes=(cmd,)) == EXIT_USAGE  # its value is parsed
    assert "bogus" in capsys.readouterr().err
