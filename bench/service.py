"""Speed of the HTTP service: large JSON batches and small-batch throughput. Run by hand:

    python -m bench.service            # from the repository root; about a minute
    python -m bench.service --quick    # shorter load phases

1. Server-side time of ``POST /v1/score`` for a 10,000 x 100 JSON batch (22 MB): the app is
   called in-process through ASGI with the body already in memory, so the figure is the app's
   own work (parse, validate, score, serialize) without any network or client cost. It is
   compared with the floor measured in the same run: ``orjson.loads`` + ``np.asarray`` +
   ``xentcore.score`` + ``orjson.dumps`` of the same answer. The same batch as FP32 binary
   tensors, and end to end over loopback through uvicorn, are shown for reference.
2. Requests/s for 32 x 10 batches, on uvicorn with one worker over 127.0.0.1: the service's
   ``/v1/score`` against a minimal naive FastAPI endpoint (a pydantic model body, the default
   JSON response), both driven by the same small asyncio HTTP/1.1 load generator.

Prints a Markdown table. Nothing here is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named service.py: never let it shadow the ``service`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import xentcore as xc  # noqa: E402
from tests.support.server import free_port  # noqa: E402

N, K = 10_000, 100
SMALL_N, SMALL_K = 32, 10
CONNECTIONS = 8  # = XENT_MAX_CONCURRENCY's default: the service never has to shed load


def batch(n: int, k: int, seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    p = rng.random((n, k)) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    return p, rng.integers(0, k, n)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# --- 1. one large batch ----------------------------------------------------------------------


def floor_work(body: bytes) -> bytes:
    """The least any JSON service must do: parse, convert, score, serialize the answer."""
    raw = orjson.loads(body)
    p, y = np.asarray(raw["predictions"]), np.asarray(raw["labels"])
    r = xc.score(p, y)
    answer = {
        "loss": {"mean": r.loss_mean, "sum": r.loss_sum, "n_scored": r.n_scored},
        "accuracy": r.accuracy,
        "confidence": {"method": "max_probability", "mean": r.confidence_mean},
        "flagged": {"count": int(r.flagged.sum()), "indices": r.flagged_indices},
        "items": {
            "loss": r.item_loss,
            "confidence": r.confidence,
            "predicted": r.predicted,
            "flagged": r.flagged,
            "reasons": r.reasons,
        },
    }
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def asgi_ms(app: Any, body: bytes, headers: list[tuple[bytes, bytes]], repeat: int) -> float:
    """Median time of ``POST /v1/score`` through the app's ASGI interface, in one event loop
    (as under uvicorn: the worker threads and the loop are warm), body already in memory."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
    }
    statuses: list[int] = []

    def receiver() -> Any:
        """A server's receive: the body once, then waiting (the client stays connected)."""
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        return receive

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def main() -> list[float]:
        await app(dict(scope), receiver(), send)  # warm up
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            await app(dict(scope), receiver(), send)
            times.append(time.perf_counter() - start)
        return times

    times = anyio.run(main)
    assert set(statuses) == {200}, statuses
    return statistics.median(times) * 1e3


def binary_body(p: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[bytes, bytes]:
    x, labels = p.astype(np.float32).tobytes(), y.astype(np.int64).tobytes()
    header = orjson.dumps(
        {
            "predictions": {"datatype": "FP32", "shape": list(p.shape), "binary_data_size": len(x)},
            "labels": {"datatype": "INT64", "shape": [len(y)], "binary_data_size": len(labels)},
        }
    )
    return header + x + labels, str(len(header)).encode()


def large_batch(repeat: int, url: str | None) -> list[tuple[str, str]]:
    from service.app import create_app
    from service.settings import Settings

    p, y = batch(N, K)
    body = orjson.dumps({"predictions": p, "labels": y}, option=orjson.OPT_SERIALIZE_NUMPY)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)))
        json_type = [(b"content-type", b"application/json")]
        floor = median_ms(lambda: floor_work(body), repeat)
        server = asgi_ms(app, body, json_type, repeat)
        tensors, length = binary_body(p, y)
        octet = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", length),
        ]
        binary = asgi_ms(app, tensors, octet, repeat)
    mb = len(body) / 1e6
    rows = [
        (
            f"{N:,} x {K} JSON ({mb:.0f} MB): floor, orjson.loads + np.asarray + score + "
            "orjson.dumps",
            f"{floor:.0f} ms",
        ),
        (
            f"{N:,} x {K} JSON: service, server-side (in-process ASGI)",
            f"{server:.0f} ms ({server / floor:.2f}x the floor)",
        ),
        (
            f"{N:,} x {K} FP32 binary tensors ({len(tensors) / 1e6:.0f} MB): service, server-side",
            f"{binary:.0f} ms",
        ),
    ]
    if url is not None:
        with httpx.Client(base_url=url, timeout=120) as http:

            def over_loopback() -> None:
                response = http.post(
                    "/v1/score", content=body, headers={"Content-Type": "application/json"}
                )
                assert response.status_code == 200, response.text[:200]

            e2e = median_ms(over_loopback, repeat)
        rows.append(
            (f"{N:,} x {K} JSON: end to end over loopback (httpx client, uvicorn)", f"{e2e:.0f} ms")
        )
    return rows


# --- 2. small-batch throughput ---------------------------------------------------------------


class NaiveRequest(BaseModel):
    """The naive endpoint's body: FastAPI parses and validates it element by element."""

    predictions: list[list[float]]
    labels: list[int] | None = None


def naive_app() -> Any:
    """A minimal, naive FastAPI scoring endpoint: pydantic model body, default JSON response."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/score")
    def score(req: NaiveRequest) -> dict[str, Any]:
        r = xc.score(req.predictions, req.labels)
        return {
            "loss": {"mean": r.loss_mean, "sum": r.loss_sum, "n_scored": r.n_scored},
            "accuracy": r.accuracy,
            "confidence": {"method": "max_probability", "mean": r.confidence_mean},
            "items": {
                "loss": r.item_loss.tolist() if r.item_loss is not None else None,
                "confidence": r.confidence.tolist(),
                "predicted": np.asarray(r.predicted).tolist(),
                "flagged": r.flagged.tolist(),
                "reasons": r.reasons,
            },
        }

    return app


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        command, env=env, cwd=_HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


async def _connection(port: int, request: bytes, stop: float, counts: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


def throughput(port: int, body: bytes, seconds: float) -> tuple[float, dict[int, int]]:
    """Requests/s of ``POST /v1/score`` with ``CONNECTIONS`` keep-alive connections."""
    request = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
        b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    counts: dict[int, int] = {}

    async def run(duration: float) -> None:
        stop = time.perf_counter() + duration
        await asyncio.gather(
            *(_connection(port, request, stop, counts) for _ in range(CONNECTIONS))
        )

    asyncio.run(run(min(1.0, seconds / 3)))  # warm up
    counts.clear()
    start_time = time.perf_counter()
    asyncio.run(run(seconds))
    return sum(counts.values()) / (time.perf_counter() - start_time), counts


def small_batches(seconds: float, service_port: int) -> list[tuple[str, str]]:
    p, y = batch(SMALL_N, SMALL_K, seed=1)
    body = orjson.dumps({"predictions": p, "labels": y}, option=orjson.OPT_SERIALIZE_NUMPY)
    service_rps, service_counts = throughput(service_port, body, seconds)
    port = free_port()
    naive = start(
        [sys.executable, str(Path(__file__).resolve()), "--serve-naive", str(port)],
        port,
        dict(os.environ),
    )
    try:
        naive_rps, naive_counts = throughput(port, body, seconds)
    finally:
        naive.terminate()
        naive.wait(timeout=20)
    assert set(service_counts) == {200} and set(naive_counts) == {200}, (
        service_counts,
        naive_counts,
    )
    return [
        (
            f"{SMALL_N} x {SMALL_K} batches, naive FastAPI endpoint (pydantic model body), "
            "1 uvicorn worker",
            f"{naive_rps:,.0f} req/s",
        ),
        (
            f"{SMALL_N} x {SMALL_K} batches, service /v1/score, 1 uvicorn worker",
            f"{service_rps:,.0f} req/s ({service_rps / naive_rps:.2f}x the naive endpoint)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter load phases")
    parser.add_argument("--serve-naive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive is not None:
        import uvicorn

        uvicorn.run(naive_app(), host="127.0.0.1", port=args.serve_naive, log_level="warning")
        return
    seconds = 3.0 if args.quick else 8.0
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XENT_DATA_DIR": tmp, "XENT_LOG_LEVEL": "warning"}
        server = start(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"],
            port,
            env,
        )
        try:
            rows = large_batch(5 if args.quick else 9, f"http://127.0.0.1:{port}")
            rows += small_batches(seconds, port)
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(f"| work ({os.cpu_count()} CPUs, numpy {np.__version__}) | figure |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
