"""The options of ``dcbulk process``: one dcnum pipeline, checked and identified.

:class:`PipelineOptions` holds dcnum's job keywords (``DCNumPipelineJob``: data, background,
segmenter, feature and gate codes and their keyword arguments, ``basin_strategy``,
``compression``) with dcnum's defaults; :func:`parse_kwargs` reads ChipStream's ``KEY=VALUE``
options (``-kb``, ``-ks``, ``-kf``, ``-kg``) into them, typed by the annotations of the dcnum
method each keyword belongs to, as ChipStream does. :meth:`PipelineOptions.identity` is what
the manifest records: dcnum's pipeline identifiers of every step (its own classes compute
them), so a changed setting changes the fingerprint. dcnum is imported only when needed (it
is an optional dependency, ``pip install "dcbulk[dcnum]"``).
"""
from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from ..errors import UsageError, one_line

__all__ = ["PipelineOptions", "parse_kwargs", "parse_limit_events", "require_dcnum",
           "DCNUM_MISSING"]

#: the one-line advice when dcnum is not installed
DCNUM_MISSING = ("dcbulk process runs dcnum's pipeline: install it with "
                 "pip install 'dcbulk[dcnum]' (missing on {where})")
_COMPRESSION = re.compile(r"^(none|zstd-[1-9])$")


def require_dcnum(where: str = "this machine") -> None:
    """Raise a one-line :class:`~dcbulk.errors.UsageError` unless dcnum is importable."""
    if importlib.util.find_spec("dcnum") is None:
        raise UsageError(DCNUM_MISSING.format(where=where))


def _kwonly(func) -> tuple[list[str], dict]:
    spec = inspect.getfullargspec(func)
    return list(spec.kwonlyargs), get_type_hints(func)


def _step_class(step: str, code: str):
    """dcnum's class of a pipeline step (``background``, ``segmenter``, ``feature``,
    ``gate``, ``data``) for ``code``; a one-line UsageError names the choices."""
    from dcnum.feat import Gate, QueueEventExtractor
    from dcnum.feat.feat_background.base import get_available_background_methods
    from dcnum.read import HDF5Data
    from dcnum.segm import get_segmenters
    choices = {"background": get_available_background_methods(),
               "segmenter": get_segmenters(),
               "feature": {QueueEventExtractor.get_ppid_code(): QueueEventExtractor},
               "gate": {Gate.get_ppid_code(): Gate},
               "data": {HDF5Data.get_ppid_code(): HDF5Data}}[step]
    if code not in choices:
        raise UsageError(f"unknown {step} method {code!r} (dcnum {_dcnum_version()} has "
                         f"{', '.join(sorted(choices))})")
    return choices[code]


def _dcnum_version() -> str:
    import dcnum
    return dcnum.__version__


def _keywords(step: str, code: str) -> list[tuple[str, dict, str | None]]:
    """(keywords, annotations, nested key) groups a step's keyword arguments may hold."""
    cls = _step_class(step, code)
    if step == "background":
        return [(*_kwonly(cls.check_user_kwargs), None)]
    if step == "feature":
        return [(*_kwonly(cls.get_events_from_masks), None)]
    if step == "gate":
        return [(*_kwonly(cls.__init__), None)]
    if step == "data":
        return [(["pixel_size", "index_mapping"], {}, None)]
    groups = [(*_kwonly(cls.segment_algorithm), None)]
    if getattr(cls, "mask_postprocessing", False):
        groups.insert(0, (*_kwonly(cls.process_labels), "kwargs_mask"))
    return groups


def parse_kwargs(step: str, code: str, pairs: Iterable[str]) -> dict[str, Any]:
    """ChipStream's ``KEY=VALUE`` options of one step as dcnum's keyword arguments.

    Values are converted to the type the dcnum method annotates (dcnum's own
    ``convert_to_dtype``); the segmenter's mask post-processing keywords go into its
    ``kwargs_mask`` dict, as ChipStream puts them.

    Raises
    ------
    UsageError
        For a pair without ``=`` or a keyword the step does not take (the message lists
        the allowed ones).
    """
    from dcnum.meta.ppid import convert_to_dtype
    groups = _keywords(step, code)
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{step} keyword {pair!r}: expected KEY=VALUE")
        for names, hints, nested in groups:
            if key in names:
                try:
                    typed = convert_to_dtype(value, hints[key]) if key in hints else value
                except (ValueError, TypeError) as exc:  # dcnum's own words, as one line
                    raise UsageError(f"{step} keyword {key}={value!r}: not a value of "
                                     f"{getattr(hints[key], '__name__', hints[key])} "
                                     f"({one_line(exc)})") from None
                if not _finite(typed):
                    raise UsageError(f"{step} keyword {key}={value!r}: not a finite number")
                (kwargs.setdefault(nested, {}) if nested else kwargs)[key] = typed
                break
        else:
            allowed = [n for names, _h, _n in groups for n in names]
            raise UsageError(f"invalid keyword {key!r} for the {step} method {code!r}; "
                             f"allowed: {', '.join(allowed) or 'none'}")
    return kwargs


def parse_limit_events(text: str | None):
    """ChipStream's ``--limit-events`` (``N``, ``A-B`` or ``A-B-STEP``, ``n`` for open) as
    dcnum's ``index_mapping`` (None for ``0``/None)."""
    if text is None or text == "0":
        return None
    try:
        if "-" not in text:
            return int(text)
        parts = text.split("-")
        if len(parts) not in (2, 3):
            raise ValueError
        values = [None if p == "n" else int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--limit-events {text!r}: expected N, A-B or A-B-STEP "
                         f"('n' for open ends)") from None
    start, stop, *step = values
    if start is not None and stop is not None and stop <= start or step and (
            step[0] is not None and step[0] < 1):
        raise UsageError(f"--limit-events {text!r}: A-B needs A < B and STEP at least 1 "
                         f"(no events otherwise)")
    return slice(*values)


def _finite(value: Any) -> bool:
    """False for a float infinity or NaN (``thresh=1e400``, ``nan``): dcnum's pipeline
    identifier takes ``int()`` of each number, an OverflowError or ValueError traceback."""
    return not isinstance(value, float) or math.isfinite(value)


def _check_keys(step: str, code: str, kwargs: Mapping[str, Any]) -> None:
    groups = _keywords(step, code)
    allowed = {n for names, _h, nested in groups if nested is None for n in names}
    nested = {key: {n for n in names} for names, _h, key in groups if key}
    for key, value in kwargs.items():
        for name, number in (value.items() if isinstance(value, Mapping) else [(key, value)]):
            if not _finite(number):
                raise UsageError(f"{step} keyword {name}={number!r}: not a finite number")
        if key in nested and isinstance(value, Mapping):
            bad = sorted(set(value) - nested[key])
            if bad:
                raise UsageError(f"invalid {key} keyword(s) {', '.join(bad)} for the {step} "
                                 f"method {code!r}; allowed: {', '.join(sorted(nested[key]))}")
        elif key not in allowed:
            raise UsageError(f"invalid keyword {key!r} for the {step} method {code!r}; "
                             f"allowed: {', '.join(sorted(allowed)) or 'none'}")


@dataclass(frozen=True)
class PipelineOptions:
    """dcnum's job keywords (``dcnum.logic.DCNumPipelineJob``), with dcnum's defaults.

    ``num_procs`` is not an option: each job gets its worker's threads. A plain recipe
    (strings and dicts), so it pickles to the workers.
    """

    data_code: str = "hdf"
    data_kwargs: dict = field(default_factory=dict)
    background_code: str = "sparsemed"
    background_kwargs: dict = field(default_factory=dict)
    segmenter_code: str = "thresh"
    segmenter_kwargs: dict = field(default_factory=dict)
    feature_code: str = "legacy"
    feature_kwargs: dict = field(default_factory=dict)
    gate_code: str = "norm"
    gate_kwargs: dict = field(default_factory=dict)
    basin_strategy: str = "drain"
    compression: str = "zstd-5"

    def check(self) -> PipelineOptions:
        """Raise a one-line UsageError for what dcnum would refuse; return self."""
        require_dcnum()
        if self.basin_strategy not in ("drain", "tap"):
            raise UsageError(f"basin_strategy {self.basin_strategy!r}: 'drain' or 'tap'")
        if not _COMPRESSION.match(str(self.compression).lower().strip()):
            raise UsageError(f"compression {self.compression!r}: dcnum writes 'none' or "
                             f"'zstd-1' to 'zstd-9'")
        for step in ("data", "background", "segmenter", "feature", "gate"):
            _check_keys(step, getattr(self, f"{step}_code"), getattr(self, f"{step}_kwargs"))
        return self

    def job_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``DCNumPipelineJob`` (fresh copies of the dicts)."""
        import copy
        return {name: copy.deepcopy(getattr(self, name)) for name in (
            "data_code", "data_kwargs", "background_code", "background_kwargs",
            "segmenter_code", "segmenter_kwargs", "feature_code", "feature_kwargs",
            "gate_code", "gate_kwargs", "basin_strategy", "compression")}

    def identity(self) -> dict[str, Any]:
        """What the manifest keys outputs by: dcnum's pipeline identifiers of every step.

        The data step's identifier depends on each file's pixel size unless
        ``data_kwargs`` gives one, so it is recorded as the given keywords; each output's
        full ``pipeline:dcnum hash`` is dcnum's, in the output.
        """
        from dcnum.meta.ppid import DCNUM_PPID_GENERATION
        ids = {"gen_id": DCNUM_PPID_GENERATION}
        for key, step in (("bg_id", "background"), ("seg_id", "segmenter"),
                          ("feat_id", "feature"), ("gate_id", "gate")):
            kwargs = getattr(self, f"{step}_kwargs")
            if step == "segmenter":
                kwargs = {"kwargs_mask": {}, **kwargs}
            ids[key] = _step_class(step, getattr(self, f"{step}_code")).get_ppid_from_ppkw(
                kwargs)
        data = {k: (repr(v) if isinstance(v, slice) else v)
                for k, v in sorted(self.data_kwargs.items())}
        return {"mode": "process", "pipeline": ids, "data": [self.data_code, data],
                "basin_strategy": self.basin_strategy,
                "compression": str(self.compression).lower().strip()}
