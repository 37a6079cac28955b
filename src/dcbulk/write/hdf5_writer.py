"""The dcnum-compatible ``HDF5Writer``: create features, logs and basins."""
from __future__ import annotations

import logging
import os
import pathlib
from types import MappingProxyType
from typing import Any, Sequence

import h5py
import hdf5plugin  # noqa: F401  (workers need the Zstd filter registered)
import numpy as np
import numpy.typing as npt

from ..read.policy import IMAGE_ATTRS
from . import basin_store
from .blockwise import iter_slices
from .filters import best_nd_chunks, set_default_filter_kwargs

__all__ = ["HDF5Writer"]

logger = logging.getLogger(__name__)

#: Chunk cache settings of files the writer opens itself (as in dcnum):
#: 10 MiB per dataset so that partial chunks can be written, evict fully
#: written chunks first, 1000 slots.
CHUNK_CACHE_KWARGS = MappingProxyType({"rdcc_nbytes": 10 * 1024 ** 2,
                                       "rdcc_w0": 1,
                                       "rdcc_nslots": 1000})

#: Read this many HDF5 chunks at once when a feature chunk is an h5py
#: Dataset (e.g. internal basin data copied from another file).
_COPY_CHUNKS_PER_READ = 10


class HDF5Writer:
    """Write deformability cytometry (.rtdc) HDF5 data

    A drop-in replacement for dcnum's ``HDF5Writer``.

    Parameters
    ----------
    obj
        An open :class:`h5py.File`, which is used as is and never closed
        by the writer, or a path, which is opened with `mode`,
        ``libver="latest"`` and a 10 MiB chunk cache per dataset and
        closed by :meth:`close`.
    mode
        Opening mode when `obj` is a path.
    ds_kwds
        Keyword arguments for :meth:`h5py.Group.create_dataset`.
        Missing keys are filled in by :func:`set_default_filter_kwargs`
        (Zstandard level 5 and Fletcher-32); the given dictionary is not
        modified.

    Attributes
    ----------
    h5 : h5py.File
        The file written to.
    h5_owned : bool
        Whether the writer opened (and therefore closes) `h5`.
    events : h5py.Group
        The ``events`` group (created if missing).
    ds_kwds : dict
        Default dataset keyword arguments.

    Notes
    -----
    A writer holds an open HDF5 handle and cannot be pickled; pass paths
    between processes instead.

    Examples
    --------
    >>> with HDF5Writer("out.rtdc", mode="w") as hw:  # doctest: +SKIP
    ...     hw.store_feature_chunk("deform", np.zeros(100))
    """

    def __init__(self,
                 obj: h5py.File | str | os.PathLike[str],
                 mode: str = "a",
                 ds_kwds: dict[str, Any] | None = None,
                 ) -> None:
        if isinstance(obj, h5py.File):
            self.h5 = obj
            self.h5_owned = False
        else:
            self.h5 = h5py.File(obj, mode=mode, libver="latest",
                                **CHUNK_CACHE_KWARGS)
            self.h5_owned = True
        try:
            self.events = self.h5.require_group("events")
        except BaseException:
            if self.h5_owned:
                self.h5.close()
            raise
        self.ds_kwds = set_default_filter_kwargs(
            None if ds_kwds is None else dict(ds_kwds))

    def __repr__(self) -> str:
        state = "open" if self.h5.id.valid else "closed"
        owner = "owned" if self.h5_owned else "wrapped"
        name = self.h5.filename if self.h5.id.valid else "?"
        return f"<HDF5Writer {name!r} ({state}, {owner})>"

    def __enter__(self) -> HDF5Writer:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "HDF5Writer holds an open HDF5 file and cannot be pickled; "
            "pass the file path instead")

    def __getstate__(self) -> Any:
        raise TypeError(
            "HDF5Writer holds an open HDF5 file and cannot be pickled; "
            "pass the file path instead")

    def close(self) -> None:
        """Flush the file; close it only if the writer opened it

        Calling it again, or after the wrapped file was closed, does
        nothing.
        """
        if not self.h5.id.valid:
            return
        self.h5.flush()
        if self.h5_owned:
            self.h5.close()

    @staticmethod
    def get_best_nd_chunks(item_shape: Sequence[int],
                           feat_dtype: npt.DTypeLike = np.float64
                           ) -> tuple[int, ...]:
        """Return the HDF5 chunk shape for events of shape `item_shape`

        About 1 MiB per chunk, clamped to 10..1000 events; see
        :func:`dcbulk.write.filters.best_nd_chunks`.
        """
        return best_nd_chunks(tuple(item_shape), feat_dtype)

    def require_feature(self,
                        feat: str,
                        item_shape: Sequence[int],
                        feat_dtype: npt.DTypeLike,
                        ds_kwds: dict[str, Any] | None = None,
                        group_name: str = "events",
                        ) -> tuple[h5py.Dataset, int]:
        """Return the dataset of a feature, creating it if needed

        A new dataset is empty, resizable along axis 0 and chunked with
        :meth:`get_best_nd_chunks`; a feature with 2-D events gets the
        HDF5 image attributes.

        Parameters
        ----------
        feat
            Feature name.
        item_shape
            Shape of one event, e.g. ``()`` for a scalar feature or
            ``(80, 300)`` for an image.
        feat_dtype
            Data type of a new feature.
        ds_kwds
            Keyword arguments for :meth:`h5py.Group.create_dataset`
            (e.g. ``compression``, ``fletcher32``) for a new dataset;
            they override the writer's `ds_kwds`. The given dictionary
            is not modified.
        group_name
            Group holding the feature (``"basin_events"`` for internal
            basin data).

        Returns
        -------
        dataset : h5py.Dataset
            The feature.
        offset : int
            Number of events it already holds (where to append).
        """
        if group_name == "events":
            group = self.events
        else:
            group = self.h5.require_group(group_name)
        if feat in group:
            dset = group[feat]
            if not isinstance(dset, h5py.Dataset):
                raise ValueError(
                    f"'{group_name}/{feat}' in {self.h5.filename} is a "
                    f"group, not a dataset")
            return dset, int(dset.shape[0])
        kwds = dict(ds_kwds) if ds_kwds else {}
        for key, value in self.ds_kwds.items():
            kwds.setdefault(key, value)
        item_shape = tuple(int(s) for s in item_shape)
        dset = group.create_dataset(
            feat,
            shape=(0, *item_shape),
            dtype=feat_dtype,
            maxshape=(None, *item_shape),
            chunks=best_nd_chunks(item_shape, feat_dtype),
            **kwds)
        if len(item_shape) == 2:
            for key, value in IMAGE_ATTRS.items():
                dset.attrs.create(key, value)
        return dset, 0

    def store_feature_chunk(self, feat: str, data: Any,
                            group_name: str = "events") -> None:
        """Append events to a feature, creating the feature if needed

        Parameters
        ----------
        feat
            Feature name.
        data
            Array (or h5py Dataset, copied in blocks) with events along
            axis 0. A boolean ``mask`` is stored as uint8 0/255.
        group_name
            Group holding the feature.

        Raises
        ------
        ValueError
            If `data` is zero-dimensional.
        """
        if not isinstance(data, h5py.Dataset):
            data = np.asarray(data)
        if len(data.shape) == 0:
            raise ValueError(
                f"Feature data for '{feat}' must have an event axis, "
                f"got a zero-dimensional array")
        as_mask = feat == "mask" and data.dtype == bool
        dtype = np.dtype(np.uint8) if as_mask else data.dtype
        dset, offset = self.require_feature(feat=feat,
                                            item_shape=data.shape[1:],
                                            feat_dtype=dtype,
                                            group_name=group_name)
        size = int(data.shape[0])
        dset.resize(offset + size, axis=0)
        if isinstance(data, h5py.Dataset):
            step = _COPY_CHUNKS_PER_READ * best_nd_chunks(data.shape[1:],
                                                          data.dtype)[0]
            slices = list(iter_slices(size, step))
        else:
            slices = [slice(0, size)]
        for sl in slices:
            block = data[sl]
            if as_mask:
                block = np.asarray(block, dtype=np.uint8) * np.uint8(255)
            dset[offset + sl.start:offset + sl.stop] = block

    def store_encoded_chunk(self, feat: str | h5py.Dataset, chunk_index: int, data: bytes,
                            filter_mask: int = 0, group_name: str = "events") -> int:
        """Store one already-encoded chunk of an existing feature (dcbulk extension)

        ``data`` must be the exact bytes HDF5 stores for chunk ``chunk_index`` along axis 0
        with the dataset's filters (see :mod:`dcbulk.codec`); the dataset must already be
        large enough (``resize``). ``feat`` is the feature's name or its dataset in this
        file (as :meth:`require_feature` returns it; a loop over many chunks saves a group
        look-up per chunk). Returns the number of bytes stored.
        """
        if isinstance(feat, h5py.Dataset):
            dset = feat
            if dset.id.fileno != self.h5.id.fileno:
                raise ValueError(f"dataset {dset.name} is not in {self.h5.filename}")
        else:
            group = self.events if group_name == "events" else self.h5[group_name]
            dset = group[feat]
        offset = (chunk_index * dset.chunks[0],) + (0,) * (dset.ndim - 1)
        if offset[0] >= dset.shape[0]:
            raise ValueError(f"chunk {chunk_index} of '{dset.name}' lies beyond its "
                             f"{dset.shape[0]} events in {self.h5.filename}")
        dset.id.write_direct_chunk(offset, data, filter_mask)
        return len(data)

    def store_log(self, log: str, data: Sequence[str | bytes],
                  override: bool = False) -> h5py.Dataset:
        """Store a log (one string per line) in the ``logs`` group

        Lines are stored UTF-8 encoded as fixed-length bytes.

        Parameters
        ----------
        log
            Name of the log.
        data
            The lines.
        override
            Replace an existing log of that name.

        Returns
        -------
        h5py.Dataset
            The log dataset.

        Raises
        ------
        ValueError
            If the log exists and `override` is False, or `data` is empty
            or a single string.
        """
        if isinstance(data, (str, bytes)):  # dcnum: ValueError (shape)
            raise ValueError(
                f"Cannot store log '{log}' in {self.h5.filename}: give its "
                f"lines as a list, not one {type(data).__name__}")
        logs = self.h5.require_group("logs")
        if log in logs:
            if not override:
                raise ValueError(
                    f"Log '{log}' already exists in {self.h5.filename}!")
            del logs[log]
        lines = [ln.encode("utf-8") if isinstance(ln, str) else bytes(ln)
                 for ln in data]
        if not lines:
            raise ValueError(
                f"Cannot store log '{log}' in {self.h5.filename}: no lines")
        width = max(1, max(len(ln) for ln in lines))
        return logs.create_dataset(
            name=log,
            data=np.array(lines, dtype=f"S{width}"),
            chunks=True,
            **self.ds_kwds)

    def store_basin(self,
                    name: str,
                    paths: Sequence[str | pathlib.Path] | None = None,
                    features: Sequence[str] | None = None,
                    description: str | None = None,
                    mapping: np.ndarray | None = None,
                    internal_data: dict[str, Any] | None = None,
                    identifier: str | None = None,
                    ) -> str:
        """Store a basin definition (and internal basin data)

        See :func:`dcbulk.write.basin_store.store_basin` for the
        parameters; returns the basin key (MD5 of its JSON text).
        """
        return basin_store.store_basin(
            self, name=name, paths=paths, features=features,
            description=description, mapping=mapping,
            internal_data=internal_data, identifier=identifier)
