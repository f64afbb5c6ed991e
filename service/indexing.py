"""The background task that writes the lookup keys of kept items (API.md section 9).

Recording a batch with ids stores its kept items as one value and queues it
(``xent_kept_pending``); writing one lookup key per item in the request's transaction would cost
more than the rest of the write (on PostgreSQL about 5 us per key: 50 ms for 10,000 items).
Each service process runs this loop instead: it asks the store to index the queued batches
(:meth:`service.store.base.Store.index_items`, one batch per transaction), goes on at once
while there is work, and looks again every ``IDLE_SECONDS`` when the queue is empty. Processes
share the queue (PostgreSQL ``SKIP LOCKED``; SQLite's one writer at a time), so keys are
written once.

Nothing waits for it: a late label finds an item of a queued batch by reading the batch's ids,
so the loop only keeps lookups fast. Failures are logged and counted in
``xent_store_index_errors_total``, never raised; the loop then waits ``BACKOFF_SECONDS`` (the
store is likely down) and tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from service.http import in_thread
from service.metrics import StreamMetrics
from service.store import Store

__all__ = ["BACKOFF_SECONDS", "IDLE_SECONDS", "index_loop", "index_once"]

log = logging.getLogger("xent.store")

#: How often an idle indexer looks at the queue.
IDLE_SECONDS = 1.0
#: The wait after a failed pass.
BACKOFF_SECONDS = 30.0


def index_once(store: Store, metrics: StreamMetrics | None = None) -> int | None:
    """One pass (at most about 50,000 keys); the keys written, None when it failed."""
    try:
        n = store.index_items()
    except Exception:
        log.warning("indexing kept items failed; retrying in %d s", BACKOFF_SECONDS, exc_info=True)
        if metrics is not None:
            metrics.index_errors.inc()
        return None
    if metrics is not None and n:
        metrics.indexed.inc(n)
    return n


async def index_loop(
    current_store: Callable[[], Store | None],
    metrics: StreamMetrics | None = None,
    *,
    idle: float = IDLE_SECONDS,
    backoff: float = BACKOFF_SECONDS,
) -> None:
    """Run :func:`index_once` until cancelled (the app's lifespan owns it)."""
    while True:
        store = current_store()
        done: int | None = 0
        if store is not None:
            done = await in_thread(lambda s=store: index_once(s, metrics))  # type: ignore[misc]
        if done is None:
            await asyncio.sleep(backoff)
        elif done == 0:
            await asyncio.sleep(idle)
        else:
            await asyncio.sleep(0)  # more may be queued: go on, letting requests in first
