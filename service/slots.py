"""Scoring capacity: at most ``XENT_MAX_CONCURRENCY`` scoring computations at once per process.

A slot is taken once a request's body has fully arrived and released as soon as it is scored,
before the store is written: a client that sends its body slowly costs a connection, never a
slot, and a store that hangs never holds one either. A request that finds every slot taken is
answered 503 with ``Retry-After`` at once (the service sheds load instead of queueing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.exceptions import HTTPException

from service.metrics import Metrics

__all__ = ["BUSY", "ScoringSlots"]

BUSY = "server busy: too many requests in flight, retry"


class ScoringSlots:
    """The process's scoring slots (one event loop per app: no lock needed)."""

    def __init__(self, limit: int, *, retry_after: int, metrics: Metrics) -> None:
        self.limit = limit
        self.in_use = 0
        self._retry_after = str(retry_after)
        self._metrics = metrics

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold a slot for the body of the ``async with``; 503 + Retry-After when none is free."""
        if self.in_use >= self.limit:
            raise HTTPException(503, detail=BUSY, headers={"Retry-After": self._retry_after})
        self.in_use += 1
        self._metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_use -= 1
            self._metrics.in_flight.dec()
