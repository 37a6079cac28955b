"""Planning is pure: recipes from descriptions, no files, no dask."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from dcbulk.codec import ChunkCodec
from dcbulk.errors import PlanError
from dcbulk.plan import (BlockRecipe, TaskRecipe, best_chunk_rows, block_events, make_mapping,
                         plan_conversion, plan_feature, plan_tasks, select_features)
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


def test_plan_tasks_cover_every_chunk_once_and_respect_budget():
    info = _info(n=20_000)
    fps = tuple(plan_feature(info.features[f], 20_000, ZSTD5, mapped=True)
                for f in ("deform", "image", "trace/fl1_raw"))
    budget = 4 * 1024**2
    tasks = plan_tasks(fps, budget)
    seen = {fp.name: [] for fp in fps}
    for task in tasks:
        assert isinstance(task, TaskRecipe)
        # a task exceeds the budget only when it holds one single block
        assert task.nbytes <= budget or len(task.blocks) == 1
        for b in task.blocks:
            seen[b.feature].extend(range(b.chunk_start, b.chunk_stop))
    for fp in fps:
        assert seen[fp.name] == list(range(fp.n_chunks))
    # the small features are packed together into one task
    small = [t for t in tasks if any(b.feature == "deform" for b in t.blocks)]
    assert len(small) == 1 and {b.feature for b in small[0].blocks} >= {"deform"}
    with pytest.raises(ValueError):
        plan_tasks(fps, 0)


def test_block_events_contiguous_or_mapped():
    info = _info()
    fp = plan_feature(info.features["deform"], 2500, ZSTD5, mapped=False)
    assert block_events(fp, BlockRecipe("deform", 1, 3), None) == slice(1000, 2500)
    mapping = np.arange(2500)[::-1].copy()
    np.testing.assert_array_equal(block_events(fp, BlockRecipe("deform", 2, 3), mapping),
                                  mapping[2000:2500])


def test_plan_conversion_is_picklable_and_consistent():
    info = _info()
    plan = plan_conversion(info, "/out/a.rtdc", mapping=np.arange(0, 2500, 2), codec=ZSTD5)
    assert plan.n_events == 1250
    assert [fp.name for fp in plan.features] == ["deform", "image", "trace/fl1_raw"]
    assert all(not fp.raw_copy for fp in plan.features)
    back = pickle.loads(pickle.dumps(plan))
    np.testing.assert_array_equal(back.mapping, plan.mapping)
    assert back.features == plan.features and back.tasks == plan.tasks
    for obj in (plan.features[0], plan.tasks[0], plan.tasks[0].blocks[0], info, ZSTD5):
        assert pickle.loads(pickle.dumps(obj)) == obj
