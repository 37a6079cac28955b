"""What the modes share: function identities, event filters, file-job results.

Hand-written because no library does it: a stable identity of a Python function's *code*
(``pickle``/``cloudpickle`` bytes change with unrelated globals and Python versions;
``inspect.getsource`` fails for functions defined interactively). The run identifier of
outputs whose events differ from their source's is :mod:`dcbulk.read.identifier`'s.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
import time
import types
from collections.abc import Callable
from dataclasses import replace


from ..engine.report import Report
from ..errors import PlanError
from ..read.inspect import SourceInfo

#: HDF5 chunks per dask block when the modes read features: blocks of up to ~16 MiB (the
#: engine's task size), so a file's features are a few read tasks, not one per 1 MiB chunk
CHUNKS_PER_BLOCK = 16

__all__ = ["CHUNKS_PER_BLOCK", "func_identity", "job_result"]


def _code_digest(code: types.CodeType, digest) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    digest.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, digest)
        else:
            digest.update(repr(const).encode())


def _feed(func, digest) -> str:
    """Feed the code of ``func`` into ``digest``; return its qualified name."""
    if isinstance(func, functools.partial):
        digest.update(repr((func.args, sorted(func.keywords.items()))).encode())
        return f"partial({_feed(func.func, digest)})"
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else None
    if target is None and callable(func):  # a callable object: its class's __call__
        target = type(func).__call__
        digest.update(repr(getattr(func, "__dict__", "")).encode())
    target = getattr(target, "__func__", target)
    code = getattr(target, "__code__", None)
    if code is None:
        raise PlanError(f"{func!r} is not a Python function (no code to fingerprint)")
    _code_digest(code, digest)
    digest.update(repr(target.__defaults__).encode())
    digest.update(repr(target.__kwdefaults__).encode())
    for cell in target.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # empty cell
            continue
        if inspect.isfunction(value):
            _feed(value, digest)
        else:
            digest.update(repr(value).encode())
    return f"{target.__module__}.{target.__qualname__}"


def func_identity(func: Callable) -> dict:
    """The identity of a function: qualified name and a hash of its code.

    The hash covers the byte code, constants (nested functions too), names, defaults and
    the values the function closes over (nested functions by their code), so editing the
    function's body or a captured parameter changes it; reformatting or comments do not.
    """
    digest = hashlib.sha256()
    name = _feed(func, digest)
    return {"name": name, "code": digest.hexdigest()[:16]}


def job_result(info: SourceInfo, report: Report, t0: float) -> Report:
    """A job's :class:`~dcbulk.engine.report.Report`, completed as the convert job's.

    Adds what the manifest records: the source's size, mtime and identifier, the job's
    wall time since ``t0``, and the file basins its features were found in (the executor
    names those outside the run's sources, as for ``convert``).
    """
    st = os.stat(info.path)
    return replace(report, source=info.path, bytes_in=st.st_size,
                   source_mtime_ns=st.st_mtime_ns, identifier=info.identifier,
                   wall_seconds=time.perf_counter() - t0, basin_files=info.basin_files)
