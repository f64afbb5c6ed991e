"""The monitoring store on SQLite (always) and PostgreSQL (when reachable)."""

from __future__ import annotations

import base64
import multiprocessing as mp
import re
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import xentcore as xc
from service.recording import flagged_items, record_batch
from service.store import InvalidCursor, ReconnectingStore, Store
from service.store.base import StoreUnavailable, encode_cursor
from service.store.sql import SqlStore
from tests.support.postgres import private_schema
from xentcore.summary import BatchSummary, figures, summarize


def _batch(seed: int, n: int = 40, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) * 2, rng.integers(0, k, n)


def test_windowed_figures_equal_scoring_the_concatenation(store: SqlStore) -> None:
    (z1, y1), (z2, y2) = _batch(1), _batch(2, n=25)
    flag = {"min_confidence": 0.6, "misclassified": True}
    for z, y, t in ((z1, y1, 100.0), (z2, y2, 200.0)):
        r = xc.score(z, y, input_type="logits", flag=flag)
        assert store.record(
            stream="s",
            task="multiclass",
            summary=summarize(r),
            flagged=flagged_items(r, None),
            at=t,
        )
    merged = sum((b.summary for b in store.batches_in("s")), BatchSummary())
    got = figures(merged)
    z, y = np.concatenate([z1, z2]), np.concatenate([y1, y2])
    whole = xc.score(z, y, input_type="logits", flag=flag)
    cal = xc.calibration(z, y, input_type="logits", n_bins=15)
    assert got["n_items"] == 65 and got["n_scored"] == 65
    assert got["loss_mean"] == pytest.approx(whole.loss_mean, rel=1e-12)
    assert got["accuracy"] == pytest.approx(whole.accuracy, rel=1e-12)
    assert got["confidence_mean"] == pytest.approx(whole.confidence_mean, rel=1e-12)
    assert got["flag_rate"] == pytest.approx(whole.flagged.mean(), rel=1e-12)
    assert got["ece"] == pytest.approx(cal.ece, rel=1e-9)
    assert [b.time for b in store.batches_in("s", since=150.0)] == [200.0]
    assert [b.time for b in store.batches_in("s", until=150.0)] == [100.0]


def test_idempotency_key_counts_a_retry_once(store: SqlStore) -> None:
    z, y = _batch(3)
    r = xc.score(z, y, input_type="logits")
    assert (
        store.record(stream="s", task="multiclass", summary=summarize(r), idempotency_key="abc")
        is True
    )
    assert (
        store.record(stream="s", task="multiclass", summary=summarize(r), idempotency_key="abc")
        is False
    )
    assert (
        store.record(stream="t", task="multiclass", summary=summarize(r), idempotency_key="abc")
        is True
    )  # keys are per stream
    assert len(store.batches_in("s")) == 1
    assert {info.stream for info in store.stream_names()} == {"s", "t"}


def test_stream_names_fold_tasks_per_stream(store: SqlStore) -> None:
    r = xc.score(*_batch(4), input_type="logits")
    batches = [
        ("mixed", "multiclass", 100.0),
        ("mixed", "sequences", 300.0),
        ("mixed", "multiclass", 200.0),
        ("mixed", "binary", 150.0),
        ("chat", "sequences", 50.0),
        ("tags", "multilabel", 400.0),
    ]
    for stream, task, t in batches:
        assert store.record(stream=stream, task=task, summary=summarize(r), at=t)
    assert store.stream_names() == [
        ("chat", 50.0, 1, ("sequences",)),
        ("mixed", 300.0, 4, ("binary", "multiclass", "sequences")),
        ("tags", 400.0, 1, ("multilabel",)),
    ]
    mixed = store.stream_names()[1]
    assert (mixed.stream, mixed.last_seen, mixed.n_batches) == ("mixed", 300.0, 4)
    assert mixed.tasks == ("binary", "multiclass", "sequences")


def test_flagged_items_newest_first_with_cursor(store: SqlStore) -> None:
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.4, 0.6], [0.5, 0.5]])
    r = xc.score(
        probs,
        ["a", "b", "b", "a"],
        class_names=["a", "b"],
        flag={"min_confidence": 0.7, "misclassified": True},
    )
    ids = ["i0", 11, "i2", "i3"]
    assert record_batch(store, stream="f", task="multiclass", result=r, ids=ids)
    page1, cursor = store.flagged("f", limit=2)
    assert [item["index"] for item in page1] == [3, 2]
    assert page1[0]["id"] == "i3" and page1[1]["id"] == "i2"
    assert page1[1]["predicted"] == "b" and page1[1]["label"] == "b"
    assert page1[1]["reasons"] == ["low_confidence"]
    assert cursor is not None and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cursor)  # route's pattern
    page2, cursor2 = store.flagged("f", limit=2, cursor=cursor)  # opaque: passed back as is
    assert [item["index"] for item in page2] == [1]
    assert page2[0]["id"] == 11  # an integer id stays an integer
    assert page2[0]["reasons"] == ["low_confidence", "misclassified"]
    assert cursor2 is None
    # through the reconnecting wrapper the service uses, the same pages
    wrapped: Store = ReconnectingStore(lambda: store)
    assert wrapped.flagged("f", limit=2, cursor=cursor) == (page2, None)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


#: 2**63 is beyond a BIGINT row id (once a 503 from the database)
@pytest.mark.parametrize(
    "bad",
    [
        "not-a-cursor",
        "",
        "MA",  # "0": one part, a cursor has two
        "_w",  # not UTF-8
        "AAAA",  # not digits
        _b64("0.1"),  # batch 0 does not exist
        _b64("5.-1"),
        _b64("5. 1"),
        _b64("5.1.2"),
        _b64(f"{2**63}.0"),
        _b64(f"5.{2**63}"),
    ],
)
def test_a_cursor_not_handed_out_is_invalid(store: SqlStore, bad: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        store.flagged("f", cursor=bad)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidCursor):
        ReconnectingStore(lambda: store).flagged("f", cursor=bad)


def test_a_bad_cursor_is_refused_even_while_the_store_is_down() -> None:
    def cannot_open() -> Store:
        raise OSError("database down")

    down = ReconnectingStore(cannot_open)
    with pytest.raises(InvalidCursor):
        down.flagged("f", cursor="zzzz")
    with pytest.raises(StoreUnavailable):  # a good cursor waits for the store
        down.flagged("f", cursor=encode_cursor(5, 0))


def test_store_failure_is_reported_not_raised(tmp_path: Path) -> None:
    s = SqlStore.from_url(f"sqlite:///{tmp_path}/x.db")
    with s.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE xent_flagged"))
        conn.execute(sa.text("DROP TABLE xent_batches"))
    r = xc.score([0.2, 0.9], [0, 1])
    assert record_batch(s, stream="s", task="binary", result=r) is False
    assert record_batch(None, stream="s", task="binary", result=r) is False


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    SqlStore.from_url(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO xent_schema_version VALUES (99)"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="newer"):
        SqlStore.from_url(url)


def _writer(url: str, worker: int, n: int) -> None:
    store = SqlStore.from_url(url)
    r = xc.score(np.array([0.2, 0.9, 0.6]), np.array([0, 1, 0]), flag={"misclassified": True})
    for i in range(n):
        assert record_batch(
            store,
            stream="c",
            task="binary",
            result=r,
            ids=[1, 2, 3],
            idempotency_key=f"{worker}-{i}",
        )
    store.close()


def test_concurrent_writer_processes_lose_nothing(url: str, store: SqlStore) -> None:
    workers, per_worker = 4, 30
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, per_worker)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = store.batches_in("c")
    assert len(rows) == workers * per_worker
    total = figures(sum((b.summary for b in rows), BatchSummary()))
    assert total["n_items"] == 3 * workers * per_worker
    items, _ = store.flagged("c", limit=1000)
    assert len(items) == 1 * workers * per_worker  # item 2 (0.6 vs label 0) misclassified


def _open_and_record(url: str, start: float) -> None:
    while time.time() < start:  # all processes open the new store at the same moment
        time.sleep(0.001)
    store = SqlStore.from_url(url)
    r = xc.score(np.array([0.2, 0.9]), np.array([0, 1]))
    assert record_batch(store, stream="race", task="binary", result=r)
    store.close()


def test_processes_creating_a_new_store_at_once(url: str) -> None:
    if url.startswith("postgresql"):
        with private_schema() as fresh:  # a schema with no tables yet
            _race(fresh)
    else:
        _race(url)


def _race(url: str) -> None:
    ctx = mp.get_context("spawn")
    start = time.time() + 2.0
    procs = [ctx.Process(target=_open_and_record, args=(url, start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = SqlStore.from_url(url)
    assert len(store.batches_in("race")) == 4
    store.close()


def test_a_batch_of_100000_flagged_items_is_one_row_and_pages_exactly(store: SqlStore) -> None:
    rng = np.random.default_rng(9)
    n = 100_000
    z, y = rng.standard_normal((n, 10)).astype(np.float32), rng.integers(0, 10, n)
    r = xc.score(z, y, input_type="logits", flag={"min_confidence": 0.9, "misclassified": True})
    ids = [f"item-{i}" for i in range(n)]
    assert record_batch(store, stream="big", task="multiclass", result=r, ids=ids)
    small = xc.score(np.array([0.2, 0.9, 0.6]), np.array([0, 1, 0]), flag={"misclassified": True})
    assert record_batch(store, stream="big", task="binary", result=small, ids=["x", "y", "z"])
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM xent_flagged")).scalar() == 2
    flagged = np.flatnonzero(r.flagged)
    # newest batch first, then the big one from its last flagged item down, across pages
    page, cursor = store.flagged("big", limit=1000)
    assert [i["id"] for i in page[:2]] == ["z", f"item-{flagged[-1]}"]
    seen = [i["index"] for i in page[1:]]
    while cursor is not None:
        page, cursor = store.flagged("big", limit=1000, cursor=cursor)
        seen.extend(i["index"] for i in page)
    assert seen == flagged[::-1].tolist()
    last = store.flagged("big", limit=1, cursor=encode_cursor(10**9, 0))
    assert last[0][0]["id"] == "z"  # a cursor past the newest batch starts at the top


def test_a_binary_read_that_fails_drops_its_connection(pg_schema_url: str) -> None:
    """PostgreSQL reads of many numbers go through the driver's cursor (binary format): a
    driver error there invalidates the pooled connection, as SQLAlchemy does for its own, and
    the next read gets a fresh one."""
    store = SqlStore.from_url(pg_schema_url)
    try:
        result = xc.score(np.array([0.9, 0.2]), np.array([1, 0]))
        store.record(stream="s", task=result.task, summary=summarize(result))
        admin = sa.create_engine(pg_schema_url.replace("postgresql://", "postgresql+psycopg://"))
        with store._connection() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.begin() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(Exception, match=r"terminat|closed|server"):
                store._fetch(conn, sa.select(sa.literal_column("1.0")), {})
            assert conn.invalidated
        admin.dispose()
        assert [s.stream for s in store.streams().infos] == ["s"]
    finally:
        with store.engine.begin() as conn:
            for table in ("xent_flagged", "xent_batches", "xent_rollups"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        store.close()
