"""A battery of hostile requests against one real ``xent serve`` process.

Every case gets its documented 4xx (README, "Errors") or is closed by the server, never a 5xx;
no error body exceeds 4 KB or contains the unique marker put in the input; the server answers
``/healthz`` throughout; and nothing from a rejected request reaches the store (every JSON body
names the stream ``STREAM``, whose summary must still be 404 at the end).

Requests that no well-behaved client library would send (bad framing, huge or partial headers,
partial bodies) go through raw sockets; the rest through httpx. The server runs with small
limits so the timeouts and size checks cost little time.

The monitoring reads are probed against ``READS``, a stream recorded once by a well-formed
request (a hostile time, bucket or cursor must be refused even when there is data to show).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import re
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from service.app import create_app
from tests.service.conftest import TestClient
from tests.support.asgi import call
from tests.support.server import Server, xent_serve

KEY = "hostile-key-0123456789abcdef"
MARK = "ZQXJ-hostile-7731"
STREAM = "hostile-battery"
CONTROL = "hostile-control"
READS = "hostile-reads"
MAX_BODY = 1 << 20
MAX_ITEMS = 1000
BODY_TIMEOUT = 2
KEEP_ALIVE = 2
HEADER_TIMEOUT = 2
MAX_HEAD = 16384
MAX_ERROR_BYTES = 4096
JSON_TYPE = "application/json"
NO_KEY: dict[str, str] = {}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "XENT_API_KEYS": KEY,
        "XENT_MAX_BODY_BYTES": str(MAX_BODY),
        "XENT_MAX_ITEMS": str(MAX_ITEMS),
        "XENT_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "XENT_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE),
        "XENT_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "XENT_MAX_HEADER_BYTES": str(MAX_HEAD),
        "XENT_LOG_LEVEL": "warning",
    }
    with xent_serve(tmp_path_factory.mktemp("hostile"), env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=15) as client:
        yield client


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _body(template: str, *, stream: bool = True) -> bytes:
    """``template`` with ``@M`` -> the marker; a JSON object also names ``STREAM`` first."""
    text = template.replace("@M", MARK)
    if stream and text.startswith("{"):
        text = '{"stream": "' + STREAM + '", ' + text[1:]
    return text.encode()


def check_refusal(status: int, expected: Iterable[int], body: bytes, head: bytes = b"") -> None:
    """The refusal contract: the expected 4xx, a small body, no marker, JSON from the app."""
    allowed = set(expected)
    assert status in allowed, (status, body[:300])
    assert 400 <= status < 500
    assert len(body) < MAX_ERROR_BYTES, len(body)
    assert MARK.encode() not in body
    assert MARK.encode() not in head
    if b"application/json" in head.lower() or not head:
        assert "detail" in orjson.loads(body)


@dataclass(frozen=True)
class Raw:
    """What came back on a raw socket: status (None if closed first), head, body, seconds."""

    status: int | None
    head: bytes
    body: bytes
    seconds: float


def _read_response(sock: socket.socket) -> tuple[int | None, bytes, bytes]:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length and len(rest) >= int(length.group(1)):
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(match.group(1)) if match else None), head, rest


def raw(server: Server, request: bytes, body: Iterable[bytes] = (), *, timeout: float = 15) -> Raw:
    """Send ``request`` (and then the ``body`` chunks) on a fresh socket; read one response.

    A server that answers early and closes may reset the connection while chunks are still
    being written: the response already sent is then read all the same.
    """
    begin = time.monotonic()
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            for chunk in body:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, head, rest = _read_response(sock)
    return Raw(status, head, rest, time.monotonic() - begin)


def _post_head(*lines: str, key: bool = True, path: str = "/v1/score") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {JSON_TYPE}"]
    if key:
        head.append(f"X-API-Key: {KEY}")
    return ("\r\n".join([*head, *lines]) + "\r\n\r\n").encode("latin-1")


# --- bodies sent with httpx ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    body: bytes
    status: tuple[int, ...] = (422,)
    path: str = "/v1/score"
    headers: dict[str, str] = field(default_factory=dict)
    key: bool = True


DEEP = 100_000
TENSOR_REF = '{"predictions": {"datatype": "FP32", "shape": [2], "binary_data_size": 8}}'
P3 = "[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]"

CASES: dict[str, Case] = {
    # malformed JSON
    "truncated": Case(_body('{"predictions": [0.5, "@M"')),
    "trailing-garbage": Case(_body('{"predictions": [0.5]} @M')),
    "not-json": Case(_body("@M")),
    "empty-body": Case(b""),
    "top-level-array": Case(_body('["@M"]')),
    "top-level-string": Case(_body('"@M"')),
    "top-level-null": Case(b"null"),
    "single-quotes": Case(_body("{'predictions': [0.5], 'x': '@M'}")),
    "utf8-bom": Case(b"\xef\xbb\xbf" + _body('{"predictions": [0.5]}')),
    "invalid-utf8": Case(
        _body('{"predictions": [0.5], "ids": ["@M"]}').replace(b"ZQ", b"\xff\xfe")
    ),
    "lone-surrogate": Case(_body('{"predictions": [0.5], "ids": ["\\ud800@M"]}')),
    "deep-arrays": Case(_body('{"predictions": ' + "[" * DEEP + "]" * DEEP + "}")),
    "deep-objects": Case(
        _body('{"predictions": [0.5], "flag": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}")
    ),
    # numbers
    "5000-digit-prediction": Case(_body('{"predictions": [1' + "0" * 5000 + "]}")),
    "5000-digit-label": Case(
        _body('{"predictions": [[0.5, 0.5]], "labels": [1' + "0" * 5000 + "]}")
    ),
    "exponent-overflow": Case(_body('{"predictions": [0.5], "labels": [1e5000]}')),
    "nan": Case(_body('{"predictions": [0.5, NaN]}')),
    "infinity": Case(_body('{"predictions": [Infinity, 0.5]}')),
    "minus-infinity": Case(_body('{"predictions": [[0.5, -Infinity]], "labels": [0]}')),
    # structure and types
    "unknown-field": Case(_body('{"predictions": [0.5], "weights": "@M"}')),
    "unknown-10k-key": Case(_body('{"predictions": [0.5], "' + "k" * 10_000 + '": 1}')),
    "string-for-number": Case(_body('{"predictions": ["0.5@M"]}')),
    "boolean-for-number": Case(_body('{"predictions": [true, 0.5]}')),
    "null-for-number": Case(_body('{"predictions": [null]}')),
    "object-for-number": Case(_body('{"predictions": [{"x": "@M"}]}')),
    "predictions-null": Case(_body('{"predictions": null}')),
    "predictions-missing": Case(_body('{"labels": [1]}')),
    "string-label": Case(_body('{"predictions": [[0.5, 0.5]], "labels": ["@M"]}')),
    "boolean-label": Case(_body('{"predictions": [[0.5, 0.5]], "labels": [true]}')),
    "fractional-label": Case(_body('{"predictions": [[0.5, 0.5]], "labels": [1.5]}')),
    "option-wrong-type": Case(_body('{"predictions": [0.5], "flag": {"min_confidence": "@M"}}')),
    "bad-stream-name": Case(
        _body('{"predictions": [0.5], "stream": "no spaces @M"}', stream=False)
    ),
    "100k-stream-name": Case(
        _body('{"predictions": [0.5], "stream": "' + MARK * 6000 + '"}', stream=False)
    ),
    # values and shapes
    "empty-batch": Case(_body('{"predictions": []}')),
    "empty-rows": Case(_body('{"predictions": [[], []]}')),
    "ragged-rows": Case(_body('{"predictions": [[0.5, 0.5], [1.0]]}')),
    "labels-too-short": Case(_body('{"predictions": ' + P3 + ', "labels": [0]}')),
    "labels-too-long": Case(_body('{"predictions": [0.5], "labels": [0, 1, 1]}')),
    "ids-mismatch": Case(_body('{"predictions": [0.5, 0.4], "ids": ["@M"]}')),
    "label-out-of-range": Case(_body('{"predictions": ' + P3 + ', "labels": [0, 3]}')),
    "negative-label": Case(_body('{"predictions": ' + P3 + ', "labels": [-1, 0]}')),
    "binary-label-2": Case(_body('{"predictions": [0.5], "labels": [2]}')),
    "row-sum-0.9": Case(_body('{"predictions": [[0.5, 0.3, 0.1]], "labels": [0]}')),
    "probability-above-1": Case(_body('{"predictions": [0.5, 1.2]}')),
    "negative-probability": Case(_body('{"predictions": [-0.1]}')),
    "loss-without-labels": Case(_body('{"predictions": [0.3]}'), path="/v1/loss"),
    "calibration-target-3": Case(
        _body('{"predictions": [0.5], "labels": [3]}'), path="/v1/calibration"
    ),
    "positive-logprob": Case(
        _body('{"sequences": [{"token_logprobs": [-0.1, 0.5]}]}'), path="/v1/sequences/score"
    ),
    "empty-sequence": Case(
        _body('{"sequences": [{"token_logprobs": []}]}'), path="/v1/sequences/score"
    ),
    "sequence-deep": Case(
        _body('{"sequences": ' + "[" * DEEP + "]" * DEEP + "}"), path="/v1/sequences/score"
    ),
    # binary tensors
    "tensor-without-header": Case(_body(TENSOR_REF)),
    "tensor-header-past-body": Case(
        _body('{"predictions": [0.5]}'), headers={"Inference-Header-Content-Length": "99999"}
    ),
    "tensor-header-not-a-number": Case(
        _body('{"predictions": [0.5]}'), headers={"Inference-Header-Content-Length": "-1"}
    ),
    "tensor-size-mismatch": Case(
        _body(TENSOR_REF) + b"\0" * 4,
        headers={
            "Inference-Header-Content-Length": str(len(_body(TENSOR_REF))),
            "Content-Type": "application/octet-stream",
        },
    ),
    # limits
    "too-many-items": Case(
        _body('{"predictions": [' + ", ".join(["0.5"] * (MAX_ITEMS + 1)) + "]}"), status=(413,)
    ),
    # content types
    "text-plain": Case(
        _body('{"predictions": [0.5]}'), (415,), headers={"Content-Type": "text/plain"}
    ),
    "form": Case(
        b"predictions=0.5&x=" + MARK.encode(),
        (415,),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "multipart": Case(
        _body('{"predictions": [0.5]}'),
        (415,),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    ),
    "xml": Case(
        b"<predictions>" + MARK.encode() + b"</predictions>",
        (415,),
        headers={"Content-Type": "application/xml"},
    ),
    "gzip-body": Case(
        gzip.compress(_body('{"predictions": [0.5], "ids": ["@M"]}')),
        (415, 400, 422),
        headers={"Content-Encoding": "gzip"},
    ),
    # API keys
    "no-key": Case(_body('{"predictions": [0.5]}'), (401,), key=False),
    "wrong-key-same-length": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": "x" * len(KEY)}, key=False
    ),
    "wrong-key-shorter": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": "k"}, key=False
    ),
    "wrong-key-8k": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": "k" * 8192}, key=False
    ),
    "key-prefix": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": KEY[:-1]}, key=False
    ),
    "key-plus-one": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": KEY + "x"}, key=False
    ),
    "key-is-marker": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"X-API-Key": MARK}, key=False
    ),
    "bearer-empty": Case(
        _body('{"predictions": [0.5]}'), (401,), headers={"Authorization": "Bearer  -"}, key=False
    ),
    "bearer-wrong": Case(
        _body('{"predictions": [0.5]}'),
        (401,),
        headers={"Authorization": f"Bearer {MARK}"},
        key=False,
    ),
    "basic-auth": Case(
        _body('{"predictions": [0.5]}'),
        (401,),
        headers={"Authorization": f"Basic {KEY}"},
        key=False,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_body(http: httpx.Client, name: str) -> None:
    case = CASES[name]
    headers = {"Content-Type": JSON_TYPE, **({"X-API-Key": KEY} if case.key else NO_KEY)}
    headers.update(case.headers)
    response = http.post(case.path, content=case.body, headers=headers)
    head = "\r\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
    check_refusal(response.status_code, case.status, response.content, head)


def test_marker_is_checked_at_all(http: httpx.Client) -> None:
    """The battery's echo check is not vacuous: the marker comes back where it should."""
    body = orjson.dumps({"predictions": [0.5], "ids": [MARK]})
    response = http.post("/v1/score", content=body, headers={"X-API-Key": KEY})
    assert response.status_code == 200 and MARK in response.text


# --- framing, sizes and time, on raw sockets -----------------------------------------------


def test_oversized_body_with_content_length(server: Server) -> None:
    reply = raw(server, _post_head(f"Content-Length: {2 * MAX_BODY}"), [b"[" * 65536] * 4)
    check_refusal(reply.status or 0, (413,), reply.body, reply.head)
    assert reply.seconds < 2


def test_content_length_of_a_terabyte_with_one_byte(server: Server) -> None:
    reply = raw(server, _post_head(f"Content-Length: {10**12}") + b"{")
    check_refusal(reply.status or 0, (413,), reply.body, reply.head)
    assert reply.seconds < 2


def test_oversized_chunked_body(server: Server) -> None:
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    reply = raw(
        server, _post_head("Transfer-Encoding: chunked"), [chunk] * (2 * MAX_BODY // 0x10000)
    )
    check_refusal(reply.status or 0, (413,), reply.body, reply.head)


def test_wrong_key_is_refused_before_the_size(server: Server) -> None:
    reply = raw(server, _post_head(f"Content-Length: {10**12}", "X-API-Key: nope", key=False))
    check_refusal(reply.status or 0, (401,), reply.body, reply.head)


def test_non_ascii_key_bytes(server: Server) -> None:
    request = _post_head("Content-Length: 2", key=False)[:-2] + b"X-API-Key: \xe9\xff\x80\r\n\r\n{}"
    reply = raw(server, request)
    check_refusal(reply.status or 0, (401,), reply.body, reply.head)


def test_partial_body_times_out_with_408(server: Server) -> None:
    reply = raw(server, _post_head("Content-Length: 100") + b'{"predictions": [0.5')
    check_refusal(reply.status or 0, (408,), reply.body, reply.head)
    assert BODY_TIMEOUT - 0.5 < reply.seconds < BODY_TIMEOUT + 4


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="garbage-request-line"),
        pytest.param(_post_head("Content-Length: -1"), id="negative-content-length"),
        pytest.param(_post_head("Content-Length: 12x"), id="non-numeric-content-length"),
        pytest.param(
            _post_head("Content-Length: 2", "Content-Length: 3") + b"{}", id="two-lengths"
        ),
        pytest.param(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n", id="nul-in-header"),
    ],
)
def test_bad_framing_is_a_400(server: Server, request_bytes: bytes) -> None:
    reply = raw(server, request_bytes)
    assert reply.status == 400, reply.head  # uvicorn's own "Invalid HTTP request received."
    assert len(reply.body) < MAX_ERROR_BYTES


def test_length_and_chunked_together_is_not_accepted(server: Server) -> None:
    """Request smuggling shape: h11 lets chunked win; the empty body is then invalid JSON."""
    body = b"0\r\n\r\n" + _body('{"predictions": [0.5]}')
    reply = raw(server, _post_head("Content-Length: 30", "Transfer-Encoding: chunked") + body)
    assert reply.status is not None and 400 <= reply.status < 500


def test_huge_header_is_refused_or_closed(server: Server) -> None:
    """A 1.6 MB header line streamed in is refused (4xx) or the connection closed at once."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=3) as sock:
        try:
            sock.sendall(_post_head()[:-2] + b"X-Big: ")
            for _ in range(200):
                sock.sendall(b"a" * 8192)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status, head, _ = _read_response(sock)
        except TimeoutError:
            pytest.fail("the connection was held open with 1.6 MB of headers buffered")
    assert status is None or 400 <= status < 500, head


def test_many_headers(server: Server) -> None:
    lines = [f"X-H{i}: {MARK}" for i in range(3000)]
    reply = raw(server, _post_head(*lines, "Content-Length: 2") + b"{}")
    assert reply.status is None or 400 <= reply.status < 500, reply.head
    assert MARK.encode() not in reply.body


def test_100k_url(server: Server) -> None:
    request = f"GET /v1/streams/{'a' * 100_000}/summary HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}"
    reply = raw(server, request.encode() + b"\r\n\r\n")
    assert reply.status is not None and 400 <= reply.status < 500
    assert len(reply.body) < MAX_ERROR_BYTES


def _head_of(size: int, path: str = "/healthz") -> bytes:
    """A GET request head of exactly ``size`` bytes (padded by one header line)."""
    start = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\nX-Pad: ".encode()
    return start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"


def _send_in_writes(server: Server, writes: Iterable[bytes], pause: float = 0.002) -> int | None:
    """Send each of ``writes`` on its own, ``pause`` seconds apart (TCP_NODELAY: each write is
    its own segment and, with the pause, its own read); the status answered."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for chunk in writes:
                sock.sendall(chunk)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock)[0]


def _split(data: bytes, *, at: Iterable[int]) -> list[bytes]:
    cuts = [0, *sorted(at), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


#: How a head is split into writes (each a function of the head's bytes).
SPLITS = {
    "1k-writes": lambda head: _split(head, at=range(1000, len(head), 1000)),
    "two-writes": lambda head: _split(head, at=[MAX_HEAD - 100]),
    "last-64-bytes-one-by-one": lambda head: _split(head, at=range(len(head) - 64, len(head))),
    "first-64-bytes-one-by-one": lambda head: _split(head, at=range(1, 65)),
}


HEAD_SIZES = [
    pytest.param(MAX_HEAD - 1, 200, id="limit-1"),
    pytest.param(MAX_HEAD, 200, id="limit"),
    pytest.param(MAX_HEAD + 1, 431, id="limit+1"),
    pytest.param(2 * MAX_HEAD, 431, id="2x-limit"),
    pytest.param(12 * MAX_HEAD, 431, id="12x-limit"),
]


@pytest.mark.parametrize(("size", "status"), HEAD_SIZES)
def test_head_limit_holds_for_a_head_in_one_write(server: Server, size: int, status: int) -> None:
    """A whole head in one write (one read on loopback) is counted like any other."""
    reply = raw(server, _head_of(size))
    assert reply.status == status, reply.head
    if status == 431:
        assert reply.body == b"request head too large"


@pytest.mark.parametrize(("size", "status"), HEAD_SIZES[:4])
@pytest.mark.parametrize("split", list(SPLITS))
def test_head_limit_holds_for_a_head_in_many_writes(
    server: Server, size: int, status: int, split: str
) -> None:
    """The read that completes a head counts too, wherever the reads split it."""
    assert _send_in_writes(server, SPLITS[split](_head_of(size))) == status


def test_head_limit_holds_for_a_pipelined_head(server: Server) -> None:
    """A head over the limit that starts in the middle of a read, behind a pipelined request,
    gets its 431; one just at the limit is answered."""
    ok = _head_of(200)
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(ok + _head_of(2 * MAX_HEAD))
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):  # until the server closes
                received += chunk
    # the first request may or may not be answered before the connection is closed
    assert b"HTTP/1.1 431" in received and received.count(b"HTTP/1.1 200") <= 1, received
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(ok + _head_of(MAX_HEAD))
        received = b""
        while received.count(b"HTTP/1.1 200") < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert b"HTTP/1.1 431" not in received


def test_a_head_over_the_limit_never_reaches_the_app(server: Server) -> None:
    """A scoring request whose head is over the limit is refused before the app sees it: not
    a 401 (wrong key), not a 200 (right key), and nothing recorded."""
    body = b'{"predictions": [0.5], "stream": "' + STREAM.encode() + b'"}'
    pad = "X-Pad: " + "p" * MAX_HEAD
    request = _post_head(pad, f"Content-Length: {len(body)}") + body
    reply = raw(server, request)
    assert reply.status == 431, reply.head


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/score/"),
        ("POST", "/v1/score/"),
        ("GET", "/healthz/"),
        ("GET", "/metrics/"),
        ("GET", "/docs/"),
        ("GET", "/v1/streams/"),
        ("GET", f"/v1/streams/{STREAM}/summary/"),
    ],
)
def test_forged_host_is_not_reflected_into_a_redirect(
    http: httpx.Client, method: str, path: str
) -> None:
    """A stray trailing slash is a 404: no redirect to an absolute URL built from Host."""
    headers = {"Host": "evil.example", "X-API-Key": KEY, "Content-Type": JSON_TYPE}
    response = http.request(
        method, path, headers=headers, content=b"{}" if method == "POST" else None
    )
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers
    assert b"evil.example" not in response.content


def test_dashboard_redirect_stays_relative(http: httpx.Client) -> None:
    response = http.get("/dashboard", headers={"Host": "evil.example", "X-API-Key": KEY})
    assert response.status_code == 307 and response.headers["location"] == "/dashboard/"


@pytest.mark.parametrize(
    ("route", "query"),
    [
        pytest.param("summary", "bucket=" + "9" * 5000 + "m", id="5000-digit-bucket"),
        pytest.param("summary", "bucket=0m", id="zero-bucket"),
        pytest.param("summary", "since=" + "9" * 500, id="500-digit-since"),
        pytest.param("summary", "since=2026-13-45", id="impossible-date"),
        pytest.param("flagged", "limit=-1", id="negative-limit"),
        pytest.param("flagged", "limit=" + "9" * 500, id="500-digit-limit"),
    ],
)
def test_hostile_query(http: httpx.Client, route: str, query: str) -> None:
    response = http.get(f"/v1/streams/{STREAM}/{route}?{query}", headers={"X-API-Key": KEY})
    assert 400 <= response.status_code < 500, response.text
    assert len(response.content) < MAX_ERROR_BYTES


@pytest.fixture(scope="module")
def reads(http: httpx.Client) -> str:
    """``READS``, recorded with two flagged items (once for the module)."""
    body = {"predictions": [0.5, 0.45, 0.9], "labels": [1, 1, 1], "stream": READS}
    answer = http.post("/v1/score", json=body, headers={"X-API-Key": KEY})
    assert answer.status_code == 200 and answer.json()["recorded"] is True
    return READS


def _b64(text: str | bytes) -> str:
    raw_bytes = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw_bytes).decode().rstrip("=")


READ_CASES = [
    # since / until at the limits of the calendar, with UTC offsets
    ("summary", "since", "0001-01-01T00:00:00+01:00"),
    ("summary", "until", "0001-01-01T00:00:00+01:00"),
    ("summary", "since", "9999-12-31T23:59:59-14:00"),
    ("summary", "until", "9999-12-31T23:59:59-14:00"),
    ("summary", "until", "9999-12-31T23:59:59.999999+00:00"),
    ("summary", "since", "0001-01-01T00:00:00Z"),
    ("summary", "since", "1969-12-31T23:59:59Z"),
    ("flagged", "since", "0001-01-01T00:00:00+01:00"),
    ("flagged", "since", "9999-12-31T23:59:59-14:00"),
    ("summary", "since", "2026-01-01T00:00:00\x00"),
    ("summary", "since", "@M"),
    # bucket widths that overflow the calendar
    ("summary", "bucket", "999999999w"),
    ("summary", "bucket", "999999999d"),
    ("summary", "bucket", "999999999h"),
    ("summary", "bucket", "10001w"),
    ("summary", "bucket", "\u0661w"),
    # forged cursors
    ("flagged", "cursor", "@M"),
    ("flagged", "cursor", "A" * 5000),
    ("flagged", "cursor", "not-base64!"),
    ("flagged", "cursor", _b64("1.2.3")),
    ("flagged", "cursor", _b64("9" * 40 + ".0")),
    ("flagged", "cursor", _b64(f"1.{2**63}")),
    ("flagged", "cursor", _b64("-1.0")),
    ("flagged", "cursor", _b64("01.0")),
    ("flagged", "cursor", _b64("\u0661.\u0662")),
    ("flagged", "cursor", _b64("\u00e9.1")),
    ("flagged", "cursor", _b64(b"\xff\xfe")),
]


@pytest.mark.parametrize(("route", "name", "value"), READ_CASES)
def test_hostile_read_is_a_422_naming_the_parameter(
    http: httpx.Client, reads: str, route: str, name: str, value: str
) -> None:
    """Never a 500 (or a 503 and a logged traceback): a 422 at ``["query", name]``."""
    params = {name: value.replace("@M", MARK)}
    response = http.get(f"/v1/streams/{reads}/{route}", params=params, headers={"X-API-Key": KEY})
    head = "\r\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
    check_refusal(response.status_code, (422,), response.content, head)
    assert [e["loc"] for e in response.json()["detail"]] == [["query", name]]


# --- slow clients ----------------------------------------------------------------------------


def _partial_header_sockets(server: Server, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        socks.append(sock)
    return socks


def test_slow_headers_do_not_block_others(server: Server, http: httpx.Client) -> None:
    socks = _partial_header_sockets(server, 50)
    try:
        begin = time.monotonic()
        assert http.get("/healthz").status_code == 200
        score = http.post("/v1/score", json={"predictions": [0.5]}, headers={"X-API-Key": KEY})
        assert score.status_code == 200
        assert time.monotonic() - begin < 2
    finally:
        for sock in socks:
            sock.close()


def _half_sent_request(server: Server, *, after_a_request: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    if after_a_request:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock)[0] == 200
    sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
    return sock


@pytest.mark.parametrize("after_a_request", [False, True], ids=["fresh", "kept-alive"])
def test_partial_headers_are_closed(server: Server, after_a_request: bool) -> None:
    """Half-sent headers get a 408 and a close once XENT_HEADER_TIMEOUT has passed."""
    with _half_sent_request(server, after_a_request=after_a_request) as sock:
        sock.settimeout(HEADER_TIMEOUT + 3)
        start = time.monotonic()
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
            closed = True
        except TimeoutError:
            closed = False
        waited = time.monotonic() - start
    assert closed, "the connection was held open"
    assert received.startswith(b"HTTP/1.1 408"), received[:80]
    assert HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 2.5


def test_idle_connection_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=HEADER_TIMEOUT + 3) as s:
        assert s.recv(1024) == b""  # nothing sent: closed without a word


# --- found in-process: cases whose 500 would fail the real server's clean-log check ----------


def test_unicode_digit_in_tensor_header(tmp_path: Path) -> None:
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/score",
            content=b'{"predictions": [0.5]}',
            headers=[(b"Inference-Header-Content-Length", b"\xb2")],  # "²" in latin-1
        )
    check_refusal(response.status_code, (422,), response.content)


def test_unicode_digit_in_content_length(tmp_path: Path) -> None:
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def run() -> None:
        sent.extend(await call(app, receive, [(b"content-length", b"\xb2")]))

    with contextlib.suppress(ValueError):
        anyio.run(run)
    assert sent and sent[0]["status"] == 400


def test_content_encoding_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/v1/score",
        content=b'{"predictions": [0.5]}',
        headers={"X-API-Key": KEY, "Content-Type": JSON_TYPE, "Content-Encoding": "gzip"},
    )
    check_refusal(response.status_code, (415,), response.content)


# --- after the battery -----------------------------------------------------------------------


def test_zz_server_healthy_and_store_untouched(server: Server, http: httpx.Client) -> None:
    """Runs last (file order): the server is up, and no rejected request was recorded."""
    keyed = {"X-API-Key": KEY}
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    control = http.post(
        "/v1/score", json={"predictions": [0.5, 0.7], "stream": CONTROL}, headers=keyed
    )
    assert control.status_code == 200 and control.json()["recorded"] is True
    summary = http.get(f"/v1/streams/{CONTROL}/summary", headers=keyed)
    assert summary.status_code == 200
    assert summary.json()["total"]["n_items"] == 2
    assert http.get(f"/v1/streams/{STREAM}/summary", headers=keyed).status_code == 404
    streams: Any = http.get("/v1/streams", headers=keyed).json()
    assert STREAM not in orjson.dumps(streams).decode()
    assert "Traceback" not in server.log.read_text()


# --- binary tensors that declare shapes no array can have (issue 14, item 4) -----------------

HUGE = 4611686018427387904  # 2**62


@pytest.mark.parametrize(
    ("path", "ref", "loc"),
    [
        ("/v1/score", {"shape": [0, HUGE]}, ["predictions", "shape", 1]),
        ("/v1/score", {"shape": [HUGE, 0]}, ["predictions", "shape", 0]),
        ("/v1/score", {"shape": [0, 2**63 - 1]}, ["predictions", "shape", 1]),
        ("/v1/score", {"shape": [2**62, 4]}, ["predictions", "shape", 0]),
        ("/v1/score", {"shape": [2**40, 2**40]}, ["predictions", "shape", 0]),
        ("/v1/score", {"shape": [2**64]}, ["predictions", "shape", 0]),
        ("/v1/score", {"shape": [-1, 2]}, ["predictions", "shape", 0]),
        ("/v1/score", {"shape": [0, 0, HUGE]}, ["predictions", "shape"]),
        (
            "/v1/score",
            {"shape": [2, 2], "binary_data_size": 2**63},
            ["predictions", "binary_data_size"],
        ),
        (
            "/v1/sequences/score",
            {"shape": [0, HUGE]},
            ["sequences", 0, "token_logprobs", "shape", 1],
        ),
    ],
)
def test_huge_declared_tensor_shape_is_a_422(
    http: httpx.Client, path: str, ref: dict[str, Any], loc: list[Any]
) -> None:
    tensor = {"datatype": "FP32", "binary_data_size": 0, **ref}
    head = (
        {"sequences": [{"token_logprobs": tensor}]}
        if "sequences" in path
        else {"predictions": tensor}
    )
    import json  # orjson refuses integers past 64 bits

    body = json.dumps(head).encode()
    response = http.post(
        path,
        content=body,
        headers={
            "X-API-Key": KEY,
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(body)),
        },
    )
    check_refusal(response.status_code, (422,), response.content)
    assert response.json()["detail"][0]["loc"] == ["body", *loc]
