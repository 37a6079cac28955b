"""Copy one log or table dataset into another file in slices of bounded size.

Memory stays at one slice (:data:`SLICE_BYTES` of rows, or :data:`VLEN_SLICE_ROWS` lines of
a variable-length log), whatever the dataset declares. Variable-length string logs become
fixed-length bytes as dcnum's ``copy_metadata`` stores them, unless the padding would cost
more than the text itself (one long line among many short ones): then they stay
variable-length strings without filters, as the source stored them.
"""
from __future__ import annotations

import h5py
import numpy as np

__all__ = ["SLICE_BYTES", "VLEN_SLICE_ROWS", "copy_sliced", "fixed_width_pays"]

#: bytes of fixed-size rows read and written at once
SLICE_BYTES = 16 * 1024**2
#: lines of a variable-length log read and written at once
VLEN_SLICE_ROWS = 4096
#: padding a fixed-length log may add on top of its text before the log stays variable-length
PADDING_ALLOWANCE = 64 * 1024


def _encoded(line) -> bytes:
    return line.encode("utf-8") if isinstance(line, str) else bytes(line)


def _slices(n: int, rows: int):
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def fixed_width_pays(width: int, lines: int, text_bytes: int) -> bool:
    """Whether ``lines`` fixed-length lines of ``width`` bytes cost at most twice the text."""
    return width * lines <= 2 * text_bytes + PADDING_ALLOWANCE


def copy_sliced(src: h5py.Dataset, group: h5py.Group, name: str, ds_kwds: dict
                ) -> h5py.Dataset | None:
    """Copy ``src`` (a log or table) to ``group[name]`` slice by slice, with ``ds_kwds``.

    Returns the new dataset, or None when ``src`` is empty (not copied, as dcnum does).
    Attributes are not copied here.
    """
    if src.size == 0:
        return None
    if src.ndim == 0:
        return group.create_dataset(name=name, data=src[()], **ds_kwds)
    n = src.shape[0]
    string = h5py.check_string_dtype(src.dtype)
    if src.dtype.kind == "O" and string is not None:
        width, text = 1, 0
        for sl in _slices(n, VLEN_SLICE_ROWS):
            lengths = [len(_encoded(ln)) for ln in src[sl].ravel()]
            width, text = max([width, *lengths]), text + sum(lengths)
        fixed = fixed_width_pays(width, src.size, text)
        dtype = np.dtype(f"S{width}") if fixed else h5py.string_dtype(string.encoding)
        # variable-length strings live in HDF5's global heap, which filters cannot compress
        # (HDF5 refuses Fletcher-32 on them): stored plainly, as the source stored them
        dst = group.create_dataset(name=name, shape=src.shape, dtype=dtype,
                                   **(ds_kwds if fixed else {}))
        for sl in _slices(n, VLEN_SLICE_ROWS):
            lines = [_encoded(ln) for ln in src[sl].ravel()]
            block = np.array(lines, dtype=dtype if fixed else object)
            dst[sl] = block.reshape((-1,) + src.shape[1:])
        return dst
    dst = group.create_dataset(name=name, shape=src.shape, dtype=src.dtype, **ds_kwds)
    row_bytes = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    for sl in _slices(n, max(1, SLICE_BYTES // row_bytes)):
        dst[sl] = src[sl]
    return dst
