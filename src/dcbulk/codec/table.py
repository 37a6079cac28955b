"""The one table of ``--compression`` choices: adding a codec is adding one row.

Each :class:`Compressor` row names a choice, its levels and default level, the HDF5 filter
that stores it (built with hdf5plugin's own filter class, or h5py's gzip), the HDF5 filter id
and name ``dcbulk info`` shows, a one-line label for help texts, and the numcodecs pipeline
whose output is byte-identical to what that HDF5 filter stores (None where numcodecs cannot
reproduce HDF5's framing: those chunks are encoded by HDF5 itself, :mod:`dcbulk.codec.hdf5`).
The CLI help, :func:`~dcbulk.codec.parse_compression`, ``ChunkCodec.ds_kwds``/``describe``
(hence the option fingerprint of resumed runs), ``dcbulk info``'s filter names and the
synthetic generator all read this table.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Compressor", "COMPRESSORS", "FILTER_NAMES", "compressor", "choices_text"]


@dataclass(frozen=True)
class Compressor:
    """One ``--compression`` choice.

    Parameters
    ----------
    name
        The spec name (``"zstd"``); ``"none"`` for no compressor.
    levels
        Accepted levels, or None for a compressor without levels.
    default
        Level used when the spec names none (0 without levels).
    label
        Short description for help texts.
    filter_id, filter_name
        HDF5 filter id and the name ``dcbulk info`` gives it (None for ``none``).
    hdf5
        ``level -> create_dataset keywords`` (hdf5plugin's filter class or h5py's gzip).
    numcodecs
        ``level -> tuple of numcodecs codecs`` whose chained ``encode`` gives the bytes the
        HDF5 filter stores, or None (for this level, or for every level) where none does.
    values_at
        Where the values ``hdf5`` gives the filter (level, codec, shuffle) sit among those
        HDF5 stores with the dataset: the plugin fills given zeros in place (Blosc2: item
        and chunk size) and may put values of its own before them (Bitshuffle: its version
        and the item size, 3).
    """

    name: str
    levels: range | None
    default: int
    label: str
    filter_id: int | None
    filter_name: str | None
    hdf5: Callable[[int], dict[str, Any]]
    numcodecs: Callable[[int], tuple | None] | None = None
    values_at: int = 0

    def spec_text(self) -> str:
        """``zstd[:1-22]``-style text of the accepted specs."""
        if self.levels is None:
            return self.name
        return f"{self.name}[:{self.levels.start}-{self.levels.stop - 1}]"


def _plugin(name: str, **kwargs) -> dict[str, Any]:
    import hdf5plugin  # imported when a dataset is made, not with the table (CLI start-up)
    return dict(getattr(hdf5plugin, name)(**kwargs))


def _zstd(level: int) -> tuple | None:
    from numcodecs import Zstd
    # levels 13-22 (btlazy2/btopt/btultra) differ between libzstd releases (hdf5plugin 4.4
    # ships 1.5.5, numcodecs 0.16 1.5.6; measured): HDF5's own plugin encodes those
    return (Zstd(level=level),) if level <= 12 else None


def _zlib(level: int) -> tuple | None:
    from numcodecs import Zlib
    # level 0 (stored blocks) differs between zlib releases: HDF5's own zlib encodes it
    return (Zlib(level=level),) if level > 0 else None


def _blosc2(cname: str) -> Callable[[int], dict[str, Any]]:
    # filters=1 is hdf5plugin.Blosc2.SHUFFLE (byte shuffle)
    return lambda level: _plugin("Blosc2", cname=cname, clevel=level, filters=1)


#: every ``--compression`` choice, in the order help texts list them
COMPRESSORS: tuple[Compressor, ...] = (
    Compressor("zstd", range(1, 23), 5, "Zstandard (hdf5plugin.Zstd), dclab's and dcnum's "
               "default", 32015, "zstd", lambda level: _plugin("Zstd", clevel=level),
               _zstd),
    Compressor("gzip", range(0, 10), 4, "deflate (HDF5's gzip filter)", 1, "gzip",
               lambda level: {"compression": "gzip", "compression_opts": level}, _zlib),
    Compressor("lz4", None, 0, "LZ4, HDF5-framed (hdf5plugin.LZ4)", 32004, "lz4",
               lambda level: _plugin("LZ4")),
    Compressor("blosc2-zstd", range(1, 10), 5, "Blosc2 with zstd and byte shuffle "
               "(hdf5plugin.Blosc2)", 32026, "blosc2", _blosc2("zstd")),
    Compressor("blosc2-lz4", range(1, 10), 5, "Blosc2 with lz4 and byte shuffle "
               "(hdf5plugin.Blosc2)", 32026, "blosc2", _blosc2("lz4")),
    Compressor("bitshuffle-zstd", range(1, 23), 5, "bitshuffle then zstd "
               "(hdf5plugin.Bitshuffle)", 32008, "bitshuffle",
               lambda level: _plugin("Bitshuffle", cname="zstd", clevel=level), values_at=3),
    Compressor("bitshuffle-lz4", None, 0, "bitshuffle then lz4 (hdf5plugin.Bitshuffle)",
               32008, "bitshuffle", lambda level: _plugin("Bitshuffle", cname="lz4"),
               values_at=3),
    Compressor("none", None, 0, "no compression", None, None,
               lambda level: {"compression": None, "compression_opts": None},
               lambda level: ()),
)

_BY_NAME = {row.name: row for row in COMPRESSORS}

#: HDF5 filter id -> the name ``dcbulk info`` shows (the table's, plus HDF5's own filters
#: and plugins dcbulk reads but does not write)
FILTER_NAMES: dict[int, str] = {
    2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset",
    32001: "blosc", 32017: "sz",
    **{row.filter_id: row.filter_name for row in COMPRESSORS if row.filter_id is not None}}


def compressor(name: str | None) -> Compressor:
    """The row of ``name`` (None means ``"none"``); KeyError for an unknown name."""
    return _BY_NAME["none" if name is None else name]


def choices_text() -> str:
    """``zstd[:1-22] (default 5), gzip[:0-9] (default 4), lz4, ..., none`` for help texts."""
    parts = []
    for row in COMPRESSORS:
        text = row.spec_text()
        if row.levels is not None:
            text += f" (default {row.default})"
        parts.append(text)
    return ", ".join(parts)
