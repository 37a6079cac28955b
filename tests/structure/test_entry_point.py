"""The ``dcbulk`` console command's entry point (pyproject.toml ``[project.scripts]``):
Ctrl-C while it imports dcbulk (``dcbulk/__init__`` imports everything: about 0.6 s) is one
line and exit status 130, not a KeyboardInterrupt traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import dcbulk

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(dcbulk.__file__).resolve().parent.parent  # where the tests import dcbulk from

# the script pip writes for a console entry point, with a finder that holds the import of
# h5py (dcbulk's, below the entry point) until the test's SIGINT: no race with a timer
SCRIPT = textwrap.dedent("""\
    import sys, time
    class Hold:
        def find_spec(self, name, path=None, target=None):
            if name == "h5py":
                print("importing h5py", flush=True)
                time.sleep(120)
            return None
    sys.meta_path.insert(0, Hold())
    from {module} import {func}
    sys.argv[0] = "dcbulk"
    sys.exit({func}())
    """)


def _entry_point() -> tuple[str, str]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["dcbulk"].partition(":")
    return module, func


def test_ctrl_c_while_dcbulk_is_imported_is_one_line_and_exit_130(tmp_path):
    module, func = _entry_point()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(module=module, func=func), "info",
         str(tmp_path / "none.rtdc")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline() == "importing h5py\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("dcbulk: interrupted") and not out, (out, err)
    assert proc.returncode == 130, (proc.returncode, err)


def test_the_entry_point_exits_as_the_cli_does_when_interrupted():
    import dcbulk_entry
    from dcbulk.cli import EXIT_INTERRUPTED
    assert dcbulk_entry.EXIT_INTERRUPTED == EXIT_INTERRUPTED
