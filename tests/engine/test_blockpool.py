"""Blocks of the writers of an in-process run, computed by its block pool
(dcbulk.engine.blockpool)."""
from __future__ import annotations

import os
import threading
import time

import pytest

import dcbulk
from dcbulk.bulk import filetask
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
