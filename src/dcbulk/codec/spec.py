"""The output filter pipeline as a small frozen, picklable spec.

:class:`ChunkCodec` names one of the compressors hdf5plugin (or HDF5 itself) provides, its
level and whether HDF5's Fletcher-32 checksum follows it. It knows nothing about bytes: it
only turns itself into ``create_dataset`` keywords (:meth:`ChunkCodec.ds_kwds`) and,
conversely, recognises the zstd/deflate pipelines whose stored chunks may be copied as they
are (:meth:`ChunkCodec.from_dataset`). Encoding is HDF5's job (:mod:`dcbulk.codec.hdf5`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from ..errors import PlanError

__all__ = ["COMPRESSION_CHOICES", "ChunkCodec", "parse_compression"]

#: compressor -> (accepted levels or None, default level)
_LEVELS: dict[str | None, tuple[range | None, int]] = {
    "zstd": (range(1, 23), 5),
    "gzip": (range(0, 10), 4),
    "lz4": (None, 0),
    "blosc2-zstd": (range(1, 10), 5),
    "blosc2-lz4": (range(1, 10), 5),
    "bitshuffle-zstd": (range(1, 23), 5),
    "bitshuffle-lz4": (None, 0),
    None: (None, 0),
}
#: what ``--compression`` accepts (for help texts and error messages)
COMPRESSION_CHOICES = ("zstd[:1-22]", "gzip[:0-9]", "lz4", "blosc2-zstd[:1-9]",
                       "blosc2-lz4[:1-9]", "bitshuffle-zstd[:1-22]", "bitshuffle-lz4", "none")
_ACCEPTED = ("'zstd' (level 5), 'zstd:<1-22>', 'gzip' (level 4), 'gzip:<0-9>', 'lz4', "
             "'blosc2-zstd[:<1-9>]', 'blosc2-lz4[:<1-9>]', 'bitshuffle-zstd[:<1-22>]', "
             "'bitshuffle-lz4', 'none'; optionally followed by '+fletcher32'")
_ZSTD_ID, _DEFLATE_ID, _FLETCHER32_ID = 32015, h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_FLETCHER32


@dataclasses.dataclass(frozen=True)
class ChunkCodec:
    """Filters of one chunked dataset: a compressor, then optionally Fletcher-32.

    Parameters
    ----------
    compression
        One of ``zstd``, ``gzip``, ``lz4``, ``blosc2-zstd``, ``blosc2-lz4``,
        ``bitshuffle-zstd``, ``bitshuffle-lz4`` or None.
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
        if self.compression not in _LEVELS:
            raise ValueError(f"compression must be one of {sorted(map(str, _LEVELS))}, "
                             f"got {self.compression!r}")
        if not isinstance(self.level, (int, np.integer)) or isinstance(self.level, bool):
            raise TypeError(f"level must be an int, got {type(self.level).__name__}")
        levels = _LEVELS[self.compression][0]
        if levels is None:
            object.__setattr__(self, "level", 0)
        elif self.level not in levels:
            raise ValueError(f"{self.compression} level must be in {levels.start}.."
                             f"{levels.stop - 1}, got {self.level}")
        object.__setattr__(self, "level", int(self.level))
        if not isinstance(self.fletcher32, (bool, np.bool_)):
            raise TypeError(f"fletcher32 must be a bool, got {type(self.fletcher32).__name__}")
        object.__setattr__(self, "fletcher32", bool(self.fletcher32))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form of the settings (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

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
        if _LEVELS[self.compression][0] is not None:
            text += f":{self.level}"
        return text + ("+fletcher32" if self.fletcher32 else "")

    def ds_kwds(self) -> dict[str, Any]:
        """h5py ``create_dataset`` keywords for these filters (dcnum ``ds_kwds`` style)."""
        name, level = self.compression, self.level
        if name == "zstd":
            kwds: dict[str, Any] = dict(hdf5plugin.Zstd(clevel=level))
        elif name == "gzip":
            kwds = {"compression": "gzip", "compression_opts": level}
        elif name == "lz4":
            kwds = dict(hdf5plugin.LZ4())
        elif name in ("blosc2-zstd", "blosc2-lz4"):
            kwds = dict(hdf5plugin.Blosc2(cname=name.split("-")[1], clevel=level,
                                          filters=hdf5plugin.Blosc2.SHUFFLE))
        elif name == "bitshuffle-zstd":
            kwds = dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=level))
        elif name == "bitshuffle-lz4":
            kwds = dict(hdf5plugin.Bitshuffle(cname="lz4"))
        else:
            kwds = {"compression": None, "compression_opts": None}
        kwds["fletcher32"] = self.fletcher32
        return kwds

    @classmethod
    def from_dataset(cls, dset: h5py.Dataset) -> ChunkCodec | None:
        """The zstd/deflate/plain codec of an existing dataset's stored chunks, or None.

        Only pipelines whose chunks dcbulk may copy as stored are described: [zstd |
        deflate] then [fletcher32], a zero fill value and a fixed-size dtype. Anything else
        (shuffle, other plugins, contiguous layout, ...) gives None.
        """
        if dset.chunks is None or dset.dtype.hasobject:
            return None
        plist = dset.id.get_create_plist()
        fill = np.zeros(1, dtype=dset.dtype)
        plist.get_fill_value(fill)
        if fill.view(np.uint8).any():
            return None
        filters = [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]
        compression, level, checksum = None, 0, False
        if filters and filters[0][0] in (_ZSTD_ID, _DEFLATE_ID):
            code, _flags, values = filters.pop(0)
            compression = "zstd" if code == _ZSTD_ID else "gzip"
            # the plugin compresses with level 3 (ZSTD_CLEVEL_DEFAULT) when given no value
            level = int(values[0]) if values else (3 if code == _ZSTD_ID else -1)
            if level not in _LEVELS[compression][0]:
                return None
        if filters and filters[0][0] == _FLETCHER32_ID:
            filters.pop(0)
            checksum = True
        if filters:
            return None
        return cls(compression, level, checksum)


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
    key = None if name == "none" else name
    if key not in _LEVELS or (sep and (_LEVELS[key][0] is None or not level_text.isdigit())):
        raise PlanError(f"invalid compression {spec!r}; accepted: {_ACCEPTED}")
    level = int(level_text) if sep else _LEVELS[key][1]
    try:
        return ChunkCodec(key, level, fletcher32)
    except ValueError as exc:
        raise PlanError(f"invalid compression {spec!r} ({exc}); accepted: {_ACCEPTED}"
                        ) from exc
