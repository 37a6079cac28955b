"""The output filter pipeline as a small frozen, picklable spec.

:class:`ChunkCodec` names one row of the codec table (:mod:`dcbulk.codec.table`), its
level and whether HDF5's Fletcher-32 checksum follows it. It knows nothing about bytes: it
turns itself into ``create_dataset`` keywords (:meth:`ChunkCodec.ds_kwds`) or the numcodecs
pipeline that reproduces them (:meth:`ChunkCodec.numcodecs_pipeline`) and, conversely,
recognises the zstd/deflate pipelines whose stored chunks may be copied as they are
(:meth:`ChunkCodec.from_dataset`). Encoding is :mod:`dcbulk.codec.encode`'s job.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
from h5py import h5d

from ..errors import PlanError
from .fletcher import fletcher32_stage
from .table import COMPRESSORS, Compressor, compressor

__all__ = ["COMPRESSION_CHOICES", "ChunkCodec", "parse_compression"]

#: what ``--compression`` accepts (for help texts and error messages), from the codec table
COMPRESSION_CHOICES = tuple(row.spec_text() for row in COMPRESSORS)
_ACCEPTED = ", ".join(
    f"'{row.name}'" + (f" (level {row.default}), '{row.name}:<{row.levels.start}-"
                       f"{row.levels.stop - 1}>'" if row.levels is not None else "")
    for row in COMPRESSORS) + "; optionally followed by '+fletcher32'"
_NAMES = {None if row.name == "none" else row.name for row in COMPRESSORS}
_BY_SPEC = {row.name: row for row in COMPRESSORS}
_ZSTD_ID, _DEFLATE_ID = compressor("zstd").filter_id, compressor("gzip").filter_id
#: the compressors :meth:`ChunkCodec.from_dataset` reads back, by HDF5 filter id
_DESCRIBED = {_ZSTD_ID: "zstd", _DEFLATE_ID: "gzip"}
_FLETCHER32_ID = h5py.h5z.FILTER_FLETCHER32


@dataclasses.dataclass(frozen=True)
class ChunkCodec:
    """Filters of one chunked dataset: a compressor, then optionally Fletcher-32.

    Parameters
    ----------
    compression
        A name of the codec table (``zstd``, ``gzip``, ``lz4``, ...) or None for no
        compressor (the table's ``none``).
    level
        The compressor's level (see :data:`COMPRESSION_CHOICES`); stored as 0 for
        compressors without levels.
    fletcher32
        Append HDF5's Fletcher-32 checksum (filter 3) after compression.
    """

    compression: str | None = "zstd"
    level: int = 5
    fletcher32: bool = True

    def __post_init__(self) -> None:
        if self.compression not in _NAMES:
            raise ValueError(f"compression must be one of {sorted(map(str, _NAMES))}, "
                             f"got {self.compression!r}")
        if not isinstance(self.level, (int, np.integer)) or isinstance(self.level, bool):
            raise TypeError(f"level must be an int, got {type(self.level).__name__}")
        levels = self.row.levels
        if levels is None:
            object.__setattr__(self, "level", 0)
        elif self.level not in levels:
            raise ValueError(f"{self.compression} level must be in {levels.start}.."
                             f"{levels.stop - 1}, got {self.level}")
        object.__setattr__(self, "level", int(self.level))
        if not isinstance(self.fletcher32, (bool, np.bool_)):
            raise TypeError(f"fletcher32 must be a bool, got {type(self.fletcher32).__name__}")
        object.__setattr__(self, "fletcher32", bool(self.fletcher32))

    @property
    def row(self) -> Compressor:
        """This codec's row of the codec table (:mod:`dcbulk.codec.table`)."""
        return compressor(self.compression)

    def numcodecs_pipeline(self, *, exact: bool = True) -> tuple | None:
        """numcodecs codecs for these filters, Fletcher-32 last, or None.

        With ``exact`` (encoding), only a pipeline whose chained ``encode`` gives exactly
        the chunk bytes HDF5 stores; without (decoding, which does not depend on the
        level), any pipeline of the compressor. None where only HDF5 can do it.
        """
        make = self.row.numcodecs
        stages = None if make is None else make(self.level)
        if stages is None and make is not None and not exact:
            stages = make(self.row.default)
        if stages is None:
            return None
        if self.fletcher32:  # HDF5's own checksum, without the GIL (:mod:`.fletcher`)
            stages = (*stages, fletcher32_stage())
        return stages

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form of the settings (inverse of :meth:`from_dict`)."""
        return {"compression": self.compression, "level": self.level,
                "fletcher32": self.fletcher32}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkCodec:
        """Build a codec from :meth:`to_dict` output; unknown keys raise ValueError."""
        unknown = set(data) - {"compression", "level", "fletcher32"}
        if unknown:
            raise ValueError(f"unknown ChunkCodec keys {sorted(unknown)} in {dict(data)!r}")
        return cls(**data)

    def describe(self) -> str:
        """Short text such as ``"zstd:5+fletcher32"``, ``"lz4"`` or ``"none"``."""
        text = self.compression or "none"
        if self.row.levels is not None:
            text += f":{self.level}"
        return text + ("+fletcher32" if self.fletcher32 else "")

    def ds_kwds(self) -> dict[str, Any]:
        """h5py ``create_dataset`` keywords for these filters (dcnum ``ds_kwds`` style)."""
        kwds = self.row.hdf5(self.level)
        kwds["fletcher32"] = self.fletcher32
        return kwds

    @property
    def recognised(self) -> bool:
        """Whether :meth:`from_dataset` describes datasets stored with these filters."""
        return self.compression is None or self.compression in _DESCRIBED.values()

    @classmethod
    def from_dataset(cls, dset: h5py.Dataset) -> ChunkCodec | None:
        """The zstd/deflate/plain codec of an existing dataset's stored chunks, or None.

        Only pipelines whose chunks dcbulk may copy as stored are described: [zstd |
        deflate] then [fletcher32], a zero fill value and a fixed-size dtype. Anything else
        (shuffle, other plugins, contiguous layout, ...) gives None.
        """
        dtype = dset.dtype  # h5py makes a new numpy dtype on every access
        if dset.chunks is None or dtype.hasobject:
            return None
        plist = dset.id.get_create_plist()
        if plist.fill_value_defined() != h5d.FILL_VALUE_DEFAULT:  # HDF5's default is zero
            fill = np.zeros(1, dtype=dtype)  # (reading it costs half of this function)
            plist.get_fill_value(fill)
            if fill.view(np.uint8).any():
                return None
        filters = [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]
        compression, level, checksum = None, 0, False
        if filters and filters[0][0] in _DESCRIBED:
            code, _flags, values = filters.pop(0)
            compression = _DESCRIBED[code]
            # the plugin compresses with level 3 (ZSTD_CLEVEL_DEFAULT) when given no value
            level = int(values[0]) if values else (3 if code == _ZSTD_ID else -1)
            if level not in compressor(compression).levels:
                return None
        if filters and filters[0][0] == _FLETCHER32_ID:
            filters.pop(0)
            checksum = True
        if filters:
            return None
        return cls(compression, level, checksum)

    def stores(self, dset: h5py.Dataset) -> bool:
        """Whether ``dset``'s chunks are stored with these filters, for every choice of the
        table (:meth:`from_dataset` describes zstd and deflate only).

        The filter ids must be this codec's, in order (compressor, then Fletcher-32), and
        the compressor's values must hold the non-zero values :meth:`ds_kwds` gives it
        (level, codec, shuffle) where the table row says they sit
        (:attr:`~dcbulk.codec.table.Compressor.values_at`); the values plugins add of their
        own (versions, item and chunk sizes, the chunk shape) differ between their releases
        and are not compared, so an output written by an earlier hdf5plugin still matches.
        """
        if dset.chunks is None:
            return False
        plist = dset.id.get_create_plist()
        found = [plist.get_filter(i)[::2] for i in range(plist.get_nfilters())]
        want = [] if self.row.filter_id is None else [self.row.filter_id]
        want += [_FLETCHER32_ID] if self.fletcher32 else []
        if [code for code, _ in found] != want:
            return False
        if self.row.filter_id is None:
            return True
        given = np.atleast_1d(self.ds_kwds()["compression_opts"]).tolist()
        values, at = found[0][1], self.row.values_at
        return all(w == 0 or (at + i < len(values) and values[at + i] == w)
                   for i, w in enumerate(given))


def parse_compression(spec: str | None, *, fletcher32: bool = True) -> ChunkCodec:
    """Parse a compression spec such as ``"zstd:5"``, ``"lz4"`` or ``"none"``.

    Parameters
    ----------
    spec
        One of :data:`COMPRESSION_CHOICES` (None means ``'none'``), case-insensitive,
        optionally followed by ``'+fletcher32'`` (which forces the checksum on). A name with
        levels and no level gets its default (zstd 5, gzip 4, blosc2 5).
    fletcher32
        Whether to add the checksum when the spec does not say ``'+fletcher32'``.

    Raises
    ------
    PlanError
        For anything else; the message lists the accepted forms.
    """
    text = "none" if spec is None else str(spec).strip().lower()
    if text.endswith("+fletcher32"):
        text, fletcher32 = text[:-len("+fletcher32")], True
    name, sep, level_text = text.partition(":")
    row = _BY_SPEC.get(name)
    if row is None or (sep and (row.levels is None or not level_text.isdigit())):
        raise PlanError(f"invalid compression {spec!r}; accepted: {_ACCEPTED}")
    key = None if row.name == "none" else row.name
    level = int(level_text) if sep else row.default
    try:
        return ChunkCodec(key, level, fletcher32)
    except ValueError as exc:
        raise PlanError(f"invalid compression {spec!r} ({exc}); accepted: {_ACCEPTED}"
                        ) from exc
