"""``dcbulk verify OUT --against SRC`` of an output with a provenance log: SRC is checked as a
copy of the source the log names, with the log's options (dcbulk.modes.verify.verify_pairs)."""
from __future__ import annotations

import shutil

import h5py
import pytest
from fixtures import small_rtdc

import dcbulk
import dcbulk.modes
from dcbulk.cli import main


@pytest.fixture
def source(tmp_path):
    """A source and a function making its copy (a backup: the line for a gone source says
    to 'give a copy with --against SRC')."""
    src = small_rtdc(tmp_path / "src" / "s.rtdc", 50, seed=8, with_contour=True)
    with h5py.File(src, "a") as h5:
        h5["events/deform"].attrs["unit"] = "none"

    def copy():
        backup = tmp_path / "backup" / "s.rtdc"
        backup.parent.mkdir()
        return shutil.copy(src, backup)
    return src, copy


def test_a_condensed_output_is_verified_against_a_copy_of_its_source(source, tmp_path,
                                                                    capsys):
    """A condensed output given --against its source's copy was reported to lack 'image',
    'mask' and every other feature condense leaves out (exit 1: the command verify's own
    line for a gone source recommends)."""
    src, copy = source
    assert dcbulk.modes.condense([src], tmp_path / "c", ancillary=True).ok
    out, backup = tmp_path / "c" / "s.rtdc", copy()
    assert main(["verify", str(out), "--against", str(backup)]) == 0, capsys.readouterr()
    assert "1 equal" in capsys.readouterr().out
    with h5py.File(backup, "a") as h5:  # the copy checked as the log's source, row by row
        h5["events/deform"][3] += 0.5
    assert main(["verify", "-q", str(out), "--against", str(backup)]) == 1
    assert "'deform'" in capsys.readouterr().out
    shutil.copy(src, backup)
    src.unlink()  # gone: the output's basin to it (its images) is lost, whatever the copy
    assert main(["verify", "-q", str(out)]) == 3
    assert "give a copy with --against SRC" in capsys.readouterr().err
    assert main(["verify", "-q", str(out), "--against", str(backup)]) == 1
    assert "basin 'source' does not resolve" in capsys.readouterr().out


def test_a_split_piece_is_verified_against_a_copy_of_its_source(source, tmp_path, capsys):
    """A piece given --against its source's copy was compared with the whole source (its
    events 'differ'); now with the piece's events and sample suffix, from its log."""
    src, copy = source
    assert dcbulk.modes.split([src], tmp_path / "p", events_per_file=20).ok
    pieces, backup = sorted((tmp_path / "p").glob("s_*.rtdc")), copy()
    assert len(pieces) == 3
    renamed = shutil.copy(backup, tmp_path / "renamed.rtdc")
    for piece in pieces:  # the pieces of 'renamed' are no pieces that are missing
        for copy in (backup, renamed):
            assert main(["verify", "-q", str(piece), "--against", str(copy)]) == 0, \
                capsys.readouterr()


def test_against_another_file_says_it_is_not_a_copy_of_the_source(source, tmp_path, capsys):
    src, _ = source
    assert dcbulk.modes.condense([src], tmp_path / "c").ok
    other = small_rtdc(tmp_path / "other.rtdc", 60, seed=9)
    assert main(["verify", "-q", str(tmp_path / "c" / "s.rtdc"), "--against", str(other)]) == 1
    line, = [x for x in capsys.readouterr().out.splitlines() if "s.rtdc" in x]
    assert f"{other} is not a copy of the source it was made of" in line, line


def test_given_options_still_say_what_the_output_must_equal(source, tmp_path, capsys):
    """With --features or --filter, --against is the plain source of those options, as
    before, provenance log or not: a condensed output then lacks the features it was not
    made with."""
    src, _ = source
    assert dcbulk.modes.condense([src], tmp_path / "c").ok
    out = tmp_path / "c" / "s.rtdc"
    assert main(["verify", "-q", str(out), "--against", str(src), "--features",
                 "image,deform"]) == 1
    assert "'image' is missing" in capsys.readouterr().out


def test_a_joined_output_is_not_verified_against_one_source(tmp_path, capsys):
    ins = [small_rtdc(tmp_path / f"{k}.rtdc", 30, seed=k, meta={
        "experiment:date": "2024-03-01", "experiment:time": f"10:0{k}:00"}) for k in (1, 2)]
    out = tmp_path / "j.rtdc"
    assert dcbulk.modes.join(ins, out).ok
    assert main(["verify", "-q", str(out), "--against", str(ins[0])]) == 2
    err = capsys.readouterr().err
    assert "joined from several inputs" in err and len(err.strip().splitlines()) == 1, err
