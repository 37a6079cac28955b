"""Tests of archive discovery (dcbulk.bulk.sources): files, directories, globs, filters."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dcbulk.bulk.sources import SourceEntry, discover_sources, output_path
from dcbulk.errors import PlanError, SourceNotFoundError


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A small source tree with files that must and must not be found."""
    root = tmp_path / "arch"
    for rel in ("a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc", "zeta/d.rtdc", "notes.txt",
                ".hidden/h.rtdc", "sub/.e.rtdc", "._a.rtdc",
                "sub/b.rtdc.0123456789ab.partial", "sub/raw.rtdc.partial"):
        _touch(root / rel)
    return root


def _rels(entries: list[SourceEntry]) -> list[str]:
    return [e.relpath for e in entries]


def test_order_is_sorted_by_path_within_each_source(tmp_path: Path):
    for rel in ("c.rtdc", "b/x.rtdc", "a.rtdc", "b/a/y.rtdc", "b/z.rtdc"):
        _touch(tmp_path / "t" / rel)
    _touch(tmp_path / "first.rtdc")
    entries = discover_sources([tmp_path / "t", tmp_path / "first.rtdc"])
    assert _rels(entries) == ["a.rtdc", "b/a/y.rtdc", "b/x.rtdc", "b/z.rtdc", "c.rtdc",
                              "first.rtdc"]
    assert _rels(discover_sources([f"{tmp_path}/t/**"])) == _rels(entries)[:-1]


def test_directory_walk_finds_matching_files_sorted(archive: Path):
    entries = discover_sources([archive])
    assert _rels(entries) == ["a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc", "zeta/d.rtdc"]
    for entry in entries:
        assert entry.root == str(archive)
        assert os.path.isabs(entry.path)
        assert entry.path == os.path.join(entry.root, *entry.relpath.split("/"))
        assert Path(entry.path).is_file()
    assert discover_sources([str(archive)]) == entries  # str and Path alike, deterministic


def test_file_given_directly_is_taken_whatever_its_name(archive: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(archive)
    entries = discover_sources(["notes.txt", archive / "sub" / "deep" / "c.rtdc"],
                               exclude=["*.txt"])
    assert entries == [
        SourceEntry(path=str(archive / "notes.txt"), relpath="notes.txt", root=str(archive)),
        SourceEntry(path=str(archive / "sub/deep/c.rtdc"), relpath="c.rtdc",
                    root=str(archive / "sub/deep")),
    ]


def test_glob_patterns_keep_the_tree_below_their_literal_part(archive: Path):
    entries = discover_sources([f"{archive}/**/*.rtdc"])
    assert _rels(entries) == ["a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc", "zeta/d.rtdc"]
    assert {e.root for e in entries} == {str(archive)}
    # a pattern matching directories walks them, keeping the matched names
    entries = discover_sources([f"{archive}/s*"])
    assert _rels(entries) == ["sub/b.rtdc", "sub/deep/c.rtdc"]
    assert entries[0].root == str(archive)
    # files matched by a pattern are taken like files given directly (the pattern filters)
    assert _rels(discover_sources([f"{archive}/*.txt"])) == ["notes.txt"]


def test_relative_glob_is_rooted_at_the_working_directory(archive: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(archive)
    entries = discover_sources(["**/c.rtdc"])
    assert entries == [SourceEntry(str(archive / "sub/deep/c.rtdc"), "sub/deep/c.rtdc",
                                   str(archive))]


def test_include_and_exclude(archive: Path):
    assert _rels(discover_sources([archive], include="*.txt")) == ["notes.txt"]
    assert _rels(discover_sources([archive], include="[bc].rtdc")) == ["sub/b.rtdc",
                                                                        "sub/deep/c.rtdc"]
    # exclude by directory name prunes the directory, by file name or relative path drops files
    assert _rels(discover_sources([archive], exclude=["deep"])) == [
        "a.rtdc", "sub/b.rtdc", "zeta/d.rtdc"]
    assert _rels(discover_sources([archive], exclude=["b.rtdc", "zeta/*"])) == [
        "a.rtdc", "sub/deep/c.rtdc"]
    assert _rels(discover_sources([f"{archive}/**/*.rtdc"], exclude=["deep"])) == [
        "a.rtdc", "sub/b.rtdc", "zeta/d.rtdc"]
    assert _rels(discover_sources([archive], exclude="sub")) == ["a.rtdc", "zeta/d.rtdc"]


def test_hidden_and_partial_files_are_skipped(archive: Path):
    everything = _rels(discover_sources([archive], include="*"))
    assert everything == ["a.rtdc", "notes.txt", "sub/b.rtdc", "sub/deep/c.rtdc",
                          "zeta/d.rtdc"]
    assert _rels(discover_sources([f"{archive}/**/*"])) == everything
    # but a hidden directory given explicitly is walked
    assert _rels(discover_sources([archive / ".hidden"])) == ["h.rtdc"]


def test_output_dir_inside_a_source_directory_is_skipped(archive: Path):
    out = archive / "converted"
    _touch(out / "a.rtdc")
    _touch(out / "sub" / "b.rtdc")
    expected = ["a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc", "zeta/d.rtdc"]
    for sources in ([archive], [f"{archive}/**/*.rtdc"], [f"{archive}/**"]):
        found = [r for r in _rels(discover_sources(sources, output_dir=out))
                 if r != "notes.txt"]  # "**" matches notes.txt itself
        assert found == expected, sources
    assert "converted/a.rtdc" in _rels(discover_sources([archive]))  # without output_dir
    # an output directory given through another spelling (symlink) is recognized too
    link = archive.parent / "out-link"
    link.symlink_to(out, target_is_directory=True)
    assert "converted/a.rtdc" not in _rels(discover_sources([archive], output_dir=link))


def test_duplicates_are_listed_once(archive: Path, caplog):
    """A file reached under another name (a link) was left out without a word; the same
    path given again (a file inside a directory also given) is taken once, silently."""
    link = archive / "zeta" / "link.rtdc"
    link.symlink_to(archive / "a.rtdc")
    with caplog.at_level("WARNING", logger="dcbulk.bulk.sources"):
        entries = discover_sources([archive, archive / "a.rtdc", f"{archive}/*.rtdc"])
    assert _rels(entries) == ["a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc", "zeta/d.rtdc"]
    assert [r.getMessage() for r in caplog.records if "same file" in r.getMessage()] == [
        f"{link} is the same file as {archive / 'a.rtdc'}; made once, as a.rtdc"]


def test_directory_symlink_loops_end(archive: Path):
    (archive / "sub" / "deep" / "loop").symlink_to(archive, target_is_directory=True)
    (archive / "zeta" / "other").symlink_to(archive / "sub", target_is_directory=True)
    assert _rels(discover_sources([archive])) == ["a.rtdc", "sub/b.rtdc", "sub/deep/c.rtdc",
                                                  "zeta/d.rtdc"]


def test_missing_paths_and_empty_patterns_are_all_named(archive: Path):
    with pytest.raises(SourceNotFoundError) as info:
        discover_sources([archive, archive / "nope.rtdc", f"{archive}/*.xyz"])
    message = str(info.value)
    assert str(archive / "nope.rtdc") in message and f"{archive}/*.xyz" in message
    assert isinstance(info.value, FileNotFoundError)


def test_empty_directory_gives_no_entries(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert discover_sources([tmp_path / "empty"]) == []


def test_same_output_relpath_is_refused(archive: Path, tmp_path: Path):
    other = _touch(tmp_path / "elsewhere" / "b.rtdc")
    with pytest.raises(PlanError) as info:
        discover_sources([archive / "sub" / "b.rtdc", other])
    assert str(archive / "sub" / "b.rtdc") in str(info.value)
    assert str(other) in str(info.value)
    # two directory trees with a common relative path collide as well
    _touch(tmp_path / "arch2" / "sub" / "b.rtdc")
    with pytest.raises(PlanError, match="sub/b.rtdc"):
        discover_sources([archive, tmp_path / "arch2"])


def test_output_path_mirrors_the_tree(archive: Path, tmp_path: Path):
    entries = discover_sources([archive])
    out = tmp_path / "out"
    assert [output_path(e, out) for e in entries] == [
        str(out / "a.rtdc"), str(out / "sub" / "b.rtdc"), str(out / "sub" / "deep" / "c.rtdc"),
        str(out / "zeta" / "d.rtdc")]
    for bad in ("../x.rtdc", "/abs.rtdc", "a//b.rtdc", ""):
        with pytest.raises(PlanError):
            output_path(SourceEntry("/s/x.rtdc", bad, "/s"), out)


def test_sample_files_are_found(shared_data_dir: Path, sample_files: list[Path]):
    entries = discover_sources([shared_data_dir])
    assert [e.path for e in entries] == [str(p) for p in sample_files]


@pytest.mark.slow
def test_many_files_are_discovered_quickly(tmp_path: Path):
    root = tmp_path / "big"
    for d in range(20):
        sub = root / f"day{d:02d}" / "run"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"m{i:03d}.rtdc").write_bytes(b"")
            if i % 10 == 0:
                (sub / f"m{i:03d}.txt").write_bytes(b"")
    t0 = time.perf_counter()
    entries = discover_sources([root])
    elapsed = time.perf_counter() - t0
    assert len(entries) == 2000
    assert _rels(entries) == sorted(_rels(entries))
    assert entries[0].relpath == "day00/run/m000.rtdc"
    assert elapsed < 1.0, f"discovering 2,000 files took {elapsed:.2f} s"
