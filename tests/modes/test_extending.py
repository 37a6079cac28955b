"""README "Extending dcbulk": its example mode, taken from the README, runs as a sub-command."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import h5py
import numpy as np

from dcbulk.cli import EXIT_OK, main
from dcbulk.registry import commands

from fixtures import small_rtdc

README = Path(__file__).parents[2] / "README.md"


def _example_module(tmp_path: Path):
    text = README.read_text(encoding="utf-8")
    code = re.search(r"<!-- extending-example:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert code is not None, "the README lost its extending example"
    path = tmp_path / "scalars_mode.py"
    path.write_text(code.group(1), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("scalars_mode", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_example_mode_is_a_sub_command(client, tmp_path, capsys, monkeypatch):
    mode = _example_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers unpickle the job by module
    client.run(lambda: __import__("sys").path.insert(0, str(tmp_path)))
    src = tmp_path / "src"
    src.mkdir()
    path = small_rtdc(src / "a.rtdc", 40, seed=4, with_traces=True)
    dst = tmp_path / "dst"
    cmds = commands() + (mode.COMMAND,)
    args = ["scalars", str(src), "-o", str(dst), "--filter", "deform < 0.025",
            "--scheduler", client.scheduler.address, "-q"]
    assert main(args, modes=cmds) == EXIT_OK
    with h5py.File(path) as h5, h5py.File(dst / "a.rtdc") as out:
        keep = h5["events/deform"][:] < 0.025
        scalars = sorted(n for n, ds in h5["events"].items()
                         if isinstance(ds, h5py.Dataset) and ds.ndim == 1)
        assert "image" in h5["events"] and keep.sum() not in (0, keep.size)
        assert sorted(n for n in out["events"] if not n.startswith("basinmap")) == scalars
        for name in scalars:
            if name != "index":
                np.testing.assert_array_equal(out["events"][name][:],
                                              h5["events"][name][:][keep])
    assert main(args, modes=cmds) == EXIT_OK  # resumable: the second run skips the file
    assert "1 skipped" in capsys.readouterr().out
    assert main(["scalars", str(src), "-o", str(dst)]) != EXIT_OK  # not in the registry
