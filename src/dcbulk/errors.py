"""The exceptions of dcbulk: one root, one subclass per kind of failure."""
from __future__ import annotations

import errno
import re

__all__ = [
    "describe_failure",
    "is_no_space",
    "one_line",
    "printable",
    "DcbulkError",
    "ArgumentTypeError",
    "SourceError",
    "SourceNotFoundError",
    "NotHDF5Error",
    "NotRtdcError",
    "ExternalDataError",
    "SourceLimitError",
    "PlanError",
    "CodecError",
    "ChecksumMismatchError",
    "ConfigError",
    "OutputExistsError",
    "ConversionError",
    "ManifestError",
    "OutputLockedError",
    "UsageError",
    "FilterSyntaxError",
    "OutputDirError",
    "VerifyError",
    "LinkRefusedError",
    "FileTimeoutError",
    "ProcessJobError",
]


class DcbulkError(Exception):
    """Root of every error raised by dcbulk itself."""


class SourceError(DcbulkError):
    """A source file cannot be used as input."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A source path does not exist."""


class NotHDF5Error(SourceError):
    """A source path exists but is not a readable HDF5 file."""


class NotRtdcError(SourceError):
    """An HDF5 file lacks the structure of an .rtdc file (e.g. no ``events``)."""


class ExternalDataError(SourceError):
    """A source's data lie outside it (external link, virtual or external dataset)."""


class SourceLimitError(SourceError):
    """A source declares data it does not hold, or an item above dcbulk's size limit."""


class PlanError(DcbulkError, ValueError):
    """Options and inputs do not combine into a valid conversion plan."""


class CodecError(DcbulkError):
    """A chunk cannot be encoded or decoded with the requested filters."""


class ChecksumMismatchError(CodecError):
    """A stored Fletcher-32 checksum does not match the chunk bytes."""


class ConfigError(DcbulkError, ValueError):
    """A cluster or run configuration is invalid."""


class OutputExistsError(DcbulkError, FileExistsError):
    """An output exists and would be overwritten without ``force``."""


class ConversionError(DcbulkError):
    """A conversion failed; the message names the file and feature."""


class ManifestError(DcbulkError):
    """The archive manifest is unreadable or conflicts with the options."""


class OutputLockedError(DcbulkError):
    """Another live dcbulk run holds the output directory's lock."""


class UsageError(DcbulkError, ValueError):
    """Arguments that can never work (wrong feature name, output inside a source, ...)."""


class ArgumentTypeError(UsageError, TypeError):
    """An API argument of the wrong type (a list where one path goes, ``progress=False``)."""


class VerifyError(DcbulkError):
    """An output differs from its source (``convert --verify``)."""


class OutputDirError(DcbulkError):
    """The output directory cannot be created or written."""


class LinkRefusedError(OutputDirError):
    """A path dcbulk would write is a symbolic link (or not a regular file): refused."""


class FileTimeoutError(DcbulkError, TimeoutError):
    """One file's task exceeded the per-file time limit."""


class ProcessJobError(DcbulkError):
    """A dcnum job failed, or stalled, was halted or died on every attempt (one line)."""


#: characters that would break a printed line or drive the terminal: C0 and C1 controls
#: (newline, carriage return, escape, ...), DEL, and Unicode's line and paragraph separators
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """``text`` safe to print and log on one line: bytes of a file name that are not valid
    UTF-8 (``os.fsdecode``'s surrogate escapes) are shown as ``\\xNN``, control characters
    (a newline in a file name) as Python writes them in a string (``\\n``, ``\\x1b``)."""
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are no escaped bytes
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        text = raw.decode("utf-8", "backslashreplace")
    return _CONTROLS.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def one_line(text: object, limit: int = 400) -> str:
    """``text`` with its whitespace (newlines too) collapsed, cut to ``limit`` characters
    (:func:`printable`)."""
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or its cause) is a full file system, also as HDF5 words it."""
    while exc is not None:
        text = str(exc)
        if (getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28," in text
                or "No space left on device" in text):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe_failure(exc: BaseException, output: str) -> str:
    """``"Type: message"`` in one line; a full disk as a short sentence naming the output."""
    if is_no_space(exc):
        return (f"NoSpaceError: no space left on the device of {output} (free space and "
                f"re-run; finished files are kept)")
    return f"{type(exc).__name__}: {one_line(exc, 2000)}"


class FilterSyntaxError(UsageError, PlanError):
    """A ``--filter`` expression that is not valid (a usage error and a plan error)."""
