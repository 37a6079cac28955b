"""Proving outputs equal their sources: the comparisons and the checks of one output.

:mod:`.rows` compares the features row by row, :mod:`.compare` the metadata and contours,
:mod:`.basins` the basins, :mod:`.storage` how each is stored (one line per problem;
:mod:`.values` says how two values compare); :mod:`.provenance` reads an
output's own record of its source and options, :mod:`.checks` plans and runs the checks of
one (output, source) pair (inline, or as tasks), :mod:`.processed` checks dcnum's outputs
alone. Running them over many outputs is a job of the executor
(:mod:`dcbulk.modes.verify`), like every other mode.
"""
from __future__ import annotations

from .checks import VerifyPair, check_pair
from .provenance import read_provenance

__all__ = ["VerifyPair", "check_pair", "read_provenance"]
