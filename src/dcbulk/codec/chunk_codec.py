"""Byte-exact HDF5 chunk encoding outside h5py: the :class:`ChunkCodec` filter pipeline.

Single responsibility: turn one block of a dataset into exactly the bytes HDF5 (with
hdf5plugin) stores for that chunk, and back. The pipeline follows h5py's ``fill_dcpl``
order: compression (Zstandard filter 32015 or deflate filter 1) first, Fletcher-32 (filter 3)
last, so the checksum covers the compressed bytes. Workers call :meth:`ChunkCodec.encode`;
the single writer stores the result with ``DatasetID.write_direct_chunk``.

Zstandard frames are produced by the very libzstd that hdf5plugin's filter is linked with
(see :mod:`dcbulk.codec.zstd`), because other libzstd releases can emit different frames
for the same level. When that library cannot be loaded the ``zstandard`` package is used;
:func:`verify_codec_with_hdf5` tells whether the bytes still match.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
import zlib
from collections.abc import Mapping
from itertools import product
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import zstandard

from ..errors import ChecksumMismatchError, CodecError, PlanError
from .checksum import FLETCHER32_FILTER_ID, _swapped_pairs, fletcher32
from .deflate import DEFLATE_FILTER_ID, _deflate_stored
from .zstd import ZSTD_FILTER_ID, _PackageZstd, _PluginZstd

__all__ = ["ChunkCodec", "parse_compression", "verify_codec_with_hdf5"]

logger = logging.getLogger(__name__)

_ZSTD_LEVELS = range(1, 23)
_GZIP_LEVELS = range(0, 10)
_ZSTD_BACKENDS = ("auto", "hdf5plugin", "zstandard")
_ACCEPTED_SPECS = ("'zstd' (level 5), 'zstd:<1-22>', 'gzip' (level 4), 'gzip:<0-9>', 'none'; "
                   "optionally followed by '+fletcher32'")


@dataclasses.dataclass(frozen=True)
class ChunkCodec:
    """Filters of one chunked dataset: compression, then optionally Fletcher-32.

    Parameters
    ----------
    compression
        ``"zstd"`` (hdf5plugin filter 32015), ``"gzip"`` (HDF5 deflate) or None.
    level
        1..22 for zstd, 0..9 for gzip; ignored (stored as 0) without compression.
    fletcher32
        Append HDF5's Fletcher-32 checksum (filter 3) after compression.
    zstd_backend
        Which libzstd makes the frames: ``"hdf5plugin"`` (the library of hdf5plugin's
        filter, via ctypes; byte-exact by construction), ``"zstandard"`` (the Python
        package; exact only when its libzstd emits the same frames) or ``"auto"`` (the first
        that loads, in that order; resolved per process and thread).

    Notes
    -----
    Instances are frozen, hashable and pickle as their four fields; a per-instance
    ``threading.local`` (not a field) holds one compression context per thread and is
    never pickled.
    """

    compression: str | None = "zstd"
    level: int = 5
    fletcher32: bool = True
    zstd_backend: str = "auto"

    def __post_init__(self) -> None:
        # per-thread compression contexts: an attribute, not a field, so that eq, hash,
        # dataclasses.asdict/replace and pickling see only the four settings
        object.__setattr__(self, "_tls", threading.local())
        if self.compression not in ("zstd", "gzip", None):
            raise ValueError(f"compression must be 'zstd', 'gzip' or None, "
                             f"got {self.compression!r}")
        if not isinstance(self.level, (int, np.integer)) or isinstance(self.level, bool):
            raise TypeError(f"level must be an int, got {type(self.level).__name__}")
        levels = {"zstd": _ZSTD_LEVELS, "gzip": _GZIP_LEVELS, None: None}[self.compression]
        if levels is None:
            object.__setattr__(self, "level", 0)
        elif self.level not in levels:
            raise ValueError(f"{self.compression} level must be in {levels.start}.."
                             f"{levels.stop - 1}, got {self.level}")
        object.__setattr__(self, "level", int(self.level))
        if not isinstance(self.fletcher32, (bool, np.bool_)):
            raise TypeError(f"fletcher32 must be a bool, got {type(self.fletcher32).__name__}")
        object.__setattr__(self, "fletcher32", bool(self.fletcher32))
        if self.zstd_backend not in _ZSTD_BACKENDS:
            raise ValueError(f"zstd_backend must be one of {_ZSTD_BACKENDS}, "
                             f"got {self.zstd_backend!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.compression, self.level, self.fletcher32, self.zstd_backend))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form of the settings (inverse of :meth:`from_dict`)."""
        return {"compression": self.compression, "level": self.level,
                "fletcher32": self.fletcher32, "zstd_backend": self.zstd_backend}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkCodec:
        """Build a codec from :meth:`to_dict` output; unknown keys raise ValueError."""
        unknown = set(data) - {"compression", "level", "fletcher32", "zstd_backend"}
        if unknown:
            raise ValueError(f"unknown ChunkCodec keys {sorted(unknown)} in {dict(data)!r}")
        return cls(**data)

    def describe(self) -> str:
        """Short text such as ``"zstd:5+fletcher32"``, ``"gzip:4"`` or ``"none"``."""
        text = "none" if self.compression is None else f"{self.compression}:{self.level}"
        return text + ("+fletcher32" if self.fletcher32 else "")

    def ds_kwds(self) -> dict[str, Any]:
        """h5py ``create_dataset`` keywords for these filters (dcnum ``ds_kwds`` style)."""
        if self.compression == "zstd":
            kwds: dict[str, Any] = dict(hdf5plugin.Zstd(clevel=self.level))
        elif self.compression == "gzip":
            kwds = {"compression": "gzip", "compression_opts": self.level}
        else:
            kwds = {"compression": None, "compression_opts": None}
        kwds["fletcher32"] = self.fletcher32
        return kwds

    def implementation(self) -> str:
        """Which library compresses in this process, e.g. for logs and reports."""
        if self.compression == "zstd":
            return self._zstd().name
        return "none" if self.compression is None else f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

    def _zstd(self) -> _PluginZstd | _PackageZstd:
        engine = getattr(self._tls, "zstd", None)
        if engine is None:
            engine = _PackageZstd(self.level) if self.zstd_backend == "zstandard" else None
            if engine is None:
                try:
                    engine = _PluginZstd()
                except (OSError, AttributeError, MemoryError) as exc:
                    if self.zstd_backend == "hdf5plugin":
                        raise CodecError(f"cannot use hdf5plugin's libzstd: {exc}") from exc
                    logger.warning("hdf5plugin's libzstd unusable (%s); using python-zstandard, "
                                   "whose frames may differ from HDF5's", exc)
                    engine = _PackageZstd(self.level)
            self._tls.zstd = engine
        return engine

    def encode(self, block: np.ndarray, chunk_shape: tuple[int, ...]) -> bytes:
        """The bytes HDF5 would store for one chunk holding ``block``.

        Parameters
        ----------
        block
            Data of the chunk, in the dataset's dtype and byte order. It may be smaller than
            ``chunk_shape`` (an edge chunk); it is then padded with zeros at the end of each
            axis, as HDF5 pads with the (zero) fill value.
        chunk_shape
            The dataset's chunk shape.

        Returns
        -------
        bytes
            Ready for ``write_direct_chunk(offsets, data, filter_mask=0)``.

        Raises
        ------
        TypeError
            For object (variable-length) dtypes.
        ValueError
            When ``block`` does not fit into ``chunk_shape`` or is empty.
        """
        arr = _full_chunk(np.asarray(block), tuple(int(c) for c in chunk_shape))
        raw = arr.reshape(-1).view(np.uint8)
        if self.compression == "zstd":
            payload: Any = self._zstd().compress(raw, self.level)
        elif self.compression == "gzip":
            payload = (zlib.compress(raw.data, self.level) if self.level else
                       _deflate_stored(raw.data))
        else:
            payload = raw.data
        if not self.fletcher32:
            return bytes(payload)
        return b"".join((payload, fletcher32(payload).to_bytes(4, "little")))

    def decode(self, data: bytes | memoryview, dtype: Any, chunk_shape: tuple[int, ...], *,
               filter_mask: int = 0, where: str | None = None) -> np.ndarray:
        """Verify and decompress one stored chunk.

        Parameters
        ----------
        data
            The stored chunk (``read_direct_chunk(...)[1]``).
        dtype, chunk_shape
            The dataset's dtype and chunk shape.
        filter_mask
            ``read_direct_chunk(...)[0]``: bit ``i`` set means filter ``i`` was skipped.
        where
            Text naming the chunk (file, dataset, offset) for error messages.

        Returns
        -------
        numpy.ndarray
            The full (padded) chunk; read-only when it shares memory with ``data``.

        Raises
        ------
        ChecksumMismatchError
            When the stored checksum matches neither HDF5 order (HDF5 also accepts the
            byte-pair-swapped value written before 1.6.3).
        CodecError
            When the data cannot be decompressed to the expected size.
        """
        dtype = np.dtype(dtype)
        where = where or "chunk"
        view = memoryview(data).cast("B")
        compressed = self.compression is not None and not filter_mask & 1
        if self.fletcher32 and not filter_mask >> (self.compression is not None) & 1:
            if len(view) < 4:
                raise CodecError(f"{where}: {len(view)} bytes cannot hold a Fletcher-32 checksum")
            view, stored = view[:-4], int.from_bytes(view[-4:], "little")
            computed = fletcher32(view)
            if stored not in (computed, _swapped_pairs(computed)):
                raise ChecksumMismatchError(
                    f"{where}: Fletcher-32 mismatch over {len(view)} bytes "
                    f"(stored 0x{stored:08x}, computed 0x{computed:08x})")
        expected = int(np.prod(chunk_shape)) * dtype.itemsize
        raw: Any = view
        try:
            if compressed and self.compression == "zstd":
                raw = zstandard.ZstdDecompressor().decompress(view, max_output_size=expected)
            elif compressed:
                raw = zlib.decompress(view, bufsize=max(expected, 1))
        except (zstandard.ZstdError, zlib.error) as exc:
            raise CodecError(f"{where}: cannot {self.compression}-decompress: {exc}") from exc
        if len(raw) != expected:
            raise CodecError(f"{where}: decoded {len(raw)} bytes, expected {expected} "
                             f"for chunk {tuple(chunk_shape)} of {dtype}")
        return np.frombuffer(raw, dtype=dtype).reshape(chunk_shape)

    @classmethod
    def from_dataset(cls, dset: h5py.Dataset) -> ChunkCodec | None:
        """The codec that reproduces an existing dataset's stored chunks, or None.

        None when the dataset is not chunked, has a variable-length (object) dtype or a
        non-zero fill value (edge chunks would be padded differently), or when its pipeline
        holds anything but [zstd | deflate] then [fletcher32] (e.g. shuffle, scaleoffset,
        other plugins, or levels outside the accepted ranges).
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
        if filters and filters[0][0] in (ZSTD_FILTER_ID, DEFLATE_FILTER_ID):
            code, _flags, values = filters.pop(0)
            compression = "zstd" if code == ZSTD_FILTER_ID else "gzip"
            # the plugin compresses with level 3 (ZSTD_CLEVEL_DEFAULT) when given no value
            level = int(values[0]) if values else (3 if code == ZSTD_FILTER_ID else -1)
            if level not in (_ZSTD_LEVELS if compression == "zstd" else _GZIP_LEVELS):
                return None
        if filters and filters[0][0] == FLETCHER32_FILTER_ID:
            filters.pop(0)
            checksum = True
        if filters:
            return None
        return cls(compression, level, checksum)


def _full_chunk(block: np.ndarray, chunk_shape: tuple[int, ...]) -> np.ndarray:
    """``block`` as a C-contiguous array of ``chunk_shape`` (zero-padded, copied only if needed)."""
    if block.dtype.hasobject:
        raise TypeError(f"cannot encode dtype {block.dtype} (object / variable-length)")
    if block.ndim != len(chunk_shape) or any(
            b < 1 or b > c for b, c in zip(block.shape, chunk_shape)):
        raise ValueError(f"block of shape {block.shape} does not fit chunk shape {chunk_shape}")
    if block.shape == chunk_shape:
        return np.ascontiguousarray(block)
    out = np.zeros(chunk_shape, dtype=block.dtype)
    out[tuple(slice(0, b) for b in block.shape)] = block
    return out


def parse_compression(spec: str | None, *, fletcher32: bool = True) -> ChunkCodec:
    """Parse a compression spec such as ``"zstd:5"``, ``"gzip:4"`` or ``"none"``.

    Parameters
    ----------
    spec
        ``'zstd'`` (level 5), ``'zstd:<1-22>'``, ``'gzip'`` (level 4), ``'gzip:<0-9>'`` or
        ``'none'`` (None means ``'none'``), case-insensitive, optionally followed by
        ``'+fletcher32'`` (which forces the checksum on).
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
    defaults = {"zstd": 5, "gzip": 4, "none": None}
    if name not in defaults or (sep and (name == "none" or not level_text.isdigit())):
        raise PlanError(f"invalid compression {spec!r}; accepted: {_ACCEPTED_SPECS}")
    level = int(level_text) if sep else defaults[name]
    try:
        return ChunkCodec(None if name == "none" else name, level or 0, fletcher32)
    except ValueError as exc:
        raise PlanError(f"invalid compression {spec!r} ({exc}); accepted: {_ACCEPTED_SPECS}"
                        ) from exc


def verify_codec_with_hdf5(codec: ChunkCodec, dtype: Any, chunk_shape: tuple[int, ...],
                           sample: np.ndarray) -> bool:
    """Whether ``codec.encode`` reproduces what HDF5 itself stores for ``sample``.

    Writes at most one full and one partial chunk's worth of rows of ``sample`` into an
    in-memory HDF5 file with ``codec.ds_kwds()`` and compares every stored chunk with
    :meth:`ChunkCodec.encode`. Failures of HDF5 or the codec (e.g. a missing filter) count
    as a mismatch and are logged.

    Parameters
    ----------
    codec, chunk_shape
        The codec to check and the dataset's chunk shape.
    dtype
        The dataset dtype (``sample`` is cast to it).
    sample
        Representative data with at least one row; rows are along the first axis.

    Returns
    -------
    bool
        True when every chunk is byte-identical (and stored with filter mask 0).

    Raises
    ------
    ValueError
        When ``sample`` is empty or its dimensions do not match ``chunk_shape``.
    """
    dtype = np.dtype(dtype)
    chunk_shape = tuple(int(c) for c in chunk_shape)
    sample = np.asarray(sample, dtype=dtype)
    if sample.ndim != len(chunk_shape) or sample.ndim == 0 or sample.shape[0] == 0:
        raise ValueError(f"sample of shape {sample.shape} does not match chunk shape "
                         f"{chunk_shape} or is empty")
    sample = sample[:chunk_shape[0] + max(1, chunk_shape[0] // 2)]
    name = f"dcbulk-verify-{uuid.uuid4().hex}.h5"
    try:
        with h5py.File(name, "w", driver="core", backing_store=False) as h5:
            dset = h5.create_dataset("x", data=sample, chunks=chunk_shape,
                                     maxshape=(None,) + sample.shape[1:], **codec.ds_kwds())
            starts = [range(0, n, c) for n, c in zip(sample.shape, chunk_shape)]
            for offset in product(*starts):
                mask, stored = dset.id.read_direct_chunk(offset)
                region = tuple(slice(o, o + c) for o, c in zip(offset, chunk_shape))
                if mask != 0 or stored != codec.encode(sample[region], chunk_shape):
                    logger.info("%s differs from HDF5 for %s chunk %s at %s (filter mask %d)",
                                codec.describe(), dtype, chunk_shape, offset, mask)
                    return False
    except (OSError, ValueError, RuntimeError, CodecError) as exc:
        logger.warning("cannot verify %s for %s chunk %s: %s", codec.describe(), dtype,
                       chunk_shape, exc)
        return False
    return True
