"""What an earlier run left in the output directory: outputs a killed run finished but could
not record (adopted by their provenance log), and outputs that must not be replaced."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import OutputExistsError
from ..provenance import matches_source, provenance_of
from .manifest import Manifest
from .sources import SourceEntry, output_path

__all__ = ["adopt_output", "refuse_overwrite"]


def adopt_output(entry: SourceEntry, out: str, options: Mapping[str, Any], manifest: Manifest,
                 *, record: bool = True, finished: Callable[[str, str], bool] | None = None
                 ) -> bool:
    """Record an output that a killed run finished but could not enter in the manifest.

    Outputs appear under their final name only when complete (atomic rename), so an output
    one of whose provenance logs names this source (path, size, mtime) and these
    ``options`` (the fingerprint dict) is a finished result, whatever the mode
    (:func:`dcbulk.provenance.matches_source`). For outputs without such a log (dcnum's), one that
    the file job's ``finished(source, output)`` accepts. With ``record`` False (dry runs)
    nothing is written.
    """
    if not os.path.isfile(out):
        return False
    try:
        import h5py
        with h5py.File(out, "r") as h5:
            docs = provenance_of(h5)
            events = int(h5.attrs.get("experiment:event count", 0))
    except (OSError, ValueError, KeyError):
        return False
    st = os.stat(entry.path)
    doc = next((d for d in docs if matches_source(d, entry.path, options)), None)
    if doc is None and finished is not None and not docs and finished(entry.path, out):
        doc = {}
    if doc is None:
        return False
    if not record:
        return True
    manifest.record_done(entry, output=out, output_size=os.path.getsize(out),
                         events=events, seconds=0.0,
                         identifier=doc.get("source identifier"), size=st.st_size,
                         mtime_ns=st.st_mtime_ns)
    return True


def refuse_overwrite(entries: Iterable[SourceEntry], output_dir: str) -> None:
    """``resume=False`` without ``force`` must not replace outputs: fail before any work.

    Raises
    ------
    OutputExistsError
        Naming the first existing output and how many more there are.
    """
    existing = [out for out in (output_path(e, output_dir) for e in entries)
                if os.path.lexists(out)]
    if existing:
        more = f" and {len(existing) - 1} more output(s)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]}{more} exist; --no-resume (resume=False) redoes finished files only "
            f"together with --force (force=True), which replaces them")
