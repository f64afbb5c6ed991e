"""Work for a client that disconnected stops at the next stage (issue 14, item 9): a large
batch whose client leaves while it is parsed is neither scored to the end nor recorded, and the
request is counted with status 499. Against a real ``xent serve``: only a real server sees a
connection close."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from service.departure import ClientGone, Departure
from tests.support.server import xent_serve


def test_departure_raises_only_once_the_client_left() -> None:
    departure = Departure()
    departure.check("scoring")  # still here: nothing happens
    departure.leave()
    assert departure.gone
    try:
        departure.check("scoring")
    except ClientGone as gone:
        assert gone.stage == "scoring" and "before scoring" in str(gone)
    else:
        raise AssertionError("ClientGone not raised")


def _large_body(stream: str) -> bytes:
    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(300_000, 10)), 6).tolist()
    labels = rng.integers(0, 10, 300_000).tolist()
    payload = {"predictions": logits, "labels": labels, "input_type": "logits", "stream": stream}
    return orjson.dumps(payload)


def _send_and_leave(port: int, body: bytes) -> None:
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)
    # closed at once: the server is still parsing


def _count_499(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("xent_http_requests_total{") and 'status="499"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_that_leaves_stops_its_work(tmp_path: Path) -> None:
    body = _large_body("gone")
    assert len(body) > 20 << 20
    with xent_serve(tmp_path) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        port = int(server.url.rsplit(":", 1)[1])
        _send_and_leave(port, body)
        deadline = time.monotonic() + 30
        while _count_499(http) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _count_499(http) == 1, server.log.read_text()[-2000:]
        assert "client disconnected before" in server.log.read_text()
        assert http.get("/v1/streams").json()["streams"] == []  # not recorded
        # the same batch from a client that waits is scored and recorded as usual
        out = http.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
        assert out.status_code == 200 and out.json()["recorded"] is True
        assert [s["stream"] for s in http.get("/v1/streams").json()["streams"]] == ["gone"]
