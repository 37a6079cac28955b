"""Proving outputs equal their sources: :func:`verify` (``dcbulk verify``, ``convert --verify``).

:mod:`.compare` holds the comparisons (one line per problem), :mod:`.provenance` reads an
output's own record of its source and options, :mod:`.run` pairs outputs with sources
(arguments, provenance log or manifest) and runs the checks in parallel on a dask cluster.
"""
from __future__ import annotations

from .provenance import read_provenance
from .run import FileVerdict, VerifyPair, VerifyReport, verify, verify_pair_inline, verify_pairs

__all__ = ["FileVerdict", "VerifyPair", "VerifyReport", "read_provenance", "verify",
           "verify_pair_inline", "verify_pairs"]
