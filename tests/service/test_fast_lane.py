"""The fast lane (service/fastlane.py) answers exactly what the full stack answers, or hands on.

Every request here is sent to two apps: one with the lane (the default) and one with
``XENT_FAST_LANE=false``. Status, headers (but the generated request id) and body must be
equal byte for byte, and the lane must have answered the plain ones itself and handed every
other one, errors included, to the stack.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.app import create_app
from service.fastlane import FastLane
from service.settings import Settings
from tests.service.conftest import MakeClient, TestClient
from tests.support.asgi import post_scope

ENDPOINTS = ("/v1/score", "/v1/loss", "/v1/confidence", "/v1/flag")
_RNG = np.random.default_rng(19)
_P = _RNG.dirichlet(np.ones(4), size=6).tolist()
_Z = _RNG.normal(size=(6, 4)).tolist()
_Y = [0, 3, 1, 2, 2, 0]

#: (name, body) answered by the lane itself on every endpoint it takes
PLAIN: list[tuple[str, dict[str, Any]]] = [
    ("probabilities", {"predictions": _P, "labels": _Y}),
    ("logits", {"predictions": _Z, "labels": _Y, "input_type": "logits"}),
    ("one item", {"predictions": [_P[0]], "labels": [1]}),
    ("ints in rows", {"predictions": [[1, 0, 0, 0], [0.25, 0.25, 0.5, 0]], "labels": [0, 2]}),
    ("string ids", {"predictions": _P, "labels": _Y, "ids": list("abcdef")}),
    (
        "int ids",
        {"predictions": _Z, "labels": _Y, "input_type": "logits", "ids": [9, 8, 7, 6, 5, 4]},
    ),
    (
        "flag rules",
        {
            "predictions": _Z,
            "labels": _Y,
            "input_type": "logits",
            "flag": {"min_confidence": 0.4, "max_loss": 1.0, "misclassified": True},
        },
    ),
    ("per_item false", {"predictions": _P, "labels": _Y, "per_item": False}),
    ("margin", {"predictions": _Z, "labels": _Y, "input_type": "logits", "confidence": "margin"}),
    ("entropy", {"predictions": _Z, "input_type": "logits", "confidence": "entropy"}),
    ("true_class", {"predictions": _P, "labels": _Y, "confidence": "true_class"}),
    (
        "log probabilities",
        {"predictions": np.log(_P).tolist(), "labels": _Y, "input_type": "log_probabilities"},
    ),
    (
        "smoothing",
        {"predictions": _Z, "labels": _Y, "input_type": "logits", "label_smoothing": 0.1},
    ),
    ("class weights", {"predictions": _P, "labels": _Y, "class_weights": [1, 2, 0.5, 1]}),
    (
        "class names",
        {
            "predictions": _P,
            "labels": ["a", "d", "b", "c", "c", "a"],
            "class_names": ["a", "b", "c", "d"],
        },
    ),
    ("binary", {"predictions": [0.1, 0.7, 0.99], "labels": [0, 1, 1]}),
    ("multilabel", {"predictions": _P, "labels": [[1, 0, 0, 1]] * 6, "task": "multilabel"}),
    ("soft targets", {"predictions": _P, "labels": [[0.25] * 4] * 6}),
    ("float labels", {"predictions": _P, "labels": [0.0, 3.0, 1.0, 2.0, 2.0, 0.0]}),
    ("clipped", {"predictions": [[1.0, 0.0, 0.0, 0.0]], "labels": [3]}),
    ("sum tolerance", {"predictions": [[0.5, 0.5001, 0, 0]], "labels": [1], "sum_tolerance": 0.01}),
    ("null labels", {"predictions": _P, "labels": None}),
    ("no labels", {"predictions": _P}),
    ("huge int", {"predictions": [[2**60, 0, 0, 0]], "input_type": "logits"}),
    (
        "duplicate keys",
        b'{"predictions": [[0.5, 0.5]], "predictions": [[0.2, 0.8]], "labels": [1]}',
    ),
]

#: (name, body or raw bytes) that the stack answers (errors, store work)
HANDED_ON: list[tuple[str, Any]] = [
    ("row sum", {"predictions": [[0.5, 0.2, 0.1, 0.1]], "labels": [0]}),
    ("label out of range", {"predictions": _P, "labels": [0, 4, 1, 2, 2, 0]}),
    ("unknown key", {"predictions": _P, "labels": _Y, "colour": "red"}),
    ("bool in rows", {"predictions": [[True, 0, 0, 0]], "labels": [0]}),
    ("string number", {"predictions": [["0.5", 0.5, 0, 0]], "labels": [0]}),
    ("ragged", {"predictions": [[0.5, 0.5], [1.0]], "labels": [0, 0]}),
    ("empty", {"predictions": [], "labels": []}),
    ("empty rows", {"predictions": [[], []]}),
    ("label count", {"predictions": _P, "labels": [0, 1]}),
    ("ids count", {"predictions": _P, "ids": ["a"]}),
    ("bad input_type", {"predictions": _P, "input_type": "odds"}),
    ("true_class no labels", {"predictions": _P, "confidence": "true_class"}),
    ("rank 3", {"predictions": [[[0.5, 0.5]]]}),
    ("stream", {"predictions": _P, "labels": _Y, "stream": "lane-test"}),
    ("policy", {"predictions": _P, "labels": _Y, "flag": {"policy": "p"}}),
    ("calibrator", {"predictions": _P, "labels": _Y, "calibrator": "c"}),
    ("audit", {"predictions": _P, "labels": _Y, "audit_rate": 0.5}),
    ("nan literal", b'{"predictions": [[NaN, 0.5, 0.5, 0]], "labels": [0]}'),
    ("infinity", b'{"predictions": [[1e400, 0.5, 0.5, 0]], "labels": [0]}'),
    ("not json", b'{"predictions": [[0.5, 0.5'),
    ("not an object", b"[1, 2, 3]"),
    ("deep", b'{"predictions": ' + b"[" * 300 + b"]" * 300 + b"}"),
]


def _clients(make_client: MakeClient, **overrides: Any) -> tuple[TestClient, TestClient]:
    """An app with the lane (as configured) and one without."""
    return make_client(**overrides), make_client(fast_lane=False, **overrides)


def _pair(make_client: MakeClient, **overrides: Any) -> tuple[TestClient, TestClient]:
    lane, stack = _clients(make_client, **overrides)
    assert isinstance(lane.app.lane, FastLane) and stack.app.lane is None
    return lane, stack


def _send(client: TestClient, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=content, headers={"content-type": "application/json", **(headers or {})}
    )


def _same(a: Any, b: Any) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.content == b.content
    ha = [(k, v) for k, v in a.headers.multi_items() if k != "x-request-id"]
    hb = [(k, v) for k, v in b.headers.multi_items() if k != "x-request-id"]
    assert ha == hb
    assert re.fullmatch(r"[0-9a-f]{32}", a.headers["x-request-id"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    """One app with the lane and one without, for the many requests that change nothing
    another request sees (each test counts the lane's answers from where it starts)."""
    clients = [
        TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp(name), fast_lane=on)))
        for name, on in (("lane", True), ("stack", False))
    ]
    for client in clients:
        client.__enter__()
    yield clients[0], clients[1]
    for client in clients:
        client.__exit__(None, None, None)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("name", "body"), PLAIN, ids=[n for n, _ in PLAIN])
def test_plain_requests_are_answered_by_the_lane_as_by_the_stack(
    shared: tuple[TestClient, TestClient], endpoint: str, name: str, body: dict[str, Any]
) -> None:
    lane, stack = shared
    before = lane.app.lane.answered
    a, b = _send(lane, endpoint, body), _send(stack, endpoint, body)
    _same(a, b)
    if a.status_code == 200:
        assert lane.app.lane.answered == before + 1
    else:  # /v1/loss without labels: the stack's 422
        assert lane.app.lane.answered == before and endpoint == "/v1/loss"


@pytest.mark.parametrize("endpoint", ["/v1/score", "/v1/flag"])
@pytest.mark.parametrize(("name", "body"), HANDED_ON, ids=[n for n, _ in HANDED_ON])
def test_everything_else_is_handed_to_the_stack(
    shared: tuple[TestClient, TestClient], endpoint: str, name: str, body: Any
) -> None:
    lane, stack = shared
    before = lane.app.lane.answered
    _same(_send(lane, endpoint, body), _send(stack, endpoint, body))
    assert lane.app.lane.answered == before


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-encoding": "gzip"},
        {"idempotency-key": "k1"},
        {"inference-header-content-length": "10"},
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "application/vnd.api+json"},
        {"x-request-id": "agent-7:step.3"},
    ],
    ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()),
)
def test_headers(make_client: MakeClient, headers: dict[str, str]) -> None:
    lane, stack = _pair(make_client)
    body = {"predictions": _P, "labels": _Y}
    a, b = _send(lane, "/v1/score", body, headers), _send(stack, "/v1/score", body, headers)
    _same(a, b) if "x-request-id" not in headers else None
    assert a.status_code == b.status_code and a.content == b.content
    if "x-request-id" in headers:
        assert a.headers["x-request-id"] == b.headers["x-request-id"] == headers["x-request-id"]
        assert lane.app.lane.answered == 1


def test_no_content_type_is_json(make_client: MakeClient) -> None:
    lane, stack = _pair(make_client)
    content = json.dumps({"predictions": _P, "labels": _Y}).encode()
    a, b = (c.post("/v1/score", content=content) for c in (lane, stack))
    _same(a, b)
    assert a.status_code == 200 and lane.app.lane.answered == 1


def test_a_body_over_the_inline_size_goes_to_the_stack(make_client: MakeClient) -> None:
    lane, stack = _pair(make_client, inline_body_bytes=256)
    body = {"predictions": _P, "labels": _Y}  # about 600 bytes
    _same(_send(lane, "/v1/score", body), _send(stack, "/v1/score", body))
    assert lane.app.lane.answered == 0
    small = {"predictions": [[0.5, 0.5]], "labels": [1]}
    _same(_send(lane, "/v1/score", small), _send(stack, "/v1/score", small))
    assert lane.app.lane.answered == 1


def test_api_keys(make_client: MakeClient) -> None:
    lane, stack = _pair(make_client, api_keys=["k-one", "k-two"])
    body = {"predictions": _P, "labels": _Y}
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"x-api-key": "k-one"},
        {"authorization": "Bearer k-two"},
        {"authorization": "Basic k-two"},
    ):
        _same(_send(lane, "/v1/score", body, headers), _send(stack, "/v1/score", body, headers))
    assert lane.app.lane.answered == 2


def test_no_lane_with_cors(make_client: MakeClient) -> None:
    """CORSMiddleware adds ``Vary: Origin`` to every answer: with CORS on, the stack answers."""
    lane, stack = _clients(make_client, cors_origins=["https://dash.example"])
    assert lane.app.lane is None
    body = {"predictions": _P, "labels": _Y}
    for headers in ({"origin": "https://dash.example"}, {}):
        _same(_send(lane, "/v1/score", body, headers), _send(stack, "/v1/score", body, headers))


def _series(client: TestClient, prefix: str) -> dict[str, float]:
    """The samples of ``prefix`` in /metrics (durations left out: they differ)."""
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix) and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_are_counted_as_by_the_stack(make_client: MakeClient) -> None:
    lane, stack = _pair(make_client)
    bodies = [body for _, body in PLAIN[:6]] + [{"predictions": [[0.5, 0.2]], "labels": [0]}]
    for client in (lane, stack):
        for endpoint in ENDPOINTS:
            for body in bodies:
                _send(client, endpoint, body)
    for prefix in (
        "xent_http_requests_total",
        "xent_items_scored_total",
        "xent_http_request_duration_seconds_count",
    ):
        assert _series(lane, prefix) == _series(stack, prefix)
    assert _series(lane, 'xent_http_requests_total{method="POST",route="/v1/score",status="200"}')


def test_a_full_house_is_the_stacks_503(make_client: MakeClient) -> None:
    lane, stack = _pair(make_client)
    for client in (lane, stack):
        client.app.state.slots.in_use = client.app.state.slots.limit
    body = {"predictions": _P, "labels": _Y}
    a, b = _send(lane, "/v1/score", body), _send(stack, "/v1/score", body)
    _same(a, b)
    assert a.status_code == 503 and a.headers["retry-after"] == "1"


# --- the body, at the ASGI level -----------------------------------------------------------


def _scope(body: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return post_scope(headers)


async def _call(app: Any, body: bytes, messages: list[dict[str, Any]], stall: bool) -> list[Any]:
    """Run one request: ``messages`` are received in turn, then the receive waits forever
    (``stall``) or reports a disconnect."""
    sent: list[Any] = []
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        await app(_scope(body), receive, send)
    return sent


def _run(settings: Settings, body: bytes, messages: list[dict[str, Any]], stall: bool) -> Any:
    app = create_app(settings)
    sent = asyncio.run(_call(app, body, messages, stall))
    status = sent[0]["status"]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return app, status, content


def test_a_body_in_pieces(tmp_path: Any) -> None:
    body = json.dumps({"predictions": _P, "labels": _Y}).encode()
    pieces = [
        {"type": "http.request", "body": body[:50], "more_body": True},
        {"type": "http.request", "body": body[50:51], "more_body": True},
        {"type": "http.request", "body": body[51:], "more_body": False},
    ]
    app, status, content = _run(Settings(data_dir=tmp_path), body, pieces, stall=True)
    assert status == 200 and app.lane.answered == 1
    _, status2, content2 = _run(Settings(data_dir=tmp_path, fast_lane=False), body, pieces, True)
    assert (status, content) == (status2, content2)


@pytest.mark.parametrize("fast_lane", [True, False])
def test_a_stalled_body_is_the_stacks_408_at_the_same_deadline(
    tmp_path: Any, fast_lane: bool
) -> None:
    body = json.dumps({"predictions": _P, "labels": _Y}).encode()
    first = [{"type": "http.request", "body": body[:20], "more_body": True}]
    settings = Settings(data_dir=tmp_path, body_timeout=0.3, fast_lane=fast_lane)
    loop_time: list[float] = []

    async def timed() -> list[Any]:
        app = create_app(settings)
        begin = asyncio.get_running_loop().time()
        sent = await _call(app, body, first, stall=True)
        loop_time.append(asyncio.get_running_loop().time() - begin)
        return sent

    sent = asyncio.run(timed())
    assert sent[0]["status"] == 408
    assert b"request body not received within 1 s" in sent[1]["body"]
    assert 0.3 <= loop_time[0] < 0.3 + 0.25  # one deadline, not the lane's then the stack's


def test_a_client_gone_before_its_body_is_handed_on(tmp_path: Any) -> None:
    body = json.dumps({"predictions": _P, "labels": _Y}).encode()
    first = [{"type": "http.request", "body": body[:20], "more_body": True}]
    results = []
    for fast_lane in (True, False):
        settings = Settings(data_dir=tmp_path, fast_lane=fast_lane)
        app = create_app(settings)
        sent = asyncio.run(_call(app, body, first, stall=False))
        results.append([m.get("status") for m in sent])
        if fast_lane:
            assert app.lane.answered == 0
    assert results[0] == results[1]


def test_the_lane_answers_numbers_as_xentcore(make_client: MakeClient) -> None:
    """A spot check beyond the byte comparison: the lane's loss is xentcore's."""
    import xentcore

    lane = make_client()
    out = _send(lane, "/v1/loss", {"predictions": _Z, "labels": _Y, "input_type": "logits"}).json()
    ref = xentcore.score(np.asarray(_Z), np.asarray(_Y), input_type="logits")
    assert math.isclose(out["loss"]["mean"], ref.loss_mean, rel_tol=0, abs_tol=0)
    assert lane.app.lane.answered == 1


def test_an_unexpected_error_in_the_lane_is_logged_and_handed_on(
    make_client: MakeClient, monkeypatch: Any, caplog: Any
) -> None:
    import service.convert
    import service.fastlane

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail /etc/passwd")

    lane, stack = _pair(make_client, raise_server_exceptions=False)
    monkeypatch.setattr(service.fastlane, "fast_score_request", explode)
    body = {"predictions": _P, "labels": _Y}
    with caplog.at_level("ERROR", logger="service"):
        _same(_send(lane, "/v1/score", body), _send(stack, "/v1/score", body))
    assert lane.app.lane.answered == 0
    assert "fast lane: unexpected error" in caplog.text
    monkeypatch.setattr(service.convert, "score_batch", explode)  # the stack fails too: its 500
    a = _send(lane, "/v1/score", body)
    assert a.status_code == 500
    assert a.json() == {"detail": "internal error", "request_id": a.headers["x-request-id"]}


def test_fastapi_telemetry_keeps_its_config_and_its_requests(
    make_client: MakeClient, monkeypatch: Any
) -> None:
    """With an OpenTelemetry provider configured, FastAPI's native telemetry sees every request:
    the lane stands aside. Asking FastAPI leaves its own telemetry config as it was."""
    lane = make_client()
    app = lane.app
    body = {"predictions": _P, "labels": _Y}
    assert _send(lane, "/v1/score", body).status_code == 200 and app.lane.answered == 1
    assert isinstance(app._telemetry, dict)  # FastAPI's config, untouched by the lane's check
    monkeypatch.setattr(app._native_telemetry, "enabled", lambda: True)
    app._lane_telemetry_at = -math.inf  # asked again at once, not within the second
    assert _send(lane, "/v1/score", body).status_code == 200
    assert app.lane.answered == 1
