"""413 (body and batch size), 415, 408 and the 503 in-flight limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import orjson

from service.app import create_app
from tests.support.asgi import call

P3 = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]


def test_body_over_limit_with_content_length(make_client: Any) -> None:
    client = make_client(max_body_bytes=1000)
    body = orjson.dumps({"predictions": [0.5] * 400})
    response = client.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds XENT_MAX_BODY_BYTES = 1000 bytes"}
    small = client.post("/v1/score", json={"predictions": [0.5] * 100})
    assert small.status_code == 200


def test_body_over_limit_chunked(make_client: Any) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"predictions": ['
        for _ in range(300):
            yield b"0.5, "
        yield b"0.5]}"

    response = client.post(
        "/v1/score", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413


def test_endless_body_is_cut_at_the_limit(settings_for: Any) -> None:
    """The limit holds while the body streams: an endless upload is refused after ~1 kB."""
    app = create_app(settings_for(max_body_bytes=1000))
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.request", "body": b"0" * 100, "more_body": True}

    sent = anyio.run(call, app, receive, [(b"content-type", b"application/json")])
    assert sent[0]["status"] == 413
    assert calls == 11


def test_slow_body_times_out(settings_for: Any) -> None:
    app = create_app(settings_for(body_timeout=0.2))

    async def receive() -> dict[str, Any]:
        await anyio.sleep(5)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent = anyio.run(call, app, receive, [])
    assert sent[0]["status"] == 408


def test_too_many_items_and_elements(make_client: Any) -> None:
    client = make_client(max_items=2, max_elements=5)
    response = client.post("/v1/score", json={"predictions": [0.5, 0.5, 0.5]})
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 3 items exceeds XENT_MAX_ITEMS = 2"}
    response = client.post("/v1/score", json={"predictions": P3})
    assert response.status_code == 413
    assert response.json() == {"detail": "batch of 6 numbers exceeds XENT_MAX_ELEMENTS = 5"}
    assert client.post("/v1/score", json={"predictions": [[0.5, 0.5]] * 2}).status_code == 200


def test_too_many_sequences_and_tokens(make_client: Any) -> None:
    client = make_client(max_items=2, max_elements=4)
    seqs = [{"token_logprobs": [-0.1]}] * 3
    assert client.post("/v1/sequences/score", json={"sequences": seqs}).status_code == 413
    seqs = [
        {"token_logprobs": [-0.1] * 3},
        {
            "logprobs": {
                "content": [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -0.1}]
            }
        },
    ]
    assert client.post("/v1/sequences/score", json={"sequences": seqs}).status_code == 413


def test_content_types(client: Any) -> None:
    body = orjson.dumps({"predictions": [0.5]})
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ):
        response = client.post("/v1/score", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, content_type
        assert "unsupported content type" in response.json()["detail"]
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/vnd.api+json",
    ):
        response = client.post("/v1/score", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, content_type
    assert client.post("/v1/score", content=body).status_code == 200  # no type: read as JSON


def test_invalid_content_length(settings_for: Any) -> None:
    app = create_app(settings_for())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    sent = anyio.run(call, app, receive, [(b"content-length", b"12x")])
    assert sent[0]["status"] == 400


def test_in_flight_limit_counts_scoring_not_slow_bodies(
    settings_for: Any, monkeypatch: Any
) -> None:
    """A slot is taken once the body has arrived: a slow sender holds a connection, never a
    slot; a request finding every slot busy scoring gets 503 + Retry-After at once."""
    import service.api.pipeline

    # the stack's slots (the fast lane stands aside when they are full: test_fast_lane.py)
    app = create_app(settings_for(max_concurrency=1, retry_after_seconds=2, fast_lane=False))
    release, scoring, trickle = anyio.Event(), anyio.Event(), anyio.Event()
    body = orjson.dumps({"predictions": [0.5, 0.7]})
    real = service.api.pipeline.compute

    async def held_compute(work: Any, size: int, settings: Any) -> Any:
        if size == len(b'{"predictions":[0.25]}'):  # the request that holds the slot
            scoring.set()
            await release.wait()
        return await real(work, size, settings)

    monkeypatch.setattr(service.api.pipeline, "compute", held_compute)

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:5]
        await trickle.wait()
        yield body[5:]

    async def main() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        out: dict[str, httpx.Response] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def post(name: str, **kw: Any) -> None:
                out[name] = await http.post("/v1/score", **kw)

            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: post("slow", content=slow_body()))
                await anyio.sleep(0.2)
                # the slow sender holds no slot: this one is scored
                out["while_slow"] = await http.post("/v1/score", json={"predictions": [0.5]})
                tg.start_soon(lambda: post("holder", content=b'{"predictions":[0.25]}'))
                await scoring.wait()
                out["busy"] = await http.post("/v1/score", json={"predictions": [0.5]})
                out["health"] = await http.get("/healthz")
                release.set()
                while "holder" not in out:
                    await anyio.sleep(0.01)
                trickle.set()  # the slow body arrives once the slot is free again
            out["after"] = await http.post("/v1/score", json={"predictions": [0.5]})
        return out

    out = anyio.run(main)
    assert out["while_slow"].status_code == 200
    busy = out["busy"]
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "2"
    assert busy.json() == {"detail": "server busy: too many requests in flight, retry"}
    assert out["health"].status_code == 200
    assert out["slow"].status_code == 200 and out["slow"].json()["n_items"] == 2
    assert out["holder"].status_code == 200 and out["after"].status_code == 200


def test_large_bodies_are_scored_off_the_event_loop(make_client: Any, monkeypatch: Any) -> None:
    import service.api.pipeline
    import service.http

    hops: list[str] = []
    real = service.http.in_thread

    async def counting(work: Any) -> Any:
        hops.append("thread")
        return await real(work)

    monkeypatch.setattr(service.http, "in_thread", counting)  # parse + score, and the dump
    monkeypatch.setattr(service.api.pipeline, "in_thread", counting)  # the store write
    client = make_client(inline_body_bytes=100)
    small = client.post("/v1/score", json={"predictions": [0.5, 0.9]})
    assert small.status_code == 200 and hops == []
    large = client.post("/v1/score", json={"predictions": [0.5] * 100})
    assert large.status_code == 200 and hops == ["thread", "thread"]
    hops.clear()
    client.post("/v1/score", json={"predictions": [0.5, 0.9], "stream": "s"})
    assert hops == ["thread"]  # the store write, even for a small batch
    inline = make_client(inline_body_bytes=1 << 20).post("/v1/score", json={"predictions": P3})
    threaded = make_client(inline_body_bytes=0).post("/v1/score", json={"predictions": P3})
    assert inline.json() == threaded.json()
