"""The monitoring read API: /v1/streams, summaries over windows and buckets, flagged items."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import xentcore as xc
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
    for _ in range(2):  # two batches a few ms apart: too many 1 s buckets only over years
        _post(client, z, y, "q")
    response = client.get("/v1/streams/q/summary", params=params)
    if params.get("bucket") == "1s":
        # a handful of batches in the same second make one bucket, not an error
        assert response.status_code == 200
        return
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


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
    assert client.get("/v1/streams/s/flagged", params={"cursor": "NQ"}).status_code == 503


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
