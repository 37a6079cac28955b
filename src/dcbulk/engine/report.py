"""The one result type of a converted file: :class:`Report`."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Report"]


@dataclass
class Report:
    """Summary of one output file (from :func:`~dcbulk.convert`, ``store_features`` and
    each file of ``convert_archive``).

    ``raw_bytes`` are the uncompressed bytes of the features written, ``bytes_in`` the size of
    the source file, ``bytes_out`` the size of the output file; ``compression_ratio`` is
    ``raw_bytes`` over the bytes stored for the features. ``features`` holds per feature the
    mode (``encode`` or ``raw-copy``), filters, chunks (``copied_chunks`` of them copied as
    stored), bytes and the seconds spent in worker tasks. ``identifier`` and
    ``source_mtime_ns`` identify the source for a manifest; ``inline`` tells that the writer
    encoded the file itself; ``basin_files`` are the file basins the source's features were
    found in; ``error`` (one line) and ``error_type`` (the exception's class) are set, and the
    rest left empty, for a file of an archive that failed;
    ``note`` (one line) for a file a job left alone on purpose (reported as skipped);
    ``problems`` (one line each) and ``checked`` (what was compared) for a file a check job
    (``verify``) read; ``warnings`` (one line each) are the warnings dcbulk logged while a
    worker process made the file (the client logs them again, so they reach the terminal
    as those of a run in dcbulk's own process do).
    """

    source: str | None
    output: str
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    raw_bytes: int = 0
    compression_ratio: float = float("nan")
    wall_seconds: float = 0.0
    features: dict[str, dict] = field(default_factory=dict)
    identifier: str | None = None
    source_mtime_ns: int = 0
    inline: bool = False
    basin_files: tuple[str, ...] = ()
    error: str | None = None
    error_type: type[BaseException] | None = None
    note: str | None = None
    problems: tuple[str, ...] = ()
    checked: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (the error's type by its name)."""
        doc = dict(self.__dict__)
        doc["error_type"] = None if self.error_type is None else self.error_type.__name__
        return doc
