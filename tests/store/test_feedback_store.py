"""Kept items and label sums in the store (API.md section 9), on SQLite and PostgreSQL:
concurrent writers keep the label rollups equal to the per-batch label sums, retention removes
what is past it, and late labels land in the bucket where the item was scored."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import xentcore as xc
from service.recording import kept_batch
from service.store.kept import Kept
from service.store.sql import SqlStore
from service.store.windows import plan
from xentcore.feedback import LABEL_SUMS
from xentcore.summary import summarize
from xentcore.types import ScoreOptions
from xentcore.validate import check_batch

COUNTS = [n for n in LABEL_SUMS if n not in ("lab_loss_sum",) and "conf" not in n]


def _kept(
    z: np.ndarray, y: np.ndarray | None, ids: list[Any], audit: float = 0.0
) -> tuple[Any, Kept]:
    batch = check_batch(z, y, ScoreOptions(input_type="logits"))
    result = xc.score(z, y, input_type="logits")
    drawn = np.random.default_rng(len(ids)).random(len(ids)) < audit
    return result, kept_batch(
        batch, result, ids, audit=drawn, audit_rate=audit or None, max_classes=1024
    )


def _record(store: SqlStore, stream: str, z: np.ndarray, y: np.ndarray | None, ids: list[Any],
            at: float, audit: float = 0.0) -> None:  # fmt: skip
    result, kept = _kept(z, y, ids, audit)
    assert store.record(
        stream=stream, task=result.task, summary=summarize(result), at=at, kept=kept
    )


def _table(store: SqlStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def _rollups_match_batches(store: SqlStore, stream: str) -> None:
    """Every rollup level's label sums equal the sum of the per-batch label rows."""
    cols = ", ".join(f"sum({c})" for c in LABEL_SUMS)
    raw = _table(store, f"SELECT {cols} FROM xent_label_batches WHERE stream = :s", s=stream)[0]
    for level in (0, 86400, 3600, 60):
        got = _table(
            store,
            f"SELECT {cols} FROM xent_label_rollups WHERE stream = :s AND level = :l",
            s=stream,
            l=level,
        )[0]
        for name, a, b in zip(LABEL_SUMS, raw, got, strict=True):
            if name in COUNTS:
                assert int(a or 0) == int(b or 0), (level, name, a, b)
            else:
                assert float(b or 0) == pytest.approx(float(a or 0), rel=1e-9, abs=1e-9), (
                    level, name, a, b,
                )  # fmt: skip


def test_concurrent_records_and_labels_keep_rollups_exact(store: SqlStore) -> None:
    rng = np.random.default_rng(0)
    base = 1_700_000_000.0
    batches = [(rng.normal(0, 2, (50, 3)), rng.integers(0, 3, 50)) for _ in range(8)]
    errors: list[BaseException] = []

    def recorder(i: int) -> None:
        try:
            z, y = batches[i]
            labels = y if i % 2 == 0 else None
            _record(store, "c", z, labels, [f"{i}-{j}" for j in range(50)], base + 37 * i, 0.5)
        except BaseException as exc:
            errors.append(exc)

    def labeller(i: int) -> None:
        try:
            ids = [f"{i}-{j}" for j in range(50)]
            for _ in range(3):
                store.label("c", ids, rng.integers(0, 3, 50).tolist())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=recorder, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    threads = [threading.Thread(target=labeller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _rollups_match_batches(store, "c")
    # the calibration set counts each item once, however often it was relabelled: the items
    # of the labelled (even) batches and the audited items of the others
    n = _table(
        store,
        "SELECT sum(lab_n), sum(rev_n) FROM xent_label_rollups WHERE stream = 'c' AND level = 0",
    )
    audited, _ = store.items("c", audit=True, limit=1000)
    odd_audited = sum(int(it["id"].split("-")[0]) % 2 == 1 for it in audited)
    assert int(n[0][0]) == 200 + odd_audited
    assert int(n[0][0]) + int(n[0][1]) == 400


def test_late_labels_land_in_the_bucket_where_the_item_was_scored(store: SqlStore) -> None:
    z = np.array([[2.0, 0.0], [0.0, 2.0]])
    t0 = 1_700_000_000.0  # a whole hour? no matter: buckets of 1 h are aligned to the epoch
    _record(store, "b", z, None, ["x", "y"], t0, audit=1.0)
    _record(store, "b", z, None, ["x2", "y2"], t0 + 7200, audit=1.0)
    store.label("b", ["x", "y2"], [0, 0])
    width = 3600.0
    window = plan(t0 - 3600, t0 + 3 * 3600, width, raw_horizon=0.0)
    sums = store.sums("b", window.pieces, width, labels=True)
    lab_n = sums.values[:, LABEL_SUMS.index("lab_n")]
    assert sums.keys.tolist() == [int(t0 // 3600), int((t0 + 7200) // 3600)]
    assert lab_n.tolist() == [1.0, 1.0]


def test_retention_removes_items_and_label_sums(store: SqlStore) -> None:
    old, new = 1_000_000.0, 2_000_000.0
    z = np.array([[2.0, 0.0]])
    _record(store, "r", z, np.array([0]), ["old"], old)
    _record(store, "r", z, np.array([0]), ["new"], new)
    done = store.expire(now=new + 10, retention=100, rollup_retention=10**9, item_retention=100)
    assert done.items == 1
    items, _ = store.items("r")
    assert [it["id"] for it in items] == ["new"]
    assert store.label("r", ["old"], [1]).unknown == 1
    left = _table(store, "SELECT count(*) FROM xent_label_batches WHERE stream = 'r'")
    assert left[0][0] == 1
    store.expire(now=new + 10**6, retention=100, rollup_retention=100, item_retention=100)
    assert (
        _table(store, "SELECT count(*) FROM xent_label_rollups WHERE stream = 'r' AND level > 0")[
            0
        ][0]
        == 0
    )


def test_the_same_labels_sent_at_once_count_once(store: SqlStore) -> None:
    """Concurrent retries of one labels request: each item's label counts once."""
    z = np.random.default_rng(4).normal(0, 1, (300, 3))
    ids = [f"r{i}" for i in range(300)]
    _record(store, "retry", z, None, ids, 1_700_000_000.0, audit=1.0)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            store.label("retry", ids, [1] * 300)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    n = _table(
        store, "SELECT sum(lab_n) FROM xent_label_rollups WHERE stream = 'retry' AND level = 0"
    )
    assert int(n[0][0]) == 300
    _rollups_match_batches(store, "retry")


def test_kept_items_outlive_their_raw_batch_without_clashing(store: SqlStore) -> None:
    """Raw rows expire before kept items (XENT_RETENTION < XENT_ITEM_RETENTION): new batches
    still record (SQLite would hand out the expired batch's id again) and old items still
    take labels."""
    z = np.array([[2.0, 0.0], [0.0, 2.0]])
    _record(store, "o", z, None, ["a", "b"], 1_000_000.0, audit=1.0)
    store.expire(now=2_000_000.0, retention=10, rollup_retention=10**9, item_retention=10**9)
    _record(store, "o", z, None, ["c", "d"], 2_000_000.0, audit=1.0)
    _record(store, "o", z, None, ["e", "f"], 2_000_001.0, audit=1.0)
    counts = store.label("o", ["a", "c", "e"], [0, 1, 0])
    assert counts.matched == 3 and counts.unknown == 0
    items, _ = store.items("o", limit=10)
    assert [it["id"] for it in items] == ["f", "e", "d", "c", "b", "a"]


def test_ids_with_nul_are_kept_and_found(store: SqlStore) -> None:
    z = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    ids = ["a\x00b", "a\\0b", "plain"]
    _record(store, "nul", z, None, ids, 1_700_000_000.0, audit=1.0)
    counts = store.label("nul", ["a\x00b", "a\\0b"], [0, 1])
    assert counts.matched == 2 and counts.unknown == 0
    items, _ = store.items("nul", labeled=True)
    assert sorted(it["id"] for it in items) == sorted(ids[:2])


def test_a_page_reads_a_bounded_number_of_batches(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a selective filter a page may come back short (even empty) with a cursor; paging
    on lists every matching item once."""
    import service.store.listing as listing

    monkeypatch.setattr(listing, "_SCAN_BATCHES", 2)
    z = np.array([[2.0, 0.0], [0.0, 2.0]])
    for b in range(7):
        audit = 1.0 if b in (1, 5) else 0.0
        _record(store, "scan", z, None, [f"{b}-0", f"{b}-1"], 1_700_000_000.0 + b, audit=audit)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.items("scan", audit=True, limit=3, cursor=cursor)
        seen += [it["id"] for it in page]
        pages += 1
        if cursor is None:
            break
    assert seen == ["5-1", "5-0", "1-1", "1-0"] and pages > 2
