"""The lookup keys of kept items, written off the request path (``service.store.kept``,
``SqlStore.index_items``), on SQLite and PostgreSQL: a late label finds its item whether or not
its batch was indexed yet, the newest item of an id wins across both, concurrent indexers write
each key once, and retention never leaves keys behind."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import xentcore as xc
from service.recording import kept_batch
from service.store.kept import index_pending
from service.store.sql import SqlStore
from xentcore.summary import summarize
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch


def _record(store: SqlStore, stream: str, n: int, ids: list[Any], at: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, 3))
    batch = check_batch(z, None, ScoreOptions(input_type="logits"))
    result = xc.score(z, input_type="logits")
    kept = kept_batch(batch, result, ids, audit=None, audit_rate=None, max_classes=1024)
    assert store.record(stream=stream, task=result.task, summary=summarize(result), at=at,
                        kept=kept)  # fmt: skip


def _count(store: SqlStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _keys(store: SqlStore) -> list[tuple[str, int, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT item_id, batch_id, idx FROM xent_item_keys ORDER BY 1, 2, 3")
        ).all()
    return [(str(k), int(b), int(i)) for k, b, i in rows]


def test_recording_queues_the_batch_and_writes_no_key(store: SqlStore) -> None:
    _record(store, "s", 4, ["a", "b", "c", "d"], 1000.0)
    assert _count(store, "xent_kept_pending") == 1
    assert _count(store, "xent_item_keys") == 0
    assert store.index_items() == 4
    assert _count(store, "xent_kept_pending") == 0
    assert [k for k, _, _ in _keys(store)] == ["s:a", "s:b", "s:c", "s:d"]
    assert store.index_items() == 0


def test_a_label_finds_its_item_before_and_after_indexing(store: SqlStore) -> None:
    _record(store, "s", 3, [7, "7", "x"], 1000.0)
    before = store.label("s", [7, "7", "nope"], [0, 1, 2])
    assert (before.matched, before.replaced, before.unknown) == (2, 0, 1)
    store.index_items()
    after = store.label("s", [7, "7", "nope"], [0, 1, 2])
    assert (after.matched, after.replaced, after.unknown) == (2, 2, 1)
    items, _ = store.items("s", labeled=True)
    assert sorted(str(it["id"]) for it in items) == ["7", "7"]


def test_the_newest_item_wins_across_indexed_and_queued_batches(store: SqlStore) -> None:
    _record(store, "s", 2, ["dup", "old"], 1000.0, seed=1)
    store.index_items()  # the first batch is indexed, the second stays queued
    _record(store, "s", 3, ["x", "dup", "dup"], 2000.0, seed=2)
    assert _count(store, "xent_kept_pending") == 1
    counts = store.label("s", ["dup"], [1])
    assert counts.matched == 1
    items, _ = store.items("s", labeled=True)
    assert [(it["id"], it["time"]) for it in items] == [("dup", 2000.0)]
    # the same once both are indexed: the label replaces the one on the same (newest) item
    store.index_items()
    again = store.label("s", ["dup"], [0])
    assert (again.matched, again.replaced) == (1, 1)
    items, _ = store.items("s", labeled=True)
    assert len(items) == 1 and items[0]["time"] == 2000.0 and items[0]["label"] == 0


def test_other_streams_queued_batches_are_not_matched(store: SqlStore) -> None:
    _record(store, "one", 2, ["a", "b"], 1000.0)
    _record(store, "two", 2, ["a", "c"], 1000.0)
    counts = store.label("two", ["a", "b", "c"], [0, 0, 0])
    assert (counts.matched, counts.unknown, counts.unknown_ids) == (2, 1, ["b"])


def test_index_items_stops_near_its_budget(store: SqlStore) -> None:
    for i in range(4):
        _record(store, "s", 10, [f"{i}-{j}" for j in range(10)], 1000.0 + i)
    assert store.index_items(max_items=15) == 20  # whole batches, one per transaction
    assert _count(store, "xent_kept_pending") == 2
    assert store.index_items() == 20
    assert _count(store, "xent_item_keys") == 40


def test_concurrent_indexers_write_each_key_once(store: SqlStore) -> None:
    for i in range(12):
        _record(store, "s", 50, [f"{i}-{j}" for j in range(50)], 1000.0 + i)
    errors: list[BaseException] = []
    done: list[int] = []

    def run() -> None:
        try:
            done.append(store.index_items())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(done) == 600
    assert _count(store, "xent_item_keys") == 600
    assert _count(store, "xent_kept_pending") == 0


def test_retention_removes_queued_and_indexed_batches_alike(store: SqlStore) -> None:
    _record(store, "s", 3, ["a", "b", "c"], 1000.0)
    store.index_items()
    _record(store, "s", 3, ["d", "e", "f"], 1001.0)
    _record(store, "s", 3, ["g", "h", "i"], 5000.0)
    done = store.expire(now=5000.0, retention=1e9, rollup_retention=1e9, item_retention=100.0)
    assert done.items == 6
    assert _count(store, "xent_kept") == 1
    assert _count(store, "xent_kept_pending") == 1
    assert _count(store, "xent_item_keys") == 0
    assert store.label("s", ["a", "d", "g"], [0, 0, 0]).matched == 1


def test_retention_waits_for_an_indexer_holding_the_batch(url: str, store: SqlStore) -> None:
    """PostgreSQL: retention locks the batches it deletes, so keys an indexer is adding at
    that moment are deleted with them (never left behind pointing at nothing)."""
    if not url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's (SQLite runs one writer at a time)")
    _record(store, "s", 5, list("abcde"), 1000.0)
    finished = threading.Event()
    with store.engine.begin() as conn:
        assert index_pending(conn) == 5  # the keys are written, not yet committed

        def expire() -> None:
            store.expire(now=9000.0, retention=1e9, rollup_retention=1e9, item_retention=10.0)
            finished.set()

        worker = threading.Thread(target=expire)
        worker.start()
        time.sleep(0.5)
        assert not finished.is_set(), "retention must wait for the indexer's transaction"
    worker.join(timeout=30)
    assert finished.is_set()
    assert _count(store, "xent_item_keys") == 0
    assert _count(store, "xent_kept") == 0


def test_an_indexer_skips_a_batch_that_a_labels_request_holds(url: str, store: SqlStore) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    _record(store, "s", 2, ["a", "b"], 1000.0)
    _record(store, "s", 2, ["c", "d"], 1001.0)
    with store.engine.begin() as conn:
        conn.execute(sa.text("SELECT batch_id FROM xent_kept WHERE n = 2 ORDER BY batch_id "
                             "LIMIT 1 FOR UPDATE"))  # fmt: skip
        assert store.index_items() == 2  # the other batch, without waiting
    assert store.index_items() == 2
    assert _count(store, "xent_item_keys") == 4
