"""``create_app(settings)`` builds the service; ``app`` is the one ``xent serve`` runs.

In front of everything, the fast lane (``service.fastlane``) answers small plain JSON batches
itself or hands them on untouched. Then the middleware, outermost first: CORS (when
``XENT_CORS_ORIGINS`` is set), request context (request id, metrics, the 500 answer), API keys
(401 on /v1/...), limits (415, 413, 408, 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

import xentcore
from service import deps
from service.api import (
    calibration,
    calibrators,
    dashboard,
    docs,
    feedback,
    health,
    policies,
    scoring,
    sequences,
    streams,
    summaries,
)
from service.errors import install_error_handlers
from service.fastlane import FastLane
from service.http import in_thread
from service.indexing import index_loop
from service.metrics import Metrics
from service.middleware.auth import ApiKeyMiddleware
from service.middleware.context import RequestContextMiddleware
from service.middleware.limits import LimitsMiddleware
from service.openapi import install_openapi
from service.retention import retention_loop
from service.routing import plain_routes
from service.schemas import (
    BatchRequest,
    CalibrationRequest,
    LabelledBatchRequest,
    SequencesRequest,
)
from service.settings import Settings, get_settings, unknown_variables
from service.slots import ScoringSlots

__all__ = ["XentApp", "app", "create_app"]

log = logging.getLogger("service")

DESCRIPTION = """Cross-entropy loss, confidence, predictions, flags and calibration of model
outputs, and perplexity of generated sequences. Every number is computed by `xentcore`.

Errors: 422 names the field and index of invalid input (`loc`), 413 a body or batch over the
limits, 415 a non-JSON body, 401 a missing or wrong API key, 503 an overloaded instance (retry
after `Retry-After`). Error bodies never contain the submitted input."""


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _warn_about_settings(settings: Settings) -> None:
    """Log the ``XENT_*`` variables that are no setting, and an open service on a network."""
    for message in unknown_variables(os.environ):
        log.warning(message)
    if not settings.api_keys:
        open_to = "anyone who can reach it" if settings.host not in _LOOPBACK else "this host"
        level = logging.INFO if settings.host in _LOOPBACK else logging.WARNING
        log.log(level, "no XENT_API_KEYS: every route is open to %s", open_to)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    _warn_about_settings(settings)
    if not xentcore.NATIVE_KERNELS:
        log.warning(
            "xentcore's compiled row kernels are not installed (no C compiler when it was "
            "installed): scoring uses the slower numpy fallback, with the same results"
        )
    app.state.store = await in_thread(lambda: deps.open_store(settings))
    retention = asyncio.create_task(
        retention_loop(lambda: app.state.store, settings, app.state.metrics.streams)
    )
    indexer = asyncio.create_task(index_loop(lambda: app.state.store, app.state.metrics.streams))
    try:
        yield
    finally:
        for task in (retention, indexer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # their passes never raise: only the cancellation comes back
        store, app.state.store = app.state.store, None
        await in_thread(lambda: deps.close_store(store))


class XentApp(FastAPI):
    """The FastAPI app with the fast lane in front: an HTTP request goes to ``lane`` (which
    answers it or hands it to :meth:`stack`), everything else straight to the stack."""

    lane: FastLane | None = None
    #: when FastAPI's telemetry was last asked, and its answer (names of our own: FastAPI's
    #: instances hold their telemetry config in ``_telemetry``)
    _lane_telemetry_at = -math.inf
    _lane_telemetry = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane is not None and scope["type"] == "http":
            await self.lane(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The full stack: FastAPI's own entry point, middleware and routes."""
        await super().__call__(scope, receive, send)

    def telemetry_on(self) -> bool:
        """Whether FastAPI's native OpenTelemetry would record requests (a provider is
        configured); asked of FastAPI at most once a second, as it costs microseconds."""
        now = time.monotonic()
        if now - self._lane_telemetry_at >= 1.0:
            native = getattr(self, "_native_telemetry", None)
            self._lane_telemetry = bool(native is not None and native.enabled())
            self._lane_telemetry_at = now
        return self._lane_telemetry


def create_app(settings: Settings | None = None) -> XentApp:
    """A new app with its own settings, metrics registry and (from its lifespan) store."""
    settings = settings or get_settings()
    app = XentApp(
        title="xentcore",
        version=xentcore.__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served by service.api.docs, with local assets
        redoc_url=None,
        # Starlette would redirect /v1/score/ to an absolute URL built from the Host header
        # (a forged Host lands in Location): a path with a stray slash is a 404 instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics(max_streams=settings.max_streams)
    app.state.store = None
    app.state.slots = ScoringSlots(
        settings.max_concurrency, retry_after=settings.retry_after_seconds, metrics=metrics
    )
    modules = (
        scoring,
        calibration,
        sequences,
        streams,
        summaries,
        feedback,
        policies,
        calibrators,
        health,
        dashboard,
        docs,
    )
    routers = [m.router for m in modules]
    for router in routers:
        # The routes themselves, not the routers: FastAPI keeps an included router as a
        # nested matcher that re-derives its routes' context on every request (about 100 us a
        # request here, a fifth of a small batch's time). The routes already carry their full
        # paths and settings, and the OpenAPI document is the same (tests/service/test_docs.py).
        app.router.routes.extend(router.routes)
    # the scoring endpoints first, as plain routes (service.routing): matched before the rest
    hot = [*scoring.router.routes, *sequences.router.routes, *calibration.router.routes]
    app.router.routes[:0] = plain_routes(hot)
    install_error_handlers(app)
    install_openapi(
        app,
        [BatchRequest, LabelledBatchRequest, CalibrationRequest, SequencesRequest],
        metrics_key=not settings.metrics_public,
    )
    # add_middleware puts each one outside the ones added before it.
    app.add_middleware(LimitsMiddleware, settings=settings)
    app.add_middleware(ApiKeyMiddleware, settings=settings)
    endpoints = [route for router in routers for route in router.routes]
    app.add_middleware(RequestContextMiddleware, metrics=metrics, routes=endpoints)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    if settings.fast_lane and not app.root_path and not settings.cors_origins:
        # (CORSMiddleware adds a Vary header to every answer: with CORS the stack answers all)
        app.lane = FastLane(
            app.stack,
            settings=settings,
            metrics=metrics,
            slots=app.state.slots,
            telemetry_on=app.telemetry_on,
        )
    return app


app = create_app()
