"""Test-only hooks of ``ProcessJob.child_hook``: run in a dcnum job's child process.

:func:`writer_dies` makes dcnum hang as it hung in CI: its writer process dies as it starts
(there, with status 255 and no line), and dcnum's runner, which watches only its universal
workers, waits for written frames forever (state ``segmentation``, progress fixed). It also
starts a sleeping grandchild and records its pid, so a test can check that the whole
process tree is ended.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys


def writer_dies(recipe: dict) -> None:
    """For a source named ``stall*``: every attempt hangs; ``once*``: the first one only
    (a marker ``<source>.stalled`` records it); ``die*``: the child exits at once (status 3,
    one line on stderr); other sources are left alone."""
    source = recipe["path_in"]
    name = os.path.basename(source)
    if name.startswith("die"):
        print("child: dying on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    marker = source + ".stalled"
    if name.startswith("once") and os.path.exists(marker):
        return
    if not name.startswith(("stall", "once")):
        return
    with open(marker, "a", encoding="utf-8"):
        pass
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(source + ".pids", "a", encoding="utf-8") as fh:
        fh.write(f"{sleeper.pid}\n")

    from dcnum.write import QueueWriterProcess
    start = QueueWriterProcess.start

    def start_and_die(self):
        start(self)
        os.kill(self.pid, signal.SIGKILL)

    QueueWriterProcess.start = start_and_die
