"""Request dependencies, and the one place the monitoring store is reached.

The store (``service.store.open_store``) and the recorder (``service.monitoring.record_batch``)
are built separately from the scoring routes. They are looked up by name at call time, so the
service scores (with ``recorded: false``) whether or not they exist, and scoring never fails
because of them: every call into them is guarded and logged.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol, cast

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from service.settings import Settings
from xentcore import ScoreResult

__all__ = [
    "SettingsDep",
    "StoreLike",
    "app_settings",
    "close_store",
    "open_store",
    "record_batch",
    "store_ready",
    "stream_metrics",
]

log = logging.getLogger("service.store")


class StoreLike(Protocol):
    """What the service itself calls on a store."""

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    return cast(Settings, request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(app_settings)]


def _lookup(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` if both exist, else None (the monitoring work may not have landed)."""
    try:
        return cast(Callable[..., Any], getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError):
        return None


def open_store(settings: Settings) -> StoreLike:
    """The monitoring store, reopened on use after a failed open (never None, never raises).

    A store that fails to open at start-up is retried every few seconds by the store itself
    (``ReconnectingStore``): scoring goes on with ``recorded: false`` and ``/readyz`` 503 until
    the database answers.
    """
    from service.store import ReconnectingStore
    from service.store import open_store as opener

    store = ReconnectingStore(lambda: opener(settings), retry_seconds=settings.store_retry_seconds)
    store.ping()  # the first open now, so a healthy store is ready before the first request
    return store


def close_store(store: StoreLike | None) -> None:
    """Close the store, logging (never raising) a failure."""
    if store is None:
        return
    try:
        store.close()
    except Exception:
        log.exception("monitoring store failed to close")


def store_ready(store: StoreLike | None) -> bool:
    """``store.ping()``, False on any failure."""
    if store is None:
        return False
    try:
        return bool(store.ping())
    except Exception:
        log.exception("monitoring store ping failed")
        return False


def stream_metrics(registry: CollectorRegistry, max_streams: int) -> object | None:
    """The monitoring's per-stream Prometheus series in ``registry`` (None if not available)."""
    factory = _lookup("service.monitoring", "StreamMetrics")
    if factory is None:
        return None
    try:
        return cast(object, factory(registry=registry, max_streams=max_streams))
    except Exception:
        log.exception("per-stream metrics unavailable")
        return None


def record_batch(
    store: StoreLike | None,
    *,
    stream: str,
    task: str,
    result: ScoreResult,
    ids: list[Any] | None,
    labels_given: bool,
    idempotency_key: str | None,
    metrics: object | None = None,
) -> bool:
    """Record a scored batch; False when it was not recorded (no recorder, or it failed).

    A missing store (None) is passed on: the recorder logs and counts that failure itself.
    ``metrics`` (from :func:`stream_metrics`) is passed only when there is one.
    """
    recorder = _lookup("service.monitoring", "record_batch")
    if recorder is None:
        log.error("batch of stream %r not recorded: service.monitoring is missing", stream)
        return False
    extra = {} if metrics is None else {"metrics": metrics}
    try:
        return bool(
            recorder(
                store,
                stream=stream,
                task=task,
                result=result,
                ids=ids,
                labels_given=labels_given,
                idempotency_key=idempotency_key,
                **extra,
            )
        )
    except Exception:  # record_batch promises not to raise; scoring must survive if it does
        log.exception("recording batch of stream %r failed", stream)
        return False
