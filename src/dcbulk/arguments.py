"""Checking the Python API's arguments before any work: a wrong type is one line.

The API functions (:func:`~dcbulk.convert`, :func:`~dcbulk.store_features`,
:func:`~dcbulk.convert_archive` and the modes) take paths, counts, feature names and
callables from Python code, where nothing like argparse checks them first. A value of the
wrong kind would otherwise surface as a raw ``TypeError``/``AttributeError`` from deep inside
(pathlib, a comparison, ``str.strip``), or only after some files were written. Each check
here raises a :class:`~dcbulk.errors.UsageError` naming the argument, what it needs and what
it got, and returns the value in the form the caller uses.
"""
from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .errors import ArgumentTypeError, UsageError, one_line

__all__ = ["callable_arg", "check_timeout", "client_arg", "count_arg", "feature_names",
           "file_output_arg", "flag_args", "mapping_arg", "path_arg", "paths_arg",
           "progress_arg", "text_arg", "wrong_argument"]

#: what a path argument may be
_PATH_TYPES = (str, os.PathLike)


def wrong_argument(name: str, value: object, needs: str) -> ArgumentTypeError:
    """The one-line error of argument ``name``: what it ``needs`` and what it got (a
    TypeError too, as the style asks of a wrong type; a usage error for the CLI)."""
    return ArgumentTypeError(f"{name} must be {needs}, got {type(value).__name__} "
                             f"{one_line(repr(value), 80)}")


def path_arg(name: str, value) -> str | os.PathLike:
    """``value``, a path (``str`` or ``os.PathLike``).

    Raises
    ------
    UsageError
        For anything else (None, a list of paths, a number, ...).
    """
    if not isinstance(value, _PATH_TYPES):
        raise wrong_argument(name, value, "one path (str or os.PathLike)")
    return value


def file_output_arg(value) -> str:
    """The absolute path of a run whose output is one file (``join``), from ``value``.

    Raises
    ------
    UsageError
        For an empty path, one ending in a path separator or an existing directory (one
        line: such an output named a directory's neighbour ``<directory>.rtdc``).
    """
    path = os.fspath(path_arg("output", value))
    text = os.fsdecode(path)
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    if not text:
        raise UsageError("output (-o): empty; name the output file")
    if text.endswith(seps) or os.path.isdir(text):
        raise UsageError(f"output (-o) {text!r}: a directory, not a file; name the output "
                         f"file (e.g. {os.path.join(text, 'joined.rtdc')!r})")
    return os.path.abspath(path)


def client_arg(client) -> None:
    """Refuse a ``client`` that is no ``distributed.Client`` (duck-typed: it has
    ``submit``), e.g. a scheduler address as text (``Client(address)`` connects to one).

    Raises
    ------
    UsageError
        For anything else but None.
    """
    if client is not None and not callable(getattr(client, "submit", None)):
        raise wrong_argument("client", client, "a distributed.Client (e.g. Client(address)) "
                             "or None")


def flag_args(**flags) -> None:
    """Refuse a yes/no argument that is not a ``bool`` (or numpy's): a string is truthy
    whatever it says, and ``overwrite="no"`` or ``force="False"`` would overwrite.

    Raises
    ------
    UsageError
        Naming the first argument that is neither True nor False.
    """
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise wrong_argument(name, value, "True or False")


def _one_or_many(name: str, value, kind: type | tuple, needs: str) -> list:
    """``value`` as a list: one ``kind`` or an iterable of them (not bytes, not a mapping)."""
    if isinstance(value, kind):
        return [value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise wrong_argument(name, value, f"{needs} or a list of them")
    items = list(value)
    for item in items:
        if not isinstance(item, kind):
            raise wrong_argument(f"each of {name}", item, needs)
    return items


def paths_arg(name: str, value) -> list:
    """``value`` as a list of paths: one path, or an iterable of paths.

    Raises
    ------
    UsageError
        None, a number, or an item that is not a path (naming the first such item).
    """
    return _one_or_many(name, value, _PATH_TYPES, "a path (str or os.PathLike)")


def text_arg(name: str, value, needs: str) -> str | None:
    """``value``, a ``str`` or None (``needs`` says what the string is).

    Raises
    ------
    UsageError
        For anything else.
    """
    if value is not None and not isinstance(value, str):
        raise wrong_argument(name, value, f"{needs} (str) or None")
    return value


def count_arg(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum``: an int or int-like (``numpy``
    integers; anything with ``__index__``), never a bool, a float or a string.

    Raises
    ------
    UsageError
        For anything else, or a count below ``minimum``.
    """
    try:
        count = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        count = None
    if count is None:
        raise wrong_argument(name, value, "a whole number (int)")
    if count < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {count}")
    return count


def callable_arg(name: str, value, needs: str) -> Callable | None:
    """``value``, a callable or None (``needs`` says how it is called).

    Raises
    ------
    UsageError
        For anything else (e.g. ``False``).
    """
    if value is not None and not callable(value):
        raise wrong_argument(name, value, f"{needs} or None")
    return value


def progress_arg(progress) -> Callable | None:
    """``progress``, None or a function called as ``progress(result, done, total)`` (every
    run's observer: checked before any work, not when the first file settles)."""
    return callable_arg("progress", progress,
                        "a function called as progress(result, done, total)")


def mapping_arg(name: str, value, needs: str) -> Mapping:
    """``value``, a mapping (a ``dict``; ``needs`` says of what).

    Raises
    ------
    UsageError
        For anything else (a list of arrays, an array, ...).
    """
    if not isinstance(value, Mapping):
        raise wrong_argument(name, value, needs)
    return value


def feature_names(value, name: str = "features") -> tuple[str, ...] | None:
    """Feature names as a tuple: one name (a ``str``) or an iterable of names; None: None
    (every feature). Whether dclab knows them is
    :func:`~dcbulk.bulk.usage.check_feature_names`'s to say.

    Raises
    ------
    UsageError
        Anything but a name or an iterable of names (naming the first item that is no
        string), an empty name or no name at all.
    """
    if value is None:
        return None
    names = tuple(_one_or_many(name, value, str, "a feature name (str)"))
    if not names or not all(names):  # as the CLI's --features '' (not "every feature")
        raise UsageError(f"{name} names no feature in {one_line(repr(value), 80)} "
                         f"(None takes every feature)")
    return names


def check_timeout(timeout: float | None) -> None:
    """Refuse a per-file time limit that is not a positive number of seconds.

    Raises
    ------
    UsageError
        For zero, a negative number, NaN or anything but a number.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not timeout > 0 or timeout != timeout or timeout == float("inf"):
        raise UsageError(f"the time limit per file must be a positive number of seconds, "
                         f"got {one_line(repr(timeout), 80)}")
