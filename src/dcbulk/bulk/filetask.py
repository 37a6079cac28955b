"""The convert job: one source converted into one output by the engine, on a worker.

:class:`ConvertJob` inspects and plans one source on the worker and is then the single
writer of its output (:func:`~dcbulk.engine.writer.write_output`); with ``verify`` the
output is compared with its source (:mod:`dcbulk.verify`) before it is reported done. A
target's ``recipe`` may carry a :class:`Part` (an explicit event mapping and extra
metadata): ``split``'s pieces are conversions of a part of a source.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np

from ..engine.report import Report
from ..engine.writer import write_output
from ..errors import VerifyError
from ..plan import DEFAULT_TASK_BYTES, ExtraMetadata, plan_conversion
from ..read.filtering import event_filter
from ..read.inspect import inspect_source
from ..verify.checks import VerifyPair, check_pair
from .job import INLINE_BYTES, Job, Target
from .options import ArchiveOptions

__all__ = ["ConvertJob", "Part"]


@dataclass(frozen=True, eq=False)
class Part:
    """A target's recipe for converting some events of a source (``split``'s pieces)."""

    events: np.ndarray
    extra: ExtraMetadata | None = None


class ConvertJob(Job):
    """Convert each source into one output (``dcbulk convert``; ``convert_archive``).

    Parameters
    ----------
    verify
        Compare each output with its source before reporting it done; a mismatch removes
        the output and fails the file (:class:`~dcbulk.errors.VerifyError`).
    """

    name = "convert"
    in_process = True  # the engine's writer encodes a small file inline, without a worker

    def __init__(self, *, verify: bool = False):
        self.verify = bool(verify)
        self.checksum_output = self.verify

    def make(self, target: Target, options: ArchiveOptions, *, overwrite: bool,
             inline_bytes: int = INLINE_BYTES) -> Report:
        """Inspect, plan and write one output; see :class:`ConvertJob`."""
        report = self._convert(target, options, overwrite=overwrite,
                               inline_bytes=inline_bytes)
        if self.verify:
            self._verify(target, options)
        return report

    @staticmethod
    def _convert(target: Target, options: ArchiveOptions, *, overwrite: bool,
                 inline_bytes: int) -> Report:
        t0 = time.perf_counter()
        source = target.source.path
        info = inspect_source(source, follow_external=options.follow_external)
        part = target.recipe if isinstance(target.recipe, Part) else None
        mapping = event_filter(info, options.filter) if part is None else part.events
        plan = plan_conversion(info, target.output, features=options.features,
                               mapping=mapping, codec=options.codec,
                               max_task_bytes=DEFAULT_TASK_BYTES,
                               basin_to_source=options.basin_to_source or part is not None,
                               options=options.fingerprint_dict())
        if part is not None and part.extra is not None:
            plan = replace(plan, extra=part.extra)
        inline = sum(g.nbytes for g in plan.groups) <= inline_bytes
        report = write_output(plan, inline=inline, overwrite=overwrite)
        st = os.stat(source)
        return replace(report, wall_seconds=time.perf_counter() - t0, bytes_in=st.st_size,
                       source_mtime_ns=st.st_mtime_ns, basin_files=info.basin_files)

    @staticmethod
    def _verify(target: Target, options: ArchiveOptions) -> None:
        problems, _checked = check_pair(VerifyPair(output=target.output,
                                                   source=target.source.path,
                                                   features=options.features,
                                                   filter=options.filter_text,
                                                   follow_external=options.follow_external,
                                                   compression=options.codec.describe()))
        if problems:
            os.unlink(target.output)
            more = len(problems) - 1
            raise VerifyError(problems[0] + (f" (and {more} more)" if more else ""))
