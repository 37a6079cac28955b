"""``dcbulk verify DST`` takes each output the manifest records only where the run puts it
(its relative path below DST): a record whose ``output`` names another place (absolute, out
of DST, another file of DST) is one problem line, and that place is never read."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from dcbulk.bulk import MANIFEST_NAME, convert_archive
from dcbulk.cli import main

from fixtures import small_sources


def _edit_records(dst: Path, outputs: dict[str, str]) -> None:
    """Set the ``output`` of the records of ``outputs``' relative paths (as a hand would)."""
    path = dst / MANIFEST_NAME
    lines = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        if doc.get("relpath") in outputs:
            doc["record"]["output"] = outputs[doc["relpath"]]
        lines.append(json.dumps(doc))
    path.write_text("\n".join(lines) + "\n")


def _verify(capsys, dst: Path) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["verify", str(dst), "-q"])
    return code, capsys.readouterr().out.splitlines()


def test_a_record_naming_another_place_is_a_problem_and_not_followed(tmp_path, client,
                                                                      capsys):
    src = tmp_path / "src"
    sources = small_sources(src, ["a.rtdc", "b.rtdc", "sub/c.rtdc"])
    dst, other = tmp_path / "dst", tmp_path / "other"
    assert convert_archive([src], dst, client=client).ok
    shutil.copytree(dst, other)  # equal outputs elsewhere
    assert _verify(capsys, dst)[0] == 0
    _edit_records(dst, {"a.rtdc": str(other / "a.rtdc"), "b.rtdc": "../other/b.rtdc",
                        "sub/c.rtdc": "b.rtdc"})
    (dst / "a.rtdc").unlink()
    (dst / "b.rtdc").unlink()
    code, lines = _verify(capsys, dst)
    assert code == 1
    a, b, c = sources
    assert lines[:-1] == [
        f"{dst / 'a.rtdc'}: the manifest records the output of {a} as "
        f"'{other / 'a.rtdc'}', not here where the run puts it; not followed",
        f"{dst / 'b.rtdc'}: the manifest records the output of {b} as '../other/b.rtdc', "
        f"not here where the run puts it; not followed",
        f"{dst / 'sub' / 'c.rtdc'}: the manifest records the output of {c} as 'b.rtdc', "
        f"not here where the run puts it; not followed"]
    assert lines[-1].startswith("dcbulk verify: 3 files, 0 equal, 3 differ (3 problems) in ")


def test_a_record_of_a_relative_path_no_output_has_is_a_problem(tmp_path, client, capsys):
    src = tmp_path / "src"
    (a,) = small_sources(src, ["a.rtdc"])
    dst = tmp_path / "dst"
    assert convert_archive([src], dst, client=client).ok
    path = dst / MANIFEST_NAME
    text = path.read_text().replace('"relpath":"a.rtdc"', '"relpath":"../a.rtdc"')
    assert '"../a.rtdc"' in text
    path.write_text(text)
    code, lines = _verify(capsys, dst)
    assert code == 1
    # dst/a.rtdc is now a planned source's output never recorded (one line for its place)
    assert lines[:2] == [
        f"{a}: has no output here: a run set out to make it and never recorded it (killed, "
        f"or still running); re-run its command",
        f"{path}: the record of {a} has the relative path '../a.rtdc', which no output of "
        f"this directory has; not followed"]
