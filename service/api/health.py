"""``GET /healthz`` (alive), ``/readyz`` (store reachable) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service import deps
from service.http import in_thread
from service.metrics import Metrics
from service.schemas import HealthResponse, HTTPError

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process serves requests; checks no dependency."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Store unreachable."}},
    summary="Readiness",
)
async def readyz(request: Request) -> JSONResponse:
    """200 `{"status": "ready"}` when the monitoring store can write (one small write), else
    503, within a second even when the database hangs. Scoring works either way; take the
    instance out of rotation only if recording matters."""
    ready = await _store_ready(request.app.state)
    return JSONResponse({"status": "ready" if ready else "unavailable"}, 200 if ready else 503)


#: Seconds /readyz waits for the store's answer before it answers 503 itself.
READY_DEADLINE = 0.9


async def _store_ready(state: Any) -> bool:
    """The store's write probe, given at most :data:`READY_DEADLINE` seconds. One probe at a
    time per process: while a probe is still out (a hung database), /readyz answers 503 at
    once instead of starting another; the probe ends at the store's own deadline."""
    if getattr(state, "ready_probe_running", False):
        return False
    state.ready_probe_running = True
    answer = {"ready": False}
    store = state.store

    def probe() -> None:
        try:
            answer["ready"] = deps.store_ready(store)
        finally:
            state.ready_probe_running = False

    with anyio.move_on_after(READY_DEADLINE):
        await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
    return answer["ready"]


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        401: {"model": HTTPError},
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """Request counts by route template and status, latency histogram, in-flight scoring
    requests, items scored, per-stream series. With several workers, the sum over all of them
    (whichever worker answers). Needs an API key like /v1 when `XENT_API_KEYS` is set, unless
    `XENT_METRICS_PUBLIC` is true."""
    app_metrics: Metrics = request.app.state.metrics
    # Rendering (and, with several workers, reading every worker's files) is work off the loop.
    return Response(await in_thread(app_metrics.render), media_type=CONTENT_TYPE_LATEST)
