"""Progress output: plain lines for batch logs, a bar on terminals."""
from __future__ import annotations

import io

from dcbulk.bulk import FileResult
from dcbulk.progress import ArchiveProgress


def test_plain_lines_count_files_bytes_and_skips():
    out = io.StringIO()
    prog = ArchiveProgress(3, 3_000_000, stream=out, tty=False, interval=0)
    prog(FileResult("a", "A", "skipped", bytes_in=1_000_000), 1, 3)
    prog(FileResult("b", "B", "done", bytes_in=1_000_000), 2, 3)
    prog(FileResult("c", "C", "failed", bytes_in=0), 3, 3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(ln.startswith("[dcbulk] files") for ln in lines)
    assert "files 3/3, 1 skipped, 1 failed, 1 MB of 2 MB" in lines[-1]
    assert "ETA" in lines[-1]


def test_tty_bar_tracks_bytes():
    out = io.StringIO()
    prog = ArchiveProgress(2, 2_000_000, stream=out, tty=True)
    prog(FileResult("a", "A", "done", bytes_in=1_500_000), 1, 2)
    assert prog.bar.n == 1_500_000 and prog.bar.total == 2_000_000
    prog.close()
    assert "files 1/2" in out.getvalue()
