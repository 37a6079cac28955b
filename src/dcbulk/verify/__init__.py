"""Proving outputs equal their sources: the comparisons and the parallel checks.

:mod:`.compare` holds the comparisons (one line per problem), :mod:`.provenance` reads an
output's own record of its source and options, :mod:`.run` runs the checks of
(output, source) pairs in parallel on a dask cluster. What to check for ``dcbulk verify``
(arguments, provenance log or manifest) is :mod:`dcbulk.modes.verify`'s.
"""
from __future__ import annotations

from .provenance import read_provenance
from .run import FileVerdict, VerifyPair, VerifyReport, run_checks, verify_pair_inline

__all__ = ["FileVerdict", "VerifyPair", "VerifyReport", "read_provenance", "run_checks",
           "verify_pair_inline"]
