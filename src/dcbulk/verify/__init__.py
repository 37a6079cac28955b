"""Proving outputs equal their sources: :func:`verify` (``dcbulk verify``, ``convert --verify``).

:mod:`.compare` holds the comparisons (one line per problem), :mod:`.run` pairs outputs with
sources (arguments or the manifest) and runs the checks in parallel on a dask cluster.
"""
from __future__ import annotations

from .run import FileVerdict, VerifyPair, VerifyReport, verify, verify_pair_inline

__all__ = ["FileVerdict", "VerifyPair", "VerifyReport", "verify", "verify_pair_inline"]
