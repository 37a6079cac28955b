"""The options every output of a run shares, parsed and checked once.

:func:`make_options` turns what a user typed (``--features``, ``--filter``,
``--compression`` (through the codec table, :mod:`dcbulk.codec.table`),
``--basin-to-source``, ``--follow-external``) into one frozen, picklable
:class:`ArchiveOptions`: the codec parsed into a :class:`~dcbulk.codec.ChunkCodec`, the
filter into a checked :class:`~dcbulk.filter_expr.FilterExpr`, feature names checked
against dclab's. Every layer (the executor, the jobs on the workers, the manifest's
fingerprint, the provenance log) receives this object; none parses a string again.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..arguments import feature_names, flag_args, text_arg
from ..codec import ChunkCodec, parse_compression
from ..errors import PlanError, UsageError
from ..filter_expr import FilterExpr, parse_filter
from .usage import check_feature_names

__all__ = ["ArchiveOptions", "make_options"]


@dataclass(frozen=True)
class ArchiveOptions:
    """The options that define a run's outputs (the manifest records their fingerprint).

    Build with :func:`make_options` (which checks them); the default is a plain
    conversion with ``zstd:5`` and Fletcher-32.
    """

    features: tuple[str, ...] | None = None
    filter: FilterExpr | None = None
    codec: ChunkCodec = field(default_factory=lambda: parse_compression("zstd:5"))
    basin_to_source: bool = False
    #: follow external links, virtual and externally stored datasets (source policy)
    follow_external: bool = False
    #: identity of the job when it is not a plain conversion (e.g. a function hash)
    job: dict | None = None

    @property
    def filter_text(self) -> str | None:
        """The filter expression as given, or None."""
        return None if self.filter is None else self.filter.text

    def fingerprint_dict(self) -> dict:
        """The JSON-ready options recorded in the manifest and in provenance logs."""
        doc = {"features": list(self.features) if self.features else None,
               "filter": self.filter_text,
               "compression": self.codec.describe(),
               "basin_to_source": self.basin_to_source}
        if self.follow_external:  # only when set: fingerprints of earlier runs stay valid
            doc["follow_external"] = True
        if self.job is not None:
            doc["job"] = self.job
        return doc


def make_options(*, features: str | Iterable[str] | None = None, filter: str | None = None,
                 compression: str | ChunkCodec = "zstd:5", basin_to_source: bool = False,
                 follow_external: bool = False, job: dict | None = None) -> ArchiveOptions:
    """Parse and check a run's options once.

    ``features`` is one feature name or several (:func:`~dcbulk.arguments.feature_names`).

    Raises
    ------
    UsageError
        A compression spec, filter expression or feature name that can never work, or an
        argument of the wrong type (one line naming it).
    """
    if isinstance(compression, ChunkCodec):
        codec = compression
    else:
        try:
            codec = parse_compression(compression)
        except PlanError as exc:
            raise UsageError(str(exc)) from exc
    flag_args(basin_to_source=basin_to_source, follow_external=follow_external)
    expr = parse_filter(text_arg("filter", filter, "an expression"))
    features = feature_names(features)
    if features:
        check_feature_names(features, what="features")
    if expr is not None:
        check_feature_names(expr.names, what=f"filter '{expr.text}'", scalar=True)
    return ArchiveOptions(features=features, filter=expr, codec=codec,
                          basin_to_source=bool(basin_to_source),
                          follow_external=bool(follow_external), job=job)
