"""Blocks of the writers of an in-process run, computed by its block pool
(dcbulk.engine.blockpool)."""
from __future__ import annotations

import os
import threading
import time

import h5py
import numpy as np
import pytest

import dcbulk
import dcbulk.modes
from dcbulk.bulk import filetask
from dcbulk.bulk.inprocess import InProcessClient
from dcbulk.engine import arrays
from dcbulk.engine.blockpool import BlockPool
from dcbulk.errors import DcbulkError
from fixtures import small_rtdc
from helpers import assert_features_equal, stored_chunks


def test_an_in_process_run_spreads_a_files_blocks_over_threads(tmp_path, monkeypatch, client):
    """One file's blocks are read, decoded and encoded by several threads of dcbulk's
    process, and the chunks stored are those a cluster's workers store."""
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 300, seed=3, compression="gzip:1",
                     with_traces=True)
    monkeypatch.setattr(filetask, "DEFAULT_TASK_BYTES", 64 * 1024)  # many blocks
    threads, real = set(), arrays.encode_rows

    def spy(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)
    monkeypatch.setattr(arrays, "encode_rows", spy)
    here = dcbulk.convert_archive(tmp_path / "src", tmp_path / "here")
    assert here.ok and here.dashboard is None  # made in this process
    assert len({t for t in threads if t.startswith("dcbulk-block")}) >= min(2, os.cpu_count())
    there = dcbulk.convert_archive(tmp_path / "src", tmp_path / "there", client=client)
    assert there.ok
    assert_features_equal(src, tmp_path / "here" / "a.rtdc")
    assert stored_chunks(tmp_path / "here" / "a.rtdc") == stored_chunks(
        tmp_path / "there" / "a.rtdc")


def test_the_window_bounds_the_blocks_of_every_writer():
    pool, window = BlockPool(2, window=3), 3
    lock, count = threading.Lock(), {"held": 0, "peak": 0}

    def job():
        with lock:  # a slot is taken from the job's start until its writer has it
            count["held"] += 1
            count["peak"] = max(count["peak"], count["held"])
        time.sleep(0.002)

    def writer(results: list) -> None:
        for tag, _ in pool.run((i, job) for i in range(40)):
            with lock:
                count["held"] -= 1
            time.sleep(0.003)  # storing
            results.append(tag)

    results = [[], []]
    writers = [threading.Thread(target=writer, args=(r,)) for r in results]
    for w in writers:
        w.start()
    for w in writers:
        w.join(30)
    pool.close()
    assert [sorted(r) for r in results] == [list(range(40))] * 2
    assert 2 <= count["peak"] <= window


def test_a_failing_block_fails_its_writer_after_the_blocks_in_flight_end():
    pool, running = BlockPool(2, window=4), []

    def job(k):
        def run():
            running.append(k)
            time.sleep(0.05)
            running.remove(k)
            if k == 1:
                raise ValueError("bad block")
        return run

    with pytest.raises(ValueError, match="bad block"):
        list(pool.run((k, job(k)) for k in range(20)))
    assert running == []  # none left reading the writer's files
    # every slot came back
    assert sorted(t for t, _ in pool.run((k, lambda: None) for k in range(10))) == list(range(10))
    pool.close()


def test_closing_the_pool_stops_its_writers():
    pool = BlockPool(1, window=2)
    blocks = pool.run((k, lambda: time.sleep(0.01)) for k in range(1000))
    next(blocks)
    pool.close()
    with pytest.raises(DcbulkError, match="stopped"):
        list(blocks)


def test_closing_the_pool_stops_a_writer_whose_blocks_are_queued():
    """Blocks queued behind a running one are dropped by close(); the writer does not wait
    for them (it did, forever: Ctrl-C of an in-process run of a large file never exited)."""
    pool = BlockPool(1, window=6)
    blocks = pool.run((k, lambda: time.sleep(0.2)) for k in range(100))
    next(blocks)  # one block running, the others queued in the pool
    pool.close()
    outcome = []

    def drain():
        try:
            list(blocks)
        except DcbulkError as exc:
            outcome.append(str(exc))
    writer = threading.Thread(target=drain, daemon=True)
    writer.start()
    writer.join(10)
    assert outcome == ["the run was stopped"]


def test_a_lone_outputs_pool_takes_its_hosts_threads_within_the_memory_limit():
    """All of one host's workers' threads, none when the cluster has another host (its
    tasks then spread the blocks), fewer when the window would pass half the memory limit."""
    from dcbulk.engine.blockpool import host_threads
    here = {"tcp://10.0.0.1:4001": 2, "tcp://10.0.0.1:4002": 2}
    assert host_threads(here, "10.0.0.1", None) == 4
    assert host_threads({**here, "tcp://10.0.0.2:4001": 4}, "10.0.0.1", None) == 0
    window_of_6 = 2 * 3 * 6 * 2**20  # 6 blocks of 1 MiB, read, decoded and encoded, x 2
    assert host_threads(here, "10.0.0.1", window_of_6, block_bytes=2**20) == 2


def test_a_lone_output_on_a_one_host_cluster_is_made_by_its_writers_threads(tmp_path,
                                                                           client):
    """``dcbulk.convert`` and a run of one file have the cluster to themselves: the writer's
    worker computes the blocks with its host's threads, so no block task runs on another
    worker (whose encoded blocks would travel pickled), and the chunks stored are those the
    cluster's block tasks store."""
    from distributed import get_task_stream

    from dcbulk.codec import parse_compression
    from dcbulk.engine.api import submit_conversion
    from dcbulk.plan import plan_conversion
    from dcbulk.read.inspect import inspect_source
    src = small_rtdc(tmp_path / "src" / "a.rtdc", 300, seed=5, compression="gzip:1",
                     with_traces=True)
    other = small_rtdc(tmp_path / "other.rtdc", 100, seed=6, compression="gzip:1",
                       with_traces=True)
    with get_task_stream(client) as ts:
        assert dcbulk.convert(src, tmp_path / "lone.rtdc", client=client).events == 300
        assert dcbulk.convert_archive(tmp_path / "src", tmp_path / "run", client=client).ok
        assert dcbulk.modes.join([src, other], tmp_path / "joined.rtdc", client=client).ok
    keys = sorted(str(t["key"]) for t in ts.data)
    assert len(keys) == 3 and keys[0].startswith("dcbulk-file-") \
        and keys[1].startswith("dcbulk-file-") and keys[2].startswith("dcbulk-write-"), keys
    with get_task_stream(client) as ts:  # a writer not alone: its blocks are tasks
        submit_conversion(client, plan_conversion(inspect_source(src),
                                                  str(tmp_path / "tasks.rtdc"),
                                                  codec=parse_compression("zstd:5"))).result()
    assert len(ts.data) > 1
    assert_features_equal(src, tmp_path / "lone.rtdc")
    with h5py.File(src) as h5, h5py.File(other) as h5b:
        parts = [h5["events/image"][:], h5b["events/image"][:]]
    with h5py.File(tmp_path / "joined.rtdc") as h5:  # in the order of the measurements
        image = h5["events/image"][:]
        assert any(np.array_equal(image, np.concatenate(p)) for p in (parts, parts[::-1]))
        np.testing.assert_array_equal(h5["events/index"][:], np.arange(1, 401))
    chunks = stored_chunks(tmp_path / "tasks.rtdc")
    assert stored_chunks(tmp_path / "lone.rtdc") == chunks
    assert stored_chunks(tmp_path / "run" / "a.rtdc") == chunks


@pytest.mark.parametrize("make", [BlockPool, InProcessClient])
def test_a_pools_threads_run_before_its_first_block(make):
    """Every thread of an in-process run's pools (files, blocks) is started when the pool
    is made, none by a first file or block: ThreadPoolExecutor.submit starts a thread while
    holding a lock of every executor of the process, in the middle of the other threads'
    HDF5 calls (a CI run hung there)."""
    before = set(threading.enumerate())
    pool = make(3)
    try:
        made = set(threading.enumerate()) - before
        assert len(made) == 3 * (1 + (make is InProcessClient))
        if make is BlockPool:
            assert sorted(tag for tag, _ in pool.run((k, lambda: None) for k in range(5))
                          ) == [0, 1, 2, 3, 4]
        else:
            assert [pool.submit(abs, -k, key=str(k)).result() for k in range(5)] == [
                0, 1, 2, 3, 4]
        assert set(threading.enumerate()) - before == made
    finally:
        pool.close()
