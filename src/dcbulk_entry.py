"""The ``dcbulk`` console command's entry point: :func:`main` imports the dcbulk package
(dask, distributed, h5py: about 0.6 s) and runs :func:`dcbulk.cli.main`.

It lives outside the package, since importing any module of ``dcbulk`` first runs
``dcbulk/__init__``, which imports everything: Ctrl-C during that import was a
KeyboardInterrupt traceback. Here it is one line and exit status 130, as Ctrl-C during a
command is. Once a command was interrupted, further Ctrl-Cs are ignored until the process
has ended (:func:`dcbulk.interrupts.stopping`): the interpreter's exit is the end of the
stop, and a KeyboardInterrupt there was "Exception ignored in: ..." on the terminal.
"""
from __future__ import annotations

import sys

__all__ = ["EXIT_INTERRUPTED", "main"]

#: the exit status of a command ended by Ctrl-C (also :data:`dcbulk.cli`'s)
EXIT_INTERRUPTED = 130


def main() -> int:
    """Run the ``dcbulk`` command line (``sys.argv``); return its exit status."""
    try:
        # deferred: the package's import is what Ctrl-C may interrupt (the module text)
        from dcbulk.cli import main as run
        from dcbulk.interrupts import stopping
    except KeyboardInterrupt:
        print("dcbulk: interrupted while starting; nothing was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    with stopping(keep=True):  # kept to the process's end once a signal was taken
        return run()  # says its own line for Ctrl-C during a command


if __name__ == "__main__":
    sys.exit(main())
