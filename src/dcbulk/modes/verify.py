"""``dcbulk verify`` and :func:`dcbulk.verify`: what to check, then the checks.

Pairs come from the caller (``output`` and ``against``), from a file's provenance log
(:mod:`dcbulk.verify.provenance`: its source and options) or, for an output directory, from
its manifest: each finished record names its source, and the manifest's options
(``features``, ``filter``) give the expected feature set and event mapping. Outputs of
dcnum's pipeline (``dcbulk process``) have new events: they are checked alone
(:mod:`dcbulk.verify.processed`). The checks are :mod:`dcbulk.verify.run`'s (in parallel on
a dask cluster).
"""
from __future__ import annotations

import os

import numpy as np

from ..bulk.manifest import Manifest
from ..errors import ManifestError, UsageError
from ..verify.processed import is_processed_output
from ..verify.provenance import pair_from_provenance
from ..verify.run import VerifyPair, VerifyReport, run_checks

__all__ = ["pairs_from_manifest", "verify", "verify_pairs"]


def pairs_from_manifest(output_dir: str) -> list[VerifyPair]:
    """The finished outputs of an output directory and their sources and options."""
    output_dir = os.path.abspath(output_dir)
    manifest = Manifest.load(output_dir, read_only=True)
    if not os.path.isfile(manifest.path):
        raise ManifestError(f"{output_dir}: no dcbulk manifest; verify its files one at a "
                            f"time")
    options = manifest.options or {}
    feats = options.get("features")
    processed = (options.get("job") or {}).get("mode") == "process"
    pairs = []
    for rec in manifest.records.values():
        if rec.status != "done":
            continue
        pairs.append(VerifyPair(output=os.path.join(output_dir, rec.output), source=rec.source,
                                features=tuple(feats) if feats else None,
                                filter=options.get("filter"), size=rec.output_size,
                                sha256=rec.output_sha256,
                                follow_external=bool(options.get("follow_external")),
                                processed=processed))
    return sorted(pairs, key=lambda p: p.output)


def verify_pairs(output, against=None, *, features=None, mapping=None,
                 filter: str | None = None, follow_external: bool = False
                 ) -> list[VerifyPair]:
    """What :func:`verify` checks: each output and what it must equal (cheap, no cluster).

    A file with ``against`` pairs with that source and the given options; a file without it
    with the source and options of its provenance log; a directory with the finished records
    of its manifest.

    Raises
    ------
    UsageError
        For a directory with ``against``, options without ``against``, or a file whose
        provenance log does not say what it must equal.
    SourceNotFoundError
        When the output, or the source its log names, does not exist.
    ManifestError
        For a directory without a readable manifest.
    """
    output = os.fspath(output)
    if against is None:
        given = [name for name, value in (("features", features), ("mapping", mapping),
                                          ("filter", filter)) if value is not None]
        if given:
            raise UsageError(f"{output}: {', '.join(given)} go with the source to verify "
                             f"against (--against SRC); without it the options come from "
                             f"the output's manifest or provenance log")
        if os.path.isdir(output):
            return pairs_from_manifest(output)
        if is_processed_output(output):
            return [VerifyPair(output=os.path.abspath(output), source="", processed=True)]
        return [pair_from_provenance(output)]
    if os.path.isdir(output):
        raise UsageError(f"{output} is a directory: it is verified through its manifest, "
                         f"without --against (against=)")
    return [VerifyPair(output=os.path.abspath(output), source=os.path.abspath(os.fspath(against)),
                       features=tuple(features) if features else None, filter=filter,
                       mapping=None if mapping is None else tuple(np.asarray(mapping).tolist()),
                       follow_external=bool(follow_external))]


def verify(output, against=None, *, features=None, mapping=None, filter: str | None = None,
           client=None, inline: bool = False, follow_external: bool = False,
           progress=None) -> VerifyReport:
    """Verify outputs against their sources: every chunk read, every value compared.

    Parameters
    ----------
    output
        An output file (with ``against``, else against the source and options its
        provenance log names), an output directory (pairs from its manifest), or the
        pairs of :func:`verify_pairs`.
    against
        The source of a single output file.
    features, mapping, filter, follow_external
        With ``against``: the feature selection, event mapping (indices or boolean filter),
        filter expression and source policy the file was converted with (default: all own
        features, all events, nothing external followed).
    client
        A ``distributed.Client``; by default a LocalCluster (unless ``inline``).
    inline
        Run every check in this process.
    progress
        Called as ``progress(result, done_count, total_count)`` as each output's verdict
        settles (``result``: :class:`~dcbulk.verify.run.VerifySettled`, ``failed`` when it
        differs).

    Returns
    -------
    VerifyReport
        One :class:`FileVerdict` per output, each problem one line.

    Raises
    ------
    UsageError, SourceNotFoundError, ManifestError
        As :func:`verify_pairs`.
    """
    if isinstance(output, (list, tuple)) and all(isinstance(p, VerifyPair) for p in output):
        pairs = list(output)
    else:
        pairs = verify_pairs(output, against, features=features, mapping=mapping,
                             filter=filter, follow_external=follow_external)
    return run_checks(pairs, client=client, inline=inline, progress=progress)
