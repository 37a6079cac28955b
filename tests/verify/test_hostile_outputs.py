"""``dcbulk verify`` reports outside data in an output and a lost nested group (issue 16 A)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import dcbulk
from dcbulk.bulk import convert_archive
from dcbulk.cli import EXIT_FAILED_FILES, main

from fixtures import small_rtdc

pytestmark = pytest.mark.hostile

N = 20


@pytest.fixture
def converted(tmp_path, client):
    src = tmp_path / "src"
    src.mkdir()
    source = small_rtdc(src / "m.rtdc", N, seed=4)
    other = small_rtdc(tmp_path / "other.rtdc", N, seed=5)
    assert convert_archive([src], tmp_path / "dst", client=client).ok
    return source, tmp_path / "dst", tmp_path / "dst" / "m.rtdc", other


def _external_storage(h5: h5py.File, other: Path) -> None:
    raw = other.parent / "raw.bin"
    raw.write_bytes(np.zeros(N).tobytes())
    h5.create_dataset("hidden/stored", shape=(N,), dtype="f8",
                      external=[(str(raw), 0, N * 8)])


def _virtual(h5: h5py.File, other: Path) -> None:
    layout = h5py.VirtualLayout(shape=(N,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(other), "events/area_um", shape=(N,))
    h5.require_group("hidden").create_virtual_dataset("virtual", layout)


def _external_link(h5: h5py.File, other: Path) -> None:
    h5["hidden/link"] = h5py.ExternalLink(str(other), "/events/area_um")


@pytest.mark.parametrize("make, words", [(_external_link, "external link"),
                                         (_virtual, "virtual dataset"),
                                         (_external_storage, "stored externally")])
def test_verify_reports_outside_data_in_an_output(converted, client, make, words):
    source, dst, out, other = converted
    assert dcbulk.verify(dst, client=client).ok
    with h5py.File(out, "a") as h5:
        make(h5, other)
    report = dcbulk.verify(out, source, client=client)
    assert any(words in p and "an output must hold its own data" in p
               for p in report.problems), report.problems


def test_verify_cli_reports_a_lost_nested_group(converted, tmp_path, capsys):
    source, dst, out, other = converted
    with h5py.File(source, "a") as h5:
        h5.create_dataset("events/extra/deeper/values", data=np.arange(N))
    assert main(["verify", str(out), "--against", str(source), "--workers", "1"]) \
        == EXIT_FAILED_FILES
    assert "feature 'extra/deeper/values' is missing" in capsys.readouterr().out
