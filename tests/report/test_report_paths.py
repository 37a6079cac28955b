"""Every report (``--report``, ``--html-report``, ``--performance-report``) goes through one
check before any work: a FIFO, a device node, the output directory to be made or its log
directory is one line (exit 2), nothing converted, the node left as it is; a report that
cannot be written at the end is one line, the summary is still printed, and the exit status
is 3."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dcbulk.cli import main
from dcbulk.errors import LinkRefusedError
from dcbulk.monitor import RunState
from dcbulk.monitor.report_html import write_html_report

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "dcnum_thresh_example.rtdc"
OPTIONS = ("--report", "--html-report", "--performance-report")


def _nodes(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "myfifo"
    os.mkfifo(fifo)
    nodes = [fifo]
    try:
        os.mknod(tmp_path / "mynull", stat.S_IFCHR | 0o644, os.makedev(1, 3))
        nodes.append(tmp_path / "mynull")
    except PermissionError:  # not root: the FIFO alone
        pass
    return nodes


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


@pytest.mark.parametrize("option", OPTIONS)
def test_a_fifo_or_device_node_is_refused_before_any_work(tmp_path, option):
    for node in _nodes(tmp_path):
        kind = _kind(node)
        dst = tmp_path / f"out-{node.name}"
        # a subprocess: dask's performance report used to block on a FIFO for ever
        run = subprocess.run([sys.executable, "-m", "dcbulk.cli", "convert", str(SAMPLE), "-o",
                              str(dst), "-q", option, str(node)], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert run.stderr.splitlines() == [
            f"dcbulk: usage error: report {node} is not a regular file (a FIFO, device or "
            f"socket); give a file name"]
        assert _kind(node) == kind
        assert not (dst / SAMPLE.name).exists()


@pytest.mark.parametrize("option", OPTIONS)
def test_the_output_directory_or_its_logs_is_refused_before_any_work(tmp_path, capsys,
                                                                      option):
    dst = tmp_path / "fr"
    for path, line in [
            (dst, f"report {dst} is a directory; give a file name"),
            (dst / "dcbulk-logs", f"report {dst / 'dcbulk-logs'} would replace dcbulk's own "
                                  f"file; give another name"),
            (tmp_path / "nodir" / "r.html", f"report {tmp_path / 'nodir' / 'r.html'}: its "
                                            f"directory {tmp_path / 'nodir'} does not "
                                            f"exist; give a path in an existing directory")]:
        shutil.rmtree(dst, ignore_errors=True)
        assert main(["convert", str(SAMPLE), "-o", str(dst), "-q", option, str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [f"dcbulk: usage error: {line}"]
        assert not (dst / SAMPLE.name).exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("option,kind", [("--report", "JSON"), ("--html-report", "HTML"),
                                         ("--performance-report", "performance")])
def test_a_report_that_cannot_be_written_is_one_line_and_exit_3(tmp_path, capsys, option,
                                                                kind):
    dst = tmp_path / "out"
    path = "/proc/dcbulk-report.html"
    assert main(["convert", str(SAMPLE), "-o", str(dst), "-q", option, path]) == 3
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"dcbulk: the {kind} report {path} could not be written ([Errno 2] No such file or "
        f"directory: '/proc/dcbulk-report.html"), err
    assert captured.out.startswith("dcbulk: 1 converted, 0 skipped (finished before), 0 "
                                   "failed in ")
    assert (dst / SAMPLE.name).is_file()


def test_the_html_report_is_never_renamed_over_a_node_made_since_the_check(tmp_path):
    fifo = tmp_path / "report.html"
    os.mkfifo(fifo)
    state = RunState(command="convert", total_files=0, total_bytes=0)
    state.end("finished")
    with pytest.raises(LinkRefusedError, match="is not a regular file"):
        write_html_report(state, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary file left
