"""Watching an archive job: a progress bar on a terminal, plain periodic lines in batch logs."""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ArchiveProgress"]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


class ArchiveProgress:
    """Progress over files and bytes, with rate and ETA (and events per second once files
    report events, e.g. ``dcbulk process``).

    On a TTY a tqdm bar (bytes, rate, ETA) with the file count in its description; otherwise
    one line every ``interval`` seconds and one at the end, suitable for SLURM logs.
    Call it as ``progress(result, done, total)`` (the ``convert_archive`` callback).
    """

    def __init__(self, total_files: int, total_bytes: int, *, stream: TextIO | None = None,
                 tty: bool | None = None, interval: float = 10.0):
        self.stream = stream or sys.stderr
        self.total_files = total_files
        self.total_bytes = max(1, total_bytes)
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.t0 = time.monotonic()
        self.last = 0.0
        self.files = self.bytes = self.failed = self.skipped = self.events = 0
        self.bar = None
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total_bytes, unit="B", unit_scale=True, file=self.stream,
                            desc=self._desc(), dynamic_ncols=True)

    def _desc(self) -> str:
        extra = f", {self.skipped} skipped" if self.skipped else ""
        extra += f", {self.failed} failed" if self.failed else ""
        return f"files {self.files}/{self.total_files}{extra}"

    def __call__(self, result, done: int, total: int) -> None:
        self.files = done
        self.failed += result.status == "failed"
        size = result.bytes_in or 0
        if result.status == "skipped":  # finished before: not part of this run's work
            self.total_bytes = max(1, self.total_bytes - size)
            self.skipped += 1
            size = 0
        self.bytes += size
        self.events += (result.events or 0) if result.status == "done" else 0
        if self.bar is not None:
            if self.events:
                self.bar.set_postfix_str(self._events_rate(), refresh=False)
            self.bar.total = self.total_bytes
            self.bar.set_description(self._desc(), refresh=False)
            self.bar.update(size)
        elif time.monotonic() - self.last >= self.interval or done == total:
            self.line()

    def line(self) -> None:
        elapsed = time.monotonic() - self.t0
        rate = self.bytes / elapsed if elapsed > 0 else 0.0
        left = self.total_bytes - self.bytes
        eta = f"{left / rate:,.0f} s" if rate > 0 and left > 0 else "-"
        print(f"[dcbulk] {self._desc()}, {_mb(self.bytes)} of {_mb(self.total_bytes)}, "
              f"{rate / 1e6:,.1f} MB/s{', ' + self._events_rate() if self.events else ''}, "
              f"elapsed {elapsed:,.0f} s, ETA {eta}",
              file=self.stream, flush=True)
        self.last = time.monotonic()

    def _events_rate(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        return f"{self.events:,} events, {self.events / elapsed:,.0f} events/s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
