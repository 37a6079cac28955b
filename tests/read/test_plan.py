"""Planning is pure: layouts from descriptions, no files, no dask."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from dcbulk.codec import ChunkCodec
from dcbulk.errors import PlanError
from dcbulk.plan import (BlockGroup, best_chunk_rows, make_mapping, plan_conversion, plan_feature,
                         plan_groups, plan_stored_prefix, select_features)
from dcbulk.read.inspect import DatasetRef, FeatureSource, SourceInfo

ZSTD5 = ChunkCodec("zstd", 5, True)


def _ref(name, shape, dtype, chunks=None, codec=ZSTD5):
    return DatasetRef(path="/data/a.rtdc", name=f"events/{name}", shape=shape,
                      dtype=np.dtype(dtype).str, chunks=chunks,
                      codec=None if codec is None else codec.to_dict())


def _info(n=2500, chunks_ok=True):
    feats = {
        "deform": FeatureSource("deform", _ref("deform", (n,), "f8", (1000,))),
        "image": FeatureSource("image", _ref("image", (n, 80, 250), "u1",
                                             (52, 80, 250) if chunks_ok else (10, 80, 250))),
        "trace/fl1_raw": FeatureSource("trace/fl1_raw", _ref("trace/fl1_raw", (n, 177), "i2",
                                                             (1000, 177))),
        "basinmap0": FeatureSource("basinmap0", _ref("basinmap0", (n,), "u8", (1000,))),
    }
    return SourceInfo(path="/data/a.rtdc", n_events=n, identifier="abc", features=feats,
                      own_features=tuple(feats))


def test_best_chunk_rows_matches_dcnum_rule():
    assert best_chunk_rows((), np.float64) == 1000
    assert best_chunk_rows((80, 250), np.uint8) == 52
    assert best_chunk_rows((80, 400), np.uint8) == 32
    assert best_chunk_rows((2000, 2000), np.uint8) == 10


def test_make_mapping_forms_and_errors():
    assert make_mapping(None, 5) is None
    np.testing.assert_array_equal(make_mapping(np.array([True, False, True]), 3), [0, 2])
    np.testing.assert_array_equal(make_mapping([4, 0, 4], 5), [4, 0, 4])
    with pytest.raises(PlanError, match="boolean filter has 2 entries"):
        make_mapping(np.array([True, False]), 3)
    with pytest.raises(PlanError, match=r"0\.\.4"):
        make_mapping([0, 5], 5)
    with pytest.raises(PlanError, match="1-D"):
        make_mapping(np.zeros((2, 2), int), 5)
    with pytest.raises(PlanError, match="integers or booleans"):
        make_mapping([0.5], 5)


def test_select_features_defaults_groups_and_unknown():
    info = _info()
    assert select_features(info) == ["deform", "image", "trace/fl1_raw"]
    assert select_features(info, ["trace"]) == ["trace/fl1_raw"]
    assert select_features(info, "image") == ["image"]
    with pytest.raises(PlanError, match="'volume' not available"):
        select_features(info, ["volume"])


def test_plan_feature_raw_copy_only_when_layout_and_filters_allow():
    info = _info()
    fp = plan_feature(info.features["image"], 2500, ZSTD5, mapped=False)
    assert fp.raw_copy and fp.chunk_shape == (52, 80, 250) and fp.n_chunks == 49
    # mapped data must be re-encoded
    assert not plan_feature(info.features["image"], 2500, ZSTD5, mapped=True).raw_copy
    # other chunking must be re-encoded
    bad = _info(chunks_ok=False)
    assert not plan_feature(bad.features["image"], 2500, ZSTD5, mapped=False).raw_copy
    # a higher level is kept as stored, a lower one is not
    hi = FeatureSource("deform", _ref("deform", (2500,), "f8", (1000,), ChunkCodec("zstd", 9)))
    fp = plan_feature(hi, 2500, ZSTD5, mapped=False)
    assert fp.raw_copy and fp.codec.level == 9
    lo = FeatureSource("deform", _ref("deform", (2500,), "f8", (1000,), ChunkCodec("zstd", 1)))
    fp = plan_feature(lo, 2500, ZSTD5, mapped=False)
    assert not fp.raw_copy and fp.codec == ZSTD5
    unknown = FeatureSource("deform", _ref("deform", (2500,), "f8", (1000,), None))
    assert not plan_feature(unknown, 2500, ZSTD5, mapped=False).raw_copy


def test_plan_stored_prefix_takes_whole_blocks_of_the_first_rows_chunks():
    first = _info().features["image"]  # 2500 events in chunks of 52: 48 whole ones
    joined = plan_feature(first, 6000, ZSTD5, mapped=False)  # longer: encoded
    assert not joined.raw_copy
    copy, per_block = plan_stored_prefix(joined, first, 16)
    assert (copy.raw_copy, copy.source, copy.name, copy.n_chunks, per_block) == \
        (True, first, "image", 48, 16)
    assert plan_stored_prefix(joined, first, 10)[1] == 8  # 6 blocks of 8 cover all 48
    prime = FeatureSource("image", _ref("image", (2460, 80, 250), "u1", (52, 80, 250)))
    copy, per_block = plan_stored_prefix(joined, prime, 20)  # 47 whole chunks: 3 blocks of 15
    assert (copy.n_chunks, per_block) == (45, 15)
    short = FeatureSource("image", _ref("image", (51, 80, 250), "u1", (52, 80, 250)))
    assert plan_stored_prefix(joined, short, 16) is None  # no whole chunk
    other = _info(chunks_ok=False).features["image"]
    assert plan_stored_prefix(joined, other, 16) is None
    low = FeatureSource("image", _ref("image", (2500, 80, 250), "u1", (52, 80, 250),
                                      ChunkCodec("zstd", 3)))
    assert plan_stored_prefix(joined, low, 16) is None


def test_plan_groups_cover_every_chunk_once_and_respect_budget():
    info = _info(n=20_000)
    feats = dict(info.features, area_um=FeatureSource("area_um", _ref("area_um", (20_000,), "f4",
                                                                      (1000,))))
    info = SourceInfo(path=info.path, n_events=20_000, identifier="abc", features=feats,
                      own_features=tuple(feats))
    fps = tuple(plan_feature(info.features[f], 20_000, ZSTD5, mapped=True)
                for f in ("deform", "image", "trace/fl1_raw", "area_um"))
    budget = 4 * 1024**2
    groups = plan_groups(fps, budget)
    assert all(isinstance(g, BlockGroup) for g in groups)
    # every feature in exactly one group; the scalars share one record array
    names = [fp.name for g in groups for fp in g.features]
    assert sorted(names) == sorted(fp.name for fp in fps)
    (scalars,) = [g for g in groups if len(g.features) > 1]
    assert {fp.name for fp in scalars.features} == {"deform", "area_um"}
    for g in groups:
        # blocks are whole output chunks and together cover every row once
        assert sum(g.block_chunks()) == 20_000
        assert all(c % g.chunk_rows == 0 for c in g.block_chunks()[:-1])
        # a block exceeds the budget only when it holds one single chunk
        row_bytes = sum(fp.row_nbytes for fp in g.features)
        assert g.block_rows * row_bytes <= budget or g.chunks_per_block == 1
    with pytest.raises(ValueError):
        plan_groups(fps, 0)


def test_plan_conversion_is_picklable_and_consistent():
    info = _info()
    plan = plan_conversion(info, "/out/a.rtdc", mapping=np.arange(0, 2500, 2), codec=ZSTD5)
    assert plan.n_events == 1250
    assert [fp.name for fp in plan.features] == ["deform", "image", "trace/fl1_raw"]
    assert all(not fp.raw_copy for fp in plan.features)
    back = pickle.loads(pickle.dumps(plan))
    np.testing.assert_array_equal(back.mapping, plan.mapping)
    assert back.features == plan.features and back.groups == plan.groups
    for obj in (plan.features[0], plan.groups[0], info, ZSTD5):
        assert pickle.loads(pickle.dumps(obj)) == obj
