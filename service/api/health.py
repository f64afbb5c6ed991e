"""``GET /healthz`` (alive), ``/readyz`` (store reachable) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

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
    """200 `{"status": "ready"}` when the monitoring store answers, else 503. Scoring works
    either way; take the instance out of rotation only if recording matters."""
    store = request.app.state.store
    ready = await in_thread(lambda: deps.store_ready(store))
    return JSONResponse({"status": "ready" if ready else "unavailable"}, 200 if ready else 503)


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
    (whichever worker answers). Open unless `XENT_METRICS_REQUIRE_KEY` is true."""
    app_metrics: Metrics = request.app.state.metrics
    # Rendering (and, with several workers, reading every worker's files) is work off the loop.
    return Response(await in_thread(app_metrics.render), media_type=CONTENT_TYPE_LATEST)
