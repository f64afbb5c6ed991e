"""The background task that deletes what is past retention (README, "Retention").

Every ``XENT_RETENTION_INTERVAL`` each service process asks the store to delete raw batch rows
and flagged items older than ``XENT_RETENTION`` and rollups older than
``XENT_ROLLUP_RETENTION`` (:meth:`service.store.base.Store.expire`). The store deletes in
bounded chunks, so writers wait at most one chunk; on PostgreSQL one process at a time does the
work (the others skip their turn). The first pass runs shortly after start. Failures are
logged and counted in ``xent_store_retention_errors_total``, never raised: the next pass tries
again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.http import in_thread
from service.metrics import StreamMetrics
from service.settings import Settings
from service.store import Store

__all__ = ["FIRST_PASS_SECONDS", "expire_once", "retention_loop"]

log = logging.getLogger("xent.store")

#: Delay of the first pass after start (lets the workers open the store first).
FIRST_PASS_SECONDS = 10.0


def expire_once(store: Store, settings: Settings, metrics: StreamMetrics | None = None) -> None:
    """One retention pass; logs what it deleted, never raises."""
    try:
        done = store.expire(
            now=time.time(),
            retention=settings.retention,
            rollup_retention=settings.rollup_retention,
            item_retention=settings.item_retention,
        )
        if metrics is not None:
            metrics.expired.labels("batches").inc(done.batches)
            metrics.expired.labels("rollups").inc(done.rollups)
            metrics.expired.labels("items").inc(done.items)
    except Exception:
        log.exception("retention pass failed; retrying in %d s", settings.retention_interval)
        if metrics is not None:
            metrics.retention_errors.inc()
        return
    if done.batches or done.rollups or done.items:
        log.info(
            "retention: deleted %d batches, %d rollups and %d kept items",
            done.batches,
            done.rollups,
            done.items,
        )


async def retention_loop(
    current_store: Callable[[], Store | None],
    settings: Settings,
    metrics: StreamMetrics | None = None,
    *,
    first: float = FIRST_PASS_SECONDS,
) -> None:
    """Run :func:`expire_once` now and then until cancelled (the app's lifespan owns it)."""
    delay = first
    while True:
        await asyncio.sleep(delay)
        delay = settings.retention_interval
        store = current_store()
        if store is not None:
            await in_thread(lambda s=store: expire_once(s, settings, metrics))  # type: ignore[misc]
