"""The monitoring read API: /v1/streams, summaries over windows and buckets, flagged items."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import xentcore as xc
from service.store.base import encode_cursor
from tests.support.postgres import pg_unavailable, private_schema


def _batch(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)) * 2, rng.integers(0, 3, n)


def _post(client: Any, z: np.ndarray, y: np.ndarray, stream: str, **extra: Any) -> Any:
    body = {"predictions": z.tolist(), "labels": y.tolist(), "input_type": "logits"}
    out = client.post("/v1/score", json={**body, "stream": stream, **extra})
    assert out.status_code == 200, out.text
    assert out.json()["recorded"] is True
    return out.json()


def test_summary_is_exact_over_batches_and_streams(client: Any) -> None:
    flag = {"min_confidence": 0.7, "misclassified": True}
    (z1, y1), (z2, y2), (z3, y3) = _batch(1, 30), _batch(2, 17), _batch(3, 5)
    _post(client, z1, y1, "a", flag=flag)
    _post(client, z2, y2, "a", flag=flag)
    _post(client, z3, y3, "b", flag=flag)
    z, y = np.concatenate([z1, z2]), np.concatenate([y1, y2])
    whole = xc.score(z, y, input_type="logits", flag=flag)
    ece = xc.calibration(z, y, input_type="logits").ece
    out = client.get("/v1/streams/a/summary").json()
    total = out["total"]
    assert out["stream"] == "a" and total["n_items"] == 47 and total["n_scored"] == 47
    assert total["loss_mean"] == pytest.approx(whole.loss_mean, rel=1e-12)
    assert total["accuracy"] == pytest.approx(whole.accuracy, rel=1e-12)
    assert total["confidence_mean"] == pytest.approx(whole.confidence_mean, rel=1e-12)
    assert total["flag_rate"] == pytest.approx(whole.flagged.mean(), rel=1e-12)
    assert total["ece"] == pytest.approx(ece, rel=1e-9)
    assert sum(b["count"] for b in total["reliability"]) == 47
    assert len(out["buckets"]) == 1 and out["buckets"][0]["n_items"] == 47
    bucketed = client.get("/v1/streams/a/summary", params={"bucket": "1d"}).json()
    assert sum(b["n_items"] for b in bucketed["buckets"]) == 47
    start = datetime.fromisoformat(bucketed["buckets"][0]["start"])
    assert start.tzinfo is not None and start.timestamp() % 86400 == 0
    listing = client.get("/v1/streams").json()["streams"]
    assert [(s["stream"], s["n_batches"], s["total"]["n_items"]) for s in listing] == [
        ("a", 2, 47),
        ("b", 1, 5),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_streams_list_their_tasks(make_client: Any, backend: str) -> None:
    if backend == "postgresql":
        reason = pg_unavailable()
        if reason:
            pytest.skip(reason)
        with private_schema() as url:
            _check_tasks(make_client(database_url=url))
    else:
        _check_tasks(make_client())


def _check_tasks(client: Any) -> None:
    z, y = _batch(7, 6)
    _post(client, z, y, "mix")  # multiclass
    binary = {"predictions": [0.2, 0.9], "labels": [0, 1], "stream": "mix"}
    assert client.post("/v1/score", json=binary).json()["recorded"] is True
    multilabel = {
        "predictions": [[0.9, 0.2, 0.7], [0.1, 0.8, 0.4]],
        "labels": [[1, 0, 1], [0, 1, 0]],
        "task": "multilabel",
        "stream": "tags",
    }
    assert client.post("/v1/score", json=multilabel).json()["recorded"] is True
    seqs = {"sequences": [{"id": "s1", "token_logprobs": [-0.1, -2.0]}]}
    for stream in ("mix", "chat"):
        out = client.post("/v1/sequences/score", json={**seqs, "stream": stream})
        assert out.status_code == 200 and out.json()["recorded"] is True, out.text
    listing = client.get("/v1/streams").json()["streams"]
    assert [(s["stream"], s["n_batches"], s["tasks"]) for s in listing] == [
        ("chat", 1, ["sequences"]),
        ("mix", 3, ["binary", "multiclass", "sequences"]),
        ("tags", 1, ["multilabel"]),
    ]
    mix = listing[1]
    assert mix["total"]["n_items"] == 6 + 2 + 1 and mix["last_seen"].endswith("Z")


def test_windows(client: Any) -> None:
    z, y = _batch(4, 10)
    _post(client, z, y, "w")
    future = "2999-01-01T00:00:00Z"
    empty = client.get("/v1/streams/w/summary", params={"since": future}).json()
    assert empty["total"]["n_items"] == 0 and empty["total"]["loss_mean"] is None
    assert empty["buckets"] == []
    past = client.get("/v1/streams/w/summary", params={"until": "2000-01-01T00:00:00"}).json()
    assert past["total"]["n_items"] == 0
    now = datetime.now(UTC).isoformat()
    before_now = client.get("/v1/streams/w/summary", params={"until": now}).json()
    assert before_now["total"]["n_items"] == 10


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"since": "yesterday"}, ["query", "since"]),
        ({"until": "2026-13-01"}, ["query", "until"]),
        ({"bucket": "5 parsecs"}, ["query", "bucket"]),
        ({"bucket": "0m"}, ["query", "bucket"]),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, ["query", "until"]),
        ({"since": "2020-01-01T00:00:00Z", "bucket": "1s"}, ["query", "bucket"]),
    ],
)
def test_bad_query_parameters(client: Any, params: dict[str, str], loc: list[str]) -> None:
    z, y = _batch(5, 3)
    _post(client, z, y, "q")
    response = client.get("/v1/streams/q/summary", params=params)
    # the bucket limit counts the buckets the window spans (years of 1 s buckets), not the
    # non-empty ones: the work of a read is bounded by its parameters, not by the data
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_bucket_limit_counts_the_window_not_the_data(client: Any) -> None:
    z, y = _batch(5, 3)
    _post(client, z, y, "b")
    now = datetime.now(UTC)
    recent = {"since": (now - timedelta(minutes=5)).isoformat(), "bucket": "1s"}
    ok = client.get("/v1/streams/b/summary", params=recent)
    assert ok.status_code == 200 and sum(x["n_items"] for x in ok.json()["buckets"]) == 3
    # without since the window starts at the stream's first batch: seconds ago
    assert client.get("/v1/streams/b/summary", params={"bucket": "1s"}).status_code == 200
    day = {"since": (now - timedelta(days=1)).isoformat(), "bucket": "1s"}  # 86,400 buckets
    too_many = client.get("/v1/streams/b/summary", params=day)
    assert too_many.status_code == 422
    assert "10000 buckets" in too_many.json()["detail"][0]["msg"]


def test_unknown_and_invalid_stream_names(client: Any) -> None:
    assert client.get("/v1/streams/nope/summary").status_code == 404
    bad = client.get("/v1/streams/bad%20name/summary")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "stream"]
    body = {"predictions": [0.2, 0.9], "labels": [0, 1], "stream": "has space"}
    refused = client.post("/v1/score", json=body)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "stream"]


def test_flagged_pages(client: Any) -> None:
    probs = [[0.9, 0.1], [0.55, 0.45], [0.4, 0.6], [0.5, 0.5], [0.51, 0.49]]
    body = {
        "predictions": probs,
        "labels": ["a", "b", "b", "a", "b"],
        "class_names": ["a", "b"],
        "ids": ["i0", "i1", "i2", "i3", "i4"],
        "flag": {"min_confidence": 0.7, "misclassified": True},
        "stream": "f",
    }
    assert client.post("/v1/score", json=body).json()["recorded"] is True
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/streams/f/flagged", params=params).json()
        seen.extend(item["index"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1]  # newest first; item 0 is confident and right
    first = client.get("/v1/streams/f/flagged", params={"limit": 1}).json()["items"][0]
    assert first["id"] == "i4" and first["predicted"] == "a" and first["label"] == "b"
    assert first["reasons"] == ["low_confidence", "misclassified"]
    assert first["time"].endswith("Z")
    bad = client.get("/v1/streams/f/flagged", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    too_many = client.get("/v1/streams/f/flagged", params={"limit": 5000})
    assert too_many.status_code == 422


def test_idempotency_key_counts_a_retry_once(client: Any) -> None:
    z, y = _batch(6, 8)
    headers = {"Idempotency-Key": "retry-1"}
    body = {"predictions": z.tolist(), "labels": y.tolist(), "input_type": "logits", "stream": "i"}
    for _ in range(3):
        out = client.post("/v1/score", json=body, headers=headers).json()
        assert out["recorded"] is True
    assert client.get("/v1/streams/i/summary").json()["total"]["n_items"] == 8
    text = client.get("/metrics").text
    assert 'xent_stream_items_scored_total{stream="i",task="multiclass"} 8.0' in text


def test_store_down_still_scores(make_client: Any, tmp_path: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    client = make_client(database_url=f"sqlite:///{blocker}/data/xent.db")
    body = {"predictions": [0.2, 0.9], "labels": [0, 1], "stream": "s"}
    out = client.post("/v1/score", json=body)
    assert out.status_code == 200 and out.json()["recorded"] is False
    assert out.json()["loss"]["n_scored"] == 2
    assert client.get("/readyz").status_code == 503
    assert client.get("/v1/streams").status_code == 503
    assert "xent_store_errors_total 1.0" in client.get("/metrics").text
    # a bad cursor stays the client's 422 while the store is down; a good one waits (503)
    bad = client.get("/v1/streams/s/flagged", params={"cursor": "zzzz"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    good = {"cursor": encode_cursor(5, 0)}
    assert client.get("/v1/streams/s/flagged", params=good).status_code == 503


def test_store_recovers_without_restart(make_client: Any, tmp_path: Any) -> None:
    blocker = tmp_path / "db"
    blocker.write_text("a file where the store's directory should be")
    client = make_client(database_url=f"sqlite:///{blocker}/xent.db", store_retry_seconds=0.05)
    body = {"predictions": [0.2, 0.9], "labels": [0, 1], "stream": "s"}
    assert client.post("/v1/score", json=body).json()["recorded"] is False
    assert client.get("/readyz").status_code == 503
    blocker.unlink()  # the database becomes reachable
    time.sleep(0.1)
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/score", json=body).json()["recorded"] is True
    assert client.get("/v1/streams/s/summary").json()["total"]["n_items"] == 2


def test_reads_beyond_the_read_slots_get_503_with_retry_after(make_client: Any) -> None:
    client = make_client(max_store_reads=1, retry_after_seconds=3)
    z, y = _batch(1, 4)
    _post(client, z, y, "slots")
    assert client.get("/v1/streams").status_code == 200
    slots = client.app.state.store_reads  # the one slot, taken as a slow read would
    assert slots.acquire(timeout=1)
    try:
        busy = client.get("/v1/streams/slots/summary")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
        assert "monitoring reads" in busy.json()["detail"]
        # scoring does not wait for read slots
        assert client.post("/v1/score", json={"predictions": [0.3, 0.8]}).status_code == 200
    finally:
        slots.release()
    assert client.get("/v1/streams/slots/summary").status_code == 200


def test_sub_minute_buckets_cover_at_most_six_hours(client: Any) -> None:
    z, y = _batch(2, 4)
    _post(client, z, y, "fine")
    now = datetime.now(UTC)
    five_hours = {"since": (now - timedelta(hours=5)).isoformat(), "bucket": "90s"}
    got = client.get("/v1/streams/fine/summary", params=five_hours)
    assert got.status_code == 200 and got.json()["total"]["n_items"] == 4
    seven = {"since": (now - timedelta(hours=7)).isoformat(), "bucket": "90s"}
    refused = client.get("/v1/streams/fine/summary", params=seven)
    assert refused.status_code == 422 and "6 hours" in refused.json()["detail"][0]["msg"]
    # whole minutes read rollups: any window up to 10,000 buckets
    week = {"since": (now - timedelta(days=6)).isoformat(), "bucket": "2m"}
    assert client.get("/v1/streams/fine/summary", params=week).status_code == 200


def test_retention_runs_in_the_background(make_client: Any) -> None:
    from service.retention import expire_once

    client = make_client(retention="1h")
    store = client.app.state.store
    summary = xc.summary.BatchSummary(n_items=2)
    old = time.time() - 2 * 3600
    assert store.record(stream="ret", task="binary", summary=summary, at=old)
    assert store.record(stream="ret", task="binary", summary=summary)
    expire_once(store, client.app.state.settings, client.app.state.metrics.streams)
    metrics = client.get("/metrics").text
    assert 'xent_store_expired_total{what="batches"} 1.0' in metrics
    out = client.get("/v1/streams/ret/summary").json()
    assert out["total"]["n_items"] == 4  # the old batch lives on in the rollups
    listed = client.get("/v1/streams").json()["streams"]
    assert [s["n_batches"] for s in listed if s["stream"] == "ret"] == [2]


def test_the_retention_loop_expires_then_keeps_going(tmp_path: Any) -> None:
    import asyncio
    import contextlib

    from service.retention import retention_loop
    from service.settings import Settings
    from service.store.sql import SqlStore

    store = SqlStore.from_url(f"sqlite:///{tmp_path}/r.db")
    settings = Settings(retention="1h", retention_interval="1s")
    summary = xc.summary.BatchSummary(n_items=1)
    assert store.record(stream="l", task="binary", summary=summary, at=time.time() - 7200)

    async def run() -> None:
        calls = {"n": 0}

        def current() -> Any:
            calls["n"] += 1
            return None if calls["n"] == 1 else store  # the store is down at first

        task = asyncio.create_task(retention_loop(current, settings, None, first=0.0))
        await asyncio.sleep(1.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert calls["n"] >= 2

    asyncio.run(run())
    assert store.batches_in("l") == []
    store.close()
