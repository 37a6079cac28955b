"""Pure planning: source descriptions and options in, picklable output layouts out.

Nothing here opens a file or touches dask. :func:`plan_conversion` turns a
:class:`~dcbulk.read.inspect.SourceInfo`, a feature selection, an optional event mapping and
a :class:`~dcbulk.codec.ChunkCodec` into a :class:`ConversionPlan`: one
:class:`FeaturePlan` per output dataset (its chunking follows
``HDF5Writer.get_best_nd_chunks``) and :class:`BlockGroup` objects, each the layout of one
dask array of the engine (blocks of whole output chunks, several MiB each; the scalar
features packed into one record array).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .codec import ChunkCodec
from .errors import PlanError
from .read.inspect import FeatureSource, SourceInfo
from .read.policy import IMAGE_ATTRS
from .write.filters import best_nd_chunks

__all__ = [
    "FeaturePlan", "BlockGroup", "ConversionPlan", "ExtraMetadata", "DEFAULT_TASK_BYTES",
    "ENUMERATE", "SET_APART_ATTRS", "STAT_ATTRS", "best_chunk_rows", "carries_statistics",
    "keeps_statistics", "keeps_stored_chunks", "make_mapping", "select_features", "plan_feature",
    "plan_groups", "plan_conversion", "plan_stored_prefix", "scalar_features", "source_statistics",
    "statistics",
]

#: ``FeatureSource.origin`` of features generated as 1..n instead of read
ENUMERATE = "enumerate"

#: uncompressed bytes one worker task aims to handle (runs of several 1 MiB chunks)
DEFAULT_TASK_BYTES = 16 * 1024**2

#: attributes of scalar features that dclab writes and reads as a shortcut: valid only for
#: the events they were computed on
STAT_ATTRS = ("min", "max", "mean")
#: attributes of a feature dataset set apart from the others an output copies: statistics
#: (kept or recomputed) and the image class attributes the writer sets
SET_APART_ATTRS = frozenset(STAT_ATTRS) | frozenset(IMAGE_ATTRS)


def carries_statistics(name: str, dtype, item_shape: tuple[int, ...]) -> bool:
    """Whether an output feature gets :data:`STAT_ATTRS`: a numeric scalar, not a basin map."""
    return (not item_shape and not name.startswith("basinmap")
            and np.issubdtype(np.dtype(dtype), np.number))


def keeps_statistics(fsrc: FeatureSource, *, mapped: bool, n_rows: int) -> bool:
    """Whether an output feature of ``n_rows`` holds exactly the rows of its source dataset,
    so the source's :data:`STAT_ATTRS` stay valid (copied); else they are recomputed."""
    return (not mapped and fsrc.rowmap is None and fsrc.origin != ENUMERATE
            and bool(fsrc.data.path) and fsrc.data.shape[0] == n_rows)


def source_statistics(attrs) -> dict[str, object]:
    """The :data:`STAT_ATTRS` among a source dataset's attributes; an output holding its rows
    keeps them (:func:`keeps_statistics`; where the source has none, a conversion stores
    none and condense stores :func:`statistics`)."""
    return {key: attrs[key] for key in STAT_ATTRS if key in attrs}


def statistics(rows: np.ndarray) -> dict[str, object]:
    """:data:`STAT_ATTRS` of a feature's rows as dcbulk recomputes them (NaN ignored; NaN
    where every row is NaN, without numpy's warnings about it: they are not the user's)."""
    if rows.dtype.kind in "fc" and np.isnan(rows).all():
        nan = rows.dtype.type(np.nan)
        return {"min": nan, "max": nan, "mean": nan}
    with np.errstate(all="ignore"):
        return {"min": np.nanmin(rows), "max": np.nanmax(rows), "mean": np.nanmean(rows)}


def best_chunk_rows(item_shape: tuple[int, ...], dtype) -> int:
    """Rows per HDF5 chunk for a feature, exactly as ``HDF5Writer.get_best_nd_chunks``."""
    return int(best_nd_chunks(tuple(item_shape), np.dtype(dtype))[0])


@dataclass(frozen=True)
class FeaturePlan:
    """One output dataset: its layout, filters and where its rows come from.

    ``raw_copy`` means the stored source chunks already have the output's chunk shape and
    archival filters (e.g. zstd >= 5 + fletcher32), so they are copied as stored bytes
    without decoding; ``codec`` is then the source's own filters.
    """

    name: str
    source: FeatureSource
    item_shape: tuple[int, ...]
    dtype: str
    chunk_rows: int
    n_rows: int
    codec: ChunkCodec
    raw_copy: bool = False

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return (self.chunk_rows,) + self.item_shape

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_rows / self.chunk_rows)

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.item_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def chunks_per_task(self, max_task_bytes: int) -> int:
        """Whole chunks of this feature that fit in one task's byte budget (at least 1)."""
        return max(1, max_task_bytes // max(1, self.chunk_rows * self.row_nbytes))


@dataclass(frozen=True, eq=False)
class ExtraMetadata:
    """Metadata an output gets on top of (and overriding) what it copies from its source.

    ``attrs`` are root attributes (``"section:key"`` -> value), ``logs`` log name -> lines,
    ``tables`` table name -> compound array. Used by the modes (split, join) for sample
    names, new run identifiers and the logs and tables of several sources. ``provenance``
    is what a mode adds to the output's provenance log (its mode, options and details; see
    :func:`dcbulk.provenance.job_provenance`).
    """

    attrs: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ConversionPlan:
    """Everything the writer task needs to produce one output file.

    ``mapping`` (int64 source event indices, or None for all events) is the only array in a
    plan; it enters a dask graph once (a delayed value when large), never per block.
    """

    source: str
    output: str
    n_events: int
    features: tuple[FeaturePlan, ...]
    groups: tuple[BlockGroup, ...]
    codec: ChunkCodec
    mapping: np.ndarray | None = None
    source_info: SourceInfo | None = None
    basin_to_source: bool = False
    options: dict = field(default_factory=dict)
    #: store the source's contours (``events/contour``) with the output's filters
    contour: bool = False
    extra: ExtraMetadata | None = None
    #: empty groups of the source's ``events`` the output keeps (e.g. an empty ``trace``)
    empty_groups: tuple[str, ...] = ()


def make_mapping(mapping, n_events: int) -> np.ndarray | None:
    """Validate an index array or boolean filter and return int64 source indices.

    Raises
    ------
    PlanError
        When the mapping is not 1-D, a boolean filter has the wrong length, or an index
        lies outside ``0..n_events-1``.
    """
    if mapping is None:
        return None
    arr = np.asarray(mapping)
    if arr.ndim != 1:
        raise PlanError(f"mapping must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool:
        if arr.size != n_events:
            raise PlanError(f"boolean filter has {arr.size} entries but the source has "
                            f"{n_events} events")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise PlanError(f"mapping must hold integers or booleans, got dtype {arr.dtype}")
    idx = arr.astype(np.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= n_events):
        raise PlanError(f"mapping indices must lie in 0..{n_events - 1}, got "
                        f"{idx.min()}..{idx.max()}")
    return idx


def select_features(info: SourceInfo, features=None) -> list[str]:
    """Resolve a feature selection against what a source provides.

    ``None`` selects the source's own ``events`` features (``basinmapN`` excluded: basins are
    carried as basins). A group name such as ``"trace"`` selects all its members.
    """
    available = info.features
    if features is None:
        return [f for f in info.own_features if not f.startswith("basinmap")]
    if isinstance(features, str):
        features = [features]
    chosen: list[str] = []
    for feat in features:
        members = [f for f in available if f.startswith(f"{feat}/")]
        if feat in available:
            members = [feat]
        if not members:
            raise PlanError(f"{info.path}: feature '{feat}' not available; available: "
                            f"{', '.join(sorted(available))}")
        chosen.extend(m for m in members if m not in chosen)
    return chosen


def scalar_features(info: SourceInfo) -> list[str]:
    """The scalar features a source provides (own first, then from basins), as dclab-condense.

    Everything one value per event: no image, mask, trace, contour; ``basinmapN`` are
    carried as basins, not features.
    """
    return [name for name, fsrc in info.features.items()
            if not fsrc.data.item_shape and "/" not in name
            and not name.startswith("basinmap")]


def keeps_stored_chunks(src: ChunkCodec | None, want: ChunkCodec) -> bool:
    """True when stored chunks with ``src`` filters are at least as good as ``want``."""
    if src is None or src.compression != want.compression or src.fletcher32 != want.fletcher32:
        return False
    if want.compression is None:
        return True
    return src.level >= want.level


def _copyable(fsrc: FeatureSource, chunk_shape: tuple[int, ...], dtype: np.dtype,
              codec: ChunkCodec) -> bool:
    """Whether ``fsrc``'s stored chunks are output chunks of ``chunk_shape`` and ``dtype``
    whose filters are at least as good as ``codec`` (so they may be copied as stored)."""
    return (fsrc.origin != ENUMERATE and fsrc.rowmap is None
            and fsrc.data.chunks == chunk_shape and dtype == np.dtype(fsrc.data.dtype)
            and keeps_stored_chunks(fsrc.data.chunk_codec(), codec))


def plan_feature(fsrc: FeatureSource, n_rows: int, codec: ChunkCodec, *,
                 mapped: bool) -> FeaturePlan:
    """Plan one output dataset for a feature.

    A mapped ``index`` feature is renumbered ``1..n`` (dclab requires an enumerated index; the
    original numbers stay reachable through ``index_online`` and the basins).
    """
    if mapped and fsrc.feature == "index":
        fsrc = replace(fsrc, origin=ENUMERATE)
    item_shape = fsrc.data.item_shape
    dtype = np.dtype(fsrc.data.dtype)
    if fsrc.feature == "mask" and dtype == bool:
        dtype = np.dtype(np.uint8)
    chunk_rows = best_chunk_rows(item_shape, dtype)
    raw = (not mapped and fsrc.data.shape[0] == n_rows
           and _copyable(fsrc, (chunk_rows,) + item_shape, dtype, codec))
    return FeaturePlan(name=fsrc.feature, source=fsrc, item_shape=item_shape, dtype=dtype.str,
                       chunk_rows=chunk_rows, n_rows=n_rows,
                       codec=fsrc.data.chunk_codec() if raw else codec, raw_copy=raw)


def plan_stored_prefix(fp: FeaturePlan, fsrc: FeatureSource, chunks_per_block: int
                       ) -> tuple[FeaturePlan, int] | None:
    """The leading chunks of ``fp`` copied as stored from ``fsrc``, whose rows are its first.

    For an output that begins with another file's rows, unchanged (the first input of a
    join): the whole chunks of ``fsrc`` are its first chunks when they have ``fp``'s chunk
    shape, dtype and filters at least as good. Returns a raw-copy plan of those chunks and
    the chunks per block of the whole feature -- the number in ``chunks_per_block / 4 ..
    chunks_per_block`` whose whole blocks cover most of them (blocks follow one grid) -- or
    None when no whole block lines up.
    """
    if not _copyable(fsrc, fp.chunk_shape, np.dtype(fp.dtype), fp.codec):
        return None
    whole = min(fsrc.data.shape[0], fp.n_rows) // fp.chunk_rows
    per_block = max(range(max(1, chunks_per_block // 4), chunks_per_block + 1),
                    key=lambda c: (whole // c * c, c))
    n_copy = whole // per_block * per_block
    if not n_copy:
        return None
    return replace(fp, source=fsrc, n_rows=n_copy * fp.chunk_rows,
                   codec=fsrc.data.chunk_codec(), raw_copy=True), per_block


@dataclass(frozen=True)
class BlockGroup:
    """Output features computed together, block by block (one dask array, one task a block).

    A group is one feature, or several scalar features with the same chunk rows packed into
    one record array (so a block of all scalars is one task). Blocks are whole output
    chunks: ``chunks_per_block`` of them, the last block possibly shorter.
    """

    features: tuple[FeaturePlan, ...]
    chunks_per_block: int

    @property
    def chunk_rows(self) -> int:
        return self.features[0].chunk_rows

    @property
    def n_rows(self) -> int:
        return self.features[0].n_rows

    @property
    def raw_copy(self) -> bool:
        return self.features[0].raw_copy

    @property
    def block_rows(self) -> int:
        return self.chunk_rows * self.chunks_per_block

    def block_chunks(self) -> tuple[int, ...]:
        """The dask chunks along axis 0 (rows per block)."""
        n, step = self.n_rows, self.block_rows
        return tuple(min(step, n - s) for s in range(0, n, step)) or (0,)

    @property
    def nbytes(self) -> int:
        return self.n_rows * sum(fp.row_nbytes for fp in self.features)


def plan_groups(features: tuple[FeaturePlan, ...], max_task_bytes: int = DEFAULT_TASK_BYTES
                ) -> tuple[BlockGroup, ...]:
    """Group the features of an output into dask arrays with blocks of about ``max_task_bytes``.

    Scalar features that are encoded (not copied as stored) and share their chunk rows are
    packed into one group; every other feature is a group of its own.
    """
    if max_task_bytes <= 0:
        raise ValueError(f"max_task_bytes must be positive, got {max_task_bytes}")
    packed: dict[int, list[FeaturePlan]] = {}
    alone: list[tuple[FeaturePlan, ...]] = []
    for fp in features:
        if not fp.item_shape and not fp.raw_copy and fp.n_rows:
            packed.setdefault(fp.chunk_rows, []).append(fp)
        else:
            alone.append((fp,))
    groups = []
    for fps in [tuple(v) for v in packed.values()] + alone:
        chunk_bytes = max(1, fps[0].chunk_rows * sum(fp.row_nbytes for fp in fps))
        per_block = max(1, max_task_bytes // chunk_bytes)
        if fps[0].n_rows:
            per_block = min(per_block, fps[0].n_chunks)
        groups.append(BlockGroup(fps, per_block))
    return tuple(groups)


def plan_conversion(info: SourceInfo, output: str, *, features=None, mapping=None,
                    codec: ChunkCodec, max_task_bytes: int = DEFAULT_TASK_BYTES,
                    basin_to_source: bool = False, options: dict | None = None
                    ) -> ConversionPlan:
    """Plan the conversion of one source file into one output file.

    Parameters
    ----------
    info
        Description of the source (:func:`~dcbulk.read.inspect.inspect_source`).
    output
        Path of the output file.
    features
        Feature names (``None``: the source's own features).
    mapping
        Integer indices or a boolean filter over source events (``None``: all events).
    codec
        Filters of the output datasets.
    max_task_bytes
        Uncompressed bytes per worker task.
    basin_to_source
        Also store a file basin (with the mapping) that points back to the source.
    options
        Free-form options recorded in the provenance log.
    """
    idx = make_mapping(mapping, info.n_events)
    n_rows = info.n_events if idx is None else int(idx.size)
    if isinstance(features, str):
        features = [features]
    # contours are one dataset per event, not a FeaturePlan: only when selected (or all)
    contour = info.has_contour and (features is None or "contour" in features)
    if features is not None and info.has_contour:
        features = [f for f in features if f != "contour"]
        if not features and contour:
            raise PlanError(f"{info.path}: 'contour' alone is not a convertible feature set")
    names = select_features(info, features)
    fplans = tuple(plan_feature(info.features[name], n_rows, codec, mapped=idx is not None)
                   for name in names)
    return ConversionPlan(
        source=info.path, output=str(output), n_events=n_rows, features=fplans,
        groups=plan_groups(fplans, max_task_bytes), codec=codec, mapping=idx, source_info=info,
        basin_to_source=basin_to_source, options=dict(options or {}), contour=contour,
        empty_groups=info.empty_groups if features is None else ())
