"""Tests of the resume manifest (dcbulk.bulk.manifest)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
import uuid
from pathlib import Path

import pytest

from dcbulk.bulk.job import Target
from dcbulk.bulk.manifest import (MANIFEST_NAME, Manifest, ManifestRecord, clean_partials,
                                  file_sha256, options_fingerprint, stale_partials)
from dcbulk.bulk.resume import decide
from dcbulk.bulk.sources import SourceEntry, discover_sources, output_path
from dcbulk.errors import ManifestError

OPTIONS = {"compression": "zstd:5", "features": None, "filter": None}


@pytest.fixture
def setup(tmp_path: Path):
    """Two sources, an output directory and a helper that 'converts' a source."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.rtdc").write_bytes(b"source a")
    (src / "sub" / "b.rtdc").write_bytes(b"source b, longer")
    out = tmp_path / "out"
    entries = discover_sources([src])

    def convert(entry: SourceEntry, data: bytes = b"converted") -> str:
        path = output_path(entry, out)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(data + entry.relpath.encode())
        return path

    return entries, out, convert


def _decide(manifest: Manifest, entry: SourceEntry, out=None):
    """:func:`dcbulk.bulk.resume.decide` for the output ``entry`` gets below ``out``."""
    out = manifest.output_dir if out is None else out
    return decide(manifest, Target(output_path(entry, out), entry, 0))


def _no_partials(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if p.name.endswith(".partial")]


def test_file_sha256(tmp_path: Path):
    data = os.urandom(100_003)
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f", bufsize=4096) == hashlib.sha256(data).hexdigest()
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_options_fingerprint_is_canonical():
    fp = options_fingerprint({"b": [1, 2], "a": {"y": 1, "x": None}})
    assert fp == options_fingerprint({"a": {"x": None, "y": 1}, "b": (1, 2)})
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp != options_fingerprint({"b": [2, 1], "a": {"y": 1, "x": None}})
    canonical = '{"a":{"x":null,"y":1},"b":[1,2]}'
    assert fp == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert options_fingerprint({"p": Path("/x")}) == options_fingerprint({"p": "/x"})
    with pytest.raises(TypeError, match="object"):
        options_fingerprint({"bad": object()})


def test_empty_manifest_when_absent(tmp_path: Path):
    manifest = Manifest.load(tmp_path / "nowhere")
    assert len(manifest) == 0 and manifest.options is None
    assert manifest.path == str(tmp_path / "nowhere" / MANIFEST_NAME)
    assert not (tmp_path / "nowhere").exists()  # loading creates nothing


def test_round_trip(setup):
    entries, out, convert = setup
    a, b = entries
    with Manifest.load(out) as manifest:
        manifest.check_options(OPTIONS)
        convert(a)
        digest = file_sha256(output_path(a, out))
        rec_a = manifest.record_done(a, identifier="id-a", events=12, seconds=0.5,
                                     checksum=digest)
        rec_b = manifest.record_failed(b, ValueError("broken file"), seconds=0.1)
    assert rec_a.output_sha256 == digest
    assert rec_a.head_sha256 == hashlib.sha256(Path(a.path).read_bytes()).hexdigest()
    assert rec_a.output_size == len(b"converted" + a.relpath.encode())
    assert rec_b.error == "ValueError: broken file" and rec_b.status == "failed"
    loaded = Manifest.load(out)
    assert dict(loaded.records) == {"a.rtdc": rec_a, "sub/b.rtdc": rec_b}
    assert loaded.options == OPTIONS and loaded.fingerprint == options_fingerprint(OPTIONS)
    assert sorted(r.status for r in loaded.records.values()) == ["done", "failed"]
    # JSON Lines: a header, the options, one record per line (grep-able)
    text = (out / MANIFEST_NAME).read_text()
    docs = [json.loads(line) for line in text.splitlines()]
    assert docs[0]["format"] == "dcbulk-manifest" and docs[0]["version"] == 2
    assert docs[1]["options"] == OPTIONS and len(docs) == 4
    assert docs[2]["relpath"] == "a.rtdc" and docs[2]["record"]["events"] == 12
    assert [line for line in text.splitlines() if '"sub/b.rtdc"' in line][0].count(
        "broken file") == 1
    assert ManifestRecord.from_dict(rec_a.to_dict()) == rec_a


def test_a_failed_append_raises_and_keeps_earlier_lines(setup,
                                                         monkeypatch: pytest.MonkeyPatch):
    entries, out, convert = setup
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    convert(entries[0])
    manifest.record_done(entries[0], checksum="0" * 64)
    before = (out / MANIFEST_NAME).read_bytes()

    def failing_write(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(ManifestError, match="No space left"):
        manifest.record_failed(entries[1], "boom")
    monkeypatch.undo()
    assert (out / MANIFEST_NAME).read_bytes() == before  # earlier lines intact
    assert _no_partials(out)
    manifest.record_failed(entries[1], "boom")
    assert len(Manifest.load(out)) == 2


def test_every_record_is_on_disk_at_once_and_the_last_line_wins(setup):
    entries, out, convert = setup
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    assert Manifest.load(out).options == OPTIONS
    manifest.record_failed(entries[1], "x")
    assert Manifest.load(out).records["sub/b.rtdc"].status == "failed"
    convert(entries[1])
    manifest.record_done(entries[1])  # no flush, no timer: appended and fsynced
    assert Manifest.load(out).records["sub/b.rtdc"].status == "done"
    lines = (out / MANIFEST_NAME).read_bytes().splitlines()
    assert len(lines) == 4  # header, options, failed, done: appended, never rewritten


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(setup):
    entries, out, convert = setup
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    convert(entries[0])
    manifest.record_done(entries[0])
    path = out / MANIFEST_NAME
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"relpath": "sub/b.rtdc", "record": {"sour')  # killed mid-write
    loaded = Manifest.load(out)
    assert list(loaded.records) == ["a.rtdc"] and _decide(loaded, entries[0]).action == "skip"
    loaded.record_failed(entries[1], "bad")
    assert path.read_bytes().startswith(whole)
    assert Manifest.load(out).records["sub/b.rtdc"].status == "failed"
    assert all(json.loads(line) for line in path.read_bytes().splitlines())


def test_a_grown_log_is_compacted_when_loaded(setup):
    entries, out, convert = setup
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    for i in range(40):
        manifest.record_failed(entries[1], f"try {i}")
    assert len((out / MANIFEST_NAME).read_bytes().splitlines()) == 42
    loaded = Manifest.load(out)
    assert len((out / MANIFEST_NAME).read_bytes().splitlines()) == 3
    assert loaded.records["sub/b.rtdc"].error == "try 39"
    assert Manifest.load(out).records == loaded.records and loaded.options == OPTIONS


_HEAD = b'{"format": "dcbulk-manifest", "version": 2}\n'


@pytest.mark.parametrize("content, match", [
    (b"{not json\n", "not valid JSON"),
    (b"[1, 2]\n", "not a dcbulk manifest"),
    (b'{"format": "dcbulk-manifest", "version": 99}\n', "version 99"),
    (_HEAD + b"{not json\n" + b'{"options": {}}\n', "line 2: not valid JSON"),
    (_HEAD + b'{"relpath": "a.rtdc", "record": {"source": "x"}}\n', "record 'a.rtdc'.*size"),
    (_HEAD + b'{"relpath": "a.rtdc", "record": {"source": "x", "size": 1, "mtime_ns": 2, '
     b'"status": "weird", "output": "a.rtdc"}}\n', "status"),
    (_HEAD + b'{"options": [1]}\n', "'options' is not a JSON object"),
    (_HEAD + b'{"something": 1}\n', "neither options nor a record"),
])
def test_corrupt_manifest_is_an_error(tmp_path: Path, content: bytes, match: str):
    (tmp_path / MANIFEST_NAME).write_bytes(content)
    with pytest.raises(ManifestError, match=match) as info:
        Manifest.load(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(info.value)


def test_options_mismatch_needs_force(setup):
    entries, out, convert = setup
    with Manifest.load(out) as manifest:
        manifest.check_options(OPTIONS)
        convert(entries[0])
        manifest.record_done(entries[0])
    other = dict(OPTIONS, compression="zstd:9", filter="deform < 0.1")
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)  # same options: fine
    with pytest.raises(ManifestError) as info:
        manifest.check_options(other)
    message = str(info.value)
    assert "compression: 'zstd:5' -> 'zstd:9'" in message and "filter" in message
    assert "features" not in message and "--force" in message
    assert _decide(manifest, entries[0]).action == "skip"  # nothing changed
    manifest.check_options(other, force=True)
    assert manifest.options == other
    assert _decide(manifest, entries[0]).reason == "options changed"
    convert(entries[0])
    manifest.record_done(entries[0])
    assert _decide(manifest, entries[0]).reason == "finished"
    assert Manifest.load(out).fingerprint == options_fingerprint(other)


def test_options_change_without_finished_outputs_is_accepted(setup):
    entries, out, _ = setup
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    manifest.record_failed(entries[0], "bad")
    manifest.check_options(dict(OPTIONS, compression="zstd:1"))  # failures only: no conflict
    assert manifest.options["compression"] == "zstd:1"


def test_decide_gives_every_reason(setup):
    entries, out, convert = setup
    a, b = entries
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    assert (_decide(manifest, a).action, _decide(manifest, a).reason) == ("convert", "new")
    convert(b)
    assert _decide(manifest, b).reason == "unrecorded output exists"
    manifest.record_failed(b, "bad")
    assert _decide(manifest, b).reason == "previously failed"

    decision = _decide(manifest, a)
    convert(a)
    manifest.record_done(a, size=decision.size, mtime_ns=decision.mtime_ns)
    assert (_decide(manifest, a).action, _decide(manifest, a).reason) == ("skip", "finished")
    assert _decide(manifest, a, out).reason == "finished"

    out_a = Path(output_path(a, out))
    out_a.write_bytes(out_a.read_bytes() + b"!")
    assert _decide(manifest, a).reason == "output size differs"
    out_a.unlink()
    assert _decide(manifest, a).reason == "output missing"
    convert(a)
    assert _decide(manifest, a).reason == "finished"

    st = os.stat(a.path)
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _decide(manifest, a).reason == "mtime changed"  # its digest covers every byte
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _decide(manifest, a).reason == "finished"
    Path(a.path).write_bytes(b"source A")  # same size, mtime restored (cp -p, rsync -t)
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _decide(manifest, a).reason == "source changed"  # the first MiB's hash differs
    assert _decide(Manifest.load(out), a).reason == "source changed"
    Path(a.path).write_bytes(b"source a")  # the original content again
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _decide(manifest, a).reason == "finished"
    Path(a.path).write_bytes(b"source a, grown")
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _decide(manifest, a).reason == "source changed"


def test_source_modified_during_conversion_is_redone(setup):
    entries, out, convert = setup
    a = entries[0]
    manifest = Manifest.load(out)
    decision = _decide(manifest, a)
    Path(a.path).write_bytes(b"modified while converting")
    convert(a)
    manifest.record_done(a, size=decision.size, mtime_ns=decision.mtime_ns)
    assert _decide(manifest, a).reason == "source changed"


def test_record_done_checks_the_output(setup):
    entries, out, convert = setup
    manifest = Manifest.load(out)
    with pytest.raises(ManifestError, match="does not exist"):
        manifest.record_done(entries[0])
    path = convert(entries[0])
    rec = manifest.record_done(entries[0], output=path, output_size=1, checksum="ab" * 32)
    assert rec.output == "a.rtdc" and rec.output_size == os.path.getsize(path)
    assert rec.output_sha256 == "ab" * 32
    with pytest.raises(ManifestError, match="outside"):
        manifest.record_done(entries[0], output=entries[0].path)


def test_stale_partials_are_found_and_cleaned(tmp_path: Path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / "a.rtdc.0123456789ab.partial",
             out / "sub" / f"b.rtdc.{uuid.uuid4().hex}.partial",
             out / "sub" / f"c.rtdc.{uuid.uuid4()}.partial",
             out / f"{MANIFEST_NAME}.deadbeef0001.partial"]
    keep = [out / "a.rtdc", out / "notes.partial", out / "x.rtdc.xyz123456789.partial",
            out / "sub" / "b.rtdc.partial"]
    for path in stale + keep:
        path.write_bytes(b"")
    assert stale_partials(out) == sorted(stale)
    assert clean_partials(out) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
    assert clean_partials(out) == []
    assert stale_partials(tmp_path / "missing") == []


def test_manifest_cannot_be_pickled(tmp_path: Path):
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(Manifest(tmp_path))


@pytest.mark.slow
def test_10k_records_append_load_and_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "m.rtdc").write_bytes(b"s")
    (out / "o.rtdc").write_bytes(b"o")
    entries = [SourceEntry(str(src / "m.rtdc"), f"day{i // 1000}/m{i:05d}.rtdc", str(src))
               for i in range(10_000)]  # one file on disk stands in for all of them
    manifest = Manifest.load(out)
    manifest.check_options(OPTIONS)
    st = os.stat(src / "m.rtdc")
    # each append is fsynced (~0.2-1 ms here, nothing next to converting a file); the
    # disk's fsync time is not what this test measures
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    t0 = time.perf_counter()
    for entry in entries:
        manifest.record_done(entry, output=out / "o.rtdc", events=100, seconds=1.5,
                             identifier="x" * 36, size=st.st_size, mtime_ns=st.st_mtime_ns,
                             head="0" * 64)
    monkeypatch.undo()
    print(f"\n10,000 appends: {(time.perf_counter() - t0) * 1e3:.0f} ms "
          f"({os.path.getsize(manifest.path) / 1e6:.1f} MB)")
    t0 = time.perf_counter()
    loaded = Manifest.load(out)
    decisions = [_decide(loaded, e) for e in entries]
    print(f"load + 10,000 decisions: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    assert len(loaded) == 10_000 and {d.reason for d in decisions} == {"output missing"}
    assert loaded.records["day9/m09999.rtdc"] == manifest.records["day9/m09999.rtdc"]
    loaded.compact()
    assert Manifest.load(out).records == loaded.records


def test_commit_file_is_exclusive_unless_overwrite(tmp_path):
    from dcbulk.errors import OutputExistsError
    from dcbulk.partials import commit_file, partial_path
    out = tmp_path / "a.rtdc"
    part = partial_path(str(out))
    assert part.endswith(".partial") and stale_partials(tmp_path) == []
    Path(part).write_bytes(b"new")
    assert [p.name for p in stale_partials(tmp_path)] == [Path(part).name]
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        commit_file(part, str(out), overwrite=False)
    assert out.read_bytes() == b"old" and not Path(part).exists()
    Path(part).write_bytes(b"new")
    commit_file(part, str(out), overwrite=True)
    assert out.read_bytes() == b"new" and not Path(part).exists()
    part2 = partial_path(str(tmp_path / "b.rtdc"))
    Path(part2).write_bytes(b"b")
    commit_file(part2, str(tmp_path / "b.rtdc"), overwrite=False, fsync=False)
    assert (tmp_path / "b.rtdc").read_bytes() == b"b"
