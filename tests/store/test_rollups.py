"""Rollups: windowed reads equal the raw rows they stand for, under concurrency and retention.

The summaries recorded here are made of dyadic numbers (multiples of 1/1024 far below 2**53),
which floating-point adds exactly in any order: so every comparison below is exact equality,
float sums included, and a lost or doubled update would show in any column.
"""

from __future__ import annotations

import math
import multiprocessing as mp

import numpy as np
import sqlalchemy as sa

from service.store.schema import LEVELS, rollups
from service.store.sql import SqlStore, summary_of
from service.store.windows import plan
from xentcore.summary import N_BINS, BatchSummary

T0 = 1_790_000_000.0  # 2026-09-21, a Monday-ish epoch time with no special alignment


def dyadic_summary(rng: np.random.Generator) -> BatchSummary:
    """A batch summary whose float sums are multiples of 1/1024 (exact in any order)."""
    n = int(rng.integers(1, 40))
    counts = rng.multinomial(n, [1 / N_BINS] * N_BINS)
    scored = int(rng.integers(0, n + 1))
    return BatchSummary(
        n_items=n,
        n_scored=scored,
        loss_sum=int(rng.integers(0, 2**20)) / 1024,
        weight_sum=int(rng.integers(0, 2**16)) / 1024,
        confidence_sum=int(rng.integers(0, 2**16)) / 1024,
        confidence_count=n,
        flagged=int(rng.integers(0, n + 1)),
        low_confidence=int(rng.integers(0, n + 1)),
        high_loss=int(rng.integers(0, n + 1)),
        misclassified=int(rng.integers(0, n + 1)),
        low_token_probability=0,
        n_classified=scored,
        correct=int(rng.integers(0, scored + 1)),
        bin_count=[float(c) for c in counts],
        bin_confidence_sum=[int(rng.integers(0, 1024 * c + 1)) / 1024 for c in counts],
        bin_correct_sum=[float(rng.integers(0, c + 1)) for c in counts],
    )


def _add(a: BatchSummary, b: BatchSummary) -> BatchSummary:
    return a + b


def brute_force(
    rows: list[tuple[float, BatchSummary]], since: float, until: float, width: float | None
) -> dict[int, tuple[int, BatchSummary]]:
    """Bucket sums straight from the raw batches (the definition the store must meet)."""
    out: dict[int, tuple[int, BatchSummary]] = {}
    for t, s in rows:
        if since <= t < until:
            key = 0 if width is None else math.floor(t / width)
            n, acc = out.get(key, (0, BatchSummary()))
            out[key] = (n + 1, acc + s)
    return out


def _as_plain(sums: dict[int, tuple[int, BatchSummary]]) -> dict[int, tuple[int, BatchSummary]]:
    return dict(sorted(sums.items()))


def _record_all(store: SqlStore, rows: list[tuple[float, BatchSummary]], stream: str) -> None:
    for t, s in rows:
        assert store.record(stream=stream, task="multiclass", summary=s, at=t)


WIDTHS = [None, 30.0, 90.0, 60.0, 300.0, 5400.0, 3600.0, 21600.0, 86400.0, 604800.0]


def test_windows_equal_raw_sums_for_any_edges_and_width(store: SqlStore) -> None:
    rng = np.random.default_rng(7)
    times = T0 + np.sort(rng.uniform(0, 3 * 86400, 400))
    times[10:20] = times[10]  # several batches at the same instant
    rows = [(float(t), dyadic_summary(rng)) for t in times]
    _record_all(store, rows, "w")
    for trial in range(60):
        a, b = np.sort(rng.uniform(T0 - 3600, T0 + 3 * 86400 + 3600, 2))
        if trial % 5 == 0:  # edges exactly on boundaries too
            a, b = math.floor(a / 3600) * 3600, math.floor(b / 60) * 60
        width = WIDTHS[trial % len(WIDTHS)]
        window = plan(float(a), float(b), width, raw_horizon=0.0)
        table = store.sums("w", window.pieces, width)
        got = {k: (v.n_batches, v.summary) for k, v in table.as_dict().items()}
        assert _as_plain(got) == _as_plain(brute_force(rows, a, b, width)), (a, b, width)


def test_rollup_rows_equal_grouped_raw_rows(store: SqlStore) -> None:
    rng = np.random.default_rng(3)
    rows = [(float(T0 + rng.uniform(0, 2 * 86400)), dyadic_summary(rng)) for _ in range(150)]
    _record_all(store, rows, "g")
    _assert_rollups_match(store, "g", rows)


def _assert_rollups_match(
    store: SqlStore, stream: str, rows: list[tuple[float, BatchSummary]]
) -> None:
    for level in (0, *LEVELS):
        expected: dict[int, tuple[int, float, float, BatchSummary]] = {}
        for t, s in rows:
            start = 0 if level == 0 else math.floor(t / level) * level
            n, lo, hi, acc = expected.get(start, (0, math.inf, -math.inf, BatchSummary()))
            expected[start] = (n + 1, min(lo, t), max(hi, t), acc + s)
        q = sa.select(rollups).where(rollups.c.stream == stream, rollups.c.level == level)
        with store.engine.connect() as conn:
            found = {
                int(r["start"]): (
                    int(r["n_batches"]),
                    float(r["time_min"]),
                    float(r["time_max"]),
                    summary_of(r),
                )
                for r in conn.execute(q).mappings()
            }
        assert found == expected, level


def _concurrent_writer(url: str, worker: int, n: int) -> None:
    store = SqlStore.from_url(url)
    rng = np.random.default_rng(1000 + worker)
    for i in range(n):
        # most batches land in the same minute, hour and day rows: the hot rows of a stream
        t = T0 + (0.0 if i % 3 else float(rng.integers(0, 3)) * 3600.0) + worker * 0.001 + i * 0.01
        assert store.record(stream="hot", task="binary", summary=dyadic_summary(rng), at=t)
    store.close()


def _expected_writes(workers: int, n: int) -> list[tuple[float, BatchSummary]]:
    rows = []
    for worker in range(workers):
        rng = np.random.default_rng(1000 + worker)
        for i in range(n):
            hour = 0.0 if i % 3 else float(rng.integers(0, 3)) * 3600.0
            t = T0 + hour + worker * 0.001 + i * 0.01
            rows.append((t, dyadic_summary(rng)))
    return rows


def test_concurrent_writers_neither_lose_nor_double_a_rollup_update(
    url: str, store: SqlStore
) -> None:
    workers, per_worker = 4, 40
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_concurrent_writer, args=(url, w, per_worker)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = _expected_writes(workers, per_worker)
    assert len(store.batches_in("hot")) == workers * per_worker
    _assert_rollups_match(store, "hot", rows)
    totals = store.streams()
    assert [i.n_batches for i in totals.infos] == [workers * per_worker]
    assert totals.sums.total() == sum((s for _, s in rows), BatchSummary())


def test_retention_deletes_raw_rows_in_chunks_and_windows_read_rollups(store: SqlStore) -> None:
    rng = np.random.default_rng(11)
    now = T0 + 50 * 86400
    times = now - np.sort(rng.uniform(0, 45 * 86400, 300))[::-1]
    rows = [(float(t), dyadic_summary(rng)) for t in times]
    _record_all(store, rows, "r")
    old = now - 100 * 86400  # a stream whose newest batch is past the rollup retention
    assert store.record(stream="gone", task="binary", summary=dyadic_summary(rng), at=old)
    day = 86400
    done = store.expire(now=now, retention=30 * day, rollup_retention=40 * day, chunk=7, pause=0)
    raw_left = store.batches_in("r")
    assert [b.time for b in raw_left] == [t for t, _ in rows if t >= now - 30 * day]
    assert done.batches == len(rows) - len(raw_left) + 1
    assert "gone" not in {i.stream for i in store.streams().infos}
    with store.engine.connect() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(rollups.c.start + rollups.c.level)).where(
                rollups.c.stream == "r", rollups.c.level > 0
            )
        ).scalar()
    assert oldest is not None and oldest > now - 40 * day
    # a window reaching back past raw retention reads rollups; its edges round to the minute
    since, until = now - 35 * day + 17.5, now - 31 * day + 42.25
    for width in (None, 3600.0, 86400.0):
        window = plan(since, until, width, raw_horizon=now - 30 * day)
        assert window.since == math.floor(since / 60) * 60
        assert window.until == math.floor(until / 60) * 60
        table = store.sums("r", window.pieces, width)
        got = {k: (v.n_batches, v.summary) for k, v in table.as_dict().items()}
        assert _as_plain(got) == _as_plain(brute_force(rows, window.since, window.until, width))
    # the lifetime totals still count every batch ever recorded
    assert store.streams().infos[0].n_batches == len(rows)


def test_record_many_equals_recording_one_by_one(url: str, store: SqlStore) -> None:
    rng = np.random.default_rng(5)
    rows = [(float(T0 + rng.uniform(0, 86400)), dyadic_summary(rng)) for _ in range(120)]
    assert store.record_many(stream="bulk", task="binary", batches_at=rows[:70]) == 70
    _record_all_task(store, rows[70:], "bulk", "binary")
    _assert_rollups_match(store, "bulk", rows)
    assert store.record_many(stream="bulk", task="binary", batches_at=[]) == 0


def _record_all_task(
    store: SqlStore, rows: list[tuple[float, BatchSummary]], stream: str, task: str
) -> None:
    for t, s in rows:
        assert store.record(stream=stream, task=task, summary=s, at=t)
