"""Zstandard compression back-ends for HDF5 filter 32015.

Single responsibility: compress one chunk with either the libzstd that hdf5plugin's filter
is linked with (through :mod:`ctypes`; byte-exact by construction) or the ``zstandard``
package (exact only when its libzstd emits the same frames).
"""
from __future__ import annotations

import ctypes
import weakref
from typing import Any

import hdf5plugin
import numpy as np
import zstandard

from ..errors import CodecError

__all__ = ["ZSTD_FILTER_ID"]

ZSTD_FILTER_ID = 32015


class _PluginZstd:
    """One compression context of the libzstd inside hdf5plugin's filter 32015 library."""

    def __init__(self) -> None:
        path = hdf5plugin.get_config().registered_filters.get("zstd")
        if not path:
            raise OSError("hdf5plugin registered no zstd filter library")
        lib = ctypes.CDLL(path)
        size_t, ptr = ctypes.c_size_t, ctypes.c_void_p
        self._bound = self._fn(lib.ZSTD_compressBound, size_t, [size_t])
        self._compress = self._fn(lib.ZSTD_compressCCtx, size_t,
                                  [ptr, ptr, size_t, ptr, size_t, ctypes.c_int])
        self._is_error = self._fn(lib.ZSTD_isError, ctypes.c_uint, [size_t])
        self._error_name = self._fn(lib.ZSTD_getErrorName, ctypes.c_char_p, [size_t])
        version = self._fn(lib.ZSTD_versionString, ctypes.c_char_p, [])
        free = self._fn(lib.ZSTD_freeCCtx, size_t, [ptr])
        self._ctx = self._fn(lib.ZSTD_createCCtx, ptr, [])()
        if not self._ctx:
            raise MemoryError("ZSTD_createCCtx failed")
        weakref.finalize(self, free, self._ctx)
        self.name = f"libzstd {version().decode()} of hdf5plugin ({path})"

    @staticmethod
    def _fn(func: Any, restype: Any, argtypes: list[Any]) -> Any:
        func.restype, func.argtypes = restype, argtypes
        return func

    def compress(self, src: np.ndarray, level: int) -> np.ndarray:
        bound = self._bound(src.size)
        out = np.empty(bound, dtype=np.uint8)
        size = self._compress(self._ctx, out.ctypes.data, bound, src.ctypes.data, src.size, level)
        if self._is_error(size):
            raise CodecError(f"zstd compression failed: {self._error_name(size).decode()}")
        return out[:size]


class _PackageZstd:
    """A ``zstandard.ZstdCompressor`` (content size in the frame, no checksum, no dict id)."""

    def __init__(self, level: int) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)
        self.name = f"python-zstandard {zstandard.__version__} (libzstd {zstandard.ZSTD_VERSION})"

    def compress(self, src: np.ndarray, level: int) -> bytes:
        return self._compressor.compress(src.data)
