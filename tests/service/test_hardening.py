"""Issue 14's store classes: deadlines on every store wait, honest readiness, finite sums,
and the Idempotency-Key limit (the hung-PostgreSQL fault test is tests/service/test_hung_store.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from service.api.pipeline import MAX_IDEMPOTENCY_KEY

BATCH = {"predictions": [0.9, 0.2, 0.7], "labels": [1, 0, 0], "stream": "s"}


class HungStore:
    """A store whose every call waits on ``release`` (a database that stopped answering)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def _hang(self) -> None:
        self.calls += 1
        self.release.wait(30)

    def ping(self) -> bool:
        self._hang()
        return True

    def record(self, **_: Any) -> bool:
        self._hang()
        return True

    def close(self) -> None:
        self.release.set()


def test_a_hung_store_costs_its_deadline_and_no_slot(make_client: Any) -> None:
    client = make_client(store_timeout=0.5, max_concurrency=1)
    hung = HungStore()
    client.app.state.store = hung
    try:
        t0 = time.perf_counter()
        out = client.post("/v1/score", json=BATCH)
        took = time.perf_counter() - t0
        assert out.status_code == 200 and out.json()["recorded"] is False
        assert took < 0.5 + 1.0, took  # the deadline plus a grace, not the hang
        # the stuck write holds no scoring slot: with max_concurrency=1 this is still scored
        plain = client.post("/v1/score", json={"predictions": [0.4, 0.6]})
        assert plain.status_code == 200
        t0 = time.perf_counter()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and time.perf_counter() - t0 < 1.5
        t0 = time.perf_counter()
        again = client.get("/readyz")  # the first probe is still out: 503 at once
        assert again.status_code == 503 and time.perf_counter() - t0 < 0.5
        assert "xent_store_errors_total 1.0" in client.get("/metrics").text
    finally:
        hung.release.set()


def test_readiness_fails_when_the_store_cannot_write(make_client: Any, tmp_path: Path) -> None:
    client = make_client(database_url=f"sqlite:///{tmp_path}/full.db")
    assert client.get("/readyz").status_code == 200
    store = client.app.state.store.current()
    engine: sa.Engine = store.engine

    def full_disk(dbapi_conn: Any, _record: Any) -> None:  # reads answer, every write fails
        dbapi_conn.execute("PRAGMA query_only = ON")

    sa.event.listen(engine, "connect", full_disk)
    engine.dispose()
    assert client.post("/v1/score", json=BATCH).json()["recorded"] is False  # cannot write
    assert client.get("/v1/streams").status_code == 200
    assert client.get("/readyz").status_code == 503  # reads still work; writes do not
    sa.event.remove(engine, "connect", full_disk)
    engine.dispose()
    assert client.get("/readyz").status_code == 200


def test_sums_that_overflow_are_not_recorded_and_say_so(client: Any) -> None:
    assert client.post("/v1/score", json=BATCH).json()["recorded"] is True
    huge = {**BATCH, "sample_weights": [1e308, 1e308, 1e308]}
    response = client.post("/v1/score", json=huge)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["recorded"] is False
    assert any("overflows float64" in w for w in out["warnings"])
    summary = client.get("/v1/streams/s/summary").json()
    assert summary["total"]["n_items"] == 3 and summary["total"]["loss_mean"] is not None


@pytest.mark.parametrize(
    "key",
    ["k" * (MAX_IDEMPOTENCY_KEY + 1), "tab\\there", "caf\\u00e9"],
    ids=["long", "tab", "utf8"],
)
def test_an_idempotency_key_over_its_limit_is_a_422(client: Any, key: str) -> None:
    value = key.encode().decode("unicode_escape").encode("utf-8")  # raw bytes on the wire
    headers = {"Idempotency-Key": value}
    out = client.post("/v1/score", json=BATCH, headers=headers)
    assert out.status_code == 422, out.text
    assert out.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    ok = client.post(
        "/v1/score", json=BATCH, headers={"Idempotency-Key": "k" * MAX_IDEMPOTENCY_KEY}
    )
    assert ok.status_code == 200 and ok.json()["recorded"] is True


def test_the_idempotency_key_limit_holds_on_postgresql(make_client: Any) -> None:
    from tests.support.postgres import pg_unavailable, private_schema

    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with private_schema() as url:
        client = make_client(database_url=url)
        long_key = {"Idempotency-Key": "k" * (MAX_IDEMPOTENCY_KEY + 1)}
        assert client.post("/v1/score", json=BATCH, headers=long_key).status_code == 422
        exact = {"Idempotency-Key": "k" * MAX_IDEMPOTENCY_KEY}
        assert client.post("/v1/score", json=BATCH, headers=exact).json()["recorded"] is True
        assert client.post("/v1/score", json=BATCH, headers=exact).json()["recorded"] is True
        streams = client.get("/v1/streams").json()["streams"]
        assert [s["n_batches"] for s in streams] == [1]
        client.app.state.store.close()
        _ = httpx  # the module is used by other tests of this file's family


def test_sigterm_stops_within_the_shutdown_timeout(tmp_path: Path) -> None:
    """A client that never finishes its body does not keep the server up after SIGTERM."""
    import signal
    import socket

    from tests.support.server import xent_serve

    env = {"XENT_SHUTDOWN_TIMEOUT": "1", "XENT_BODY_TIMEOUT": "120"}
    with xent_serve(tmp_path, env=env, check_exit=False) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + b'{"predictions": [')
            time.sleep(0.3)
            t0 = time.perf_counter()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=15)
            took = time.perf_counter() - t0
    assert took < 1 + 3.0, took  # the timeout, plus uvicorn's own shutdown steps
