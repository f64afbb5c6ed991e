"""Work for a client that has gone stops at the next stage instead of running on.

A large request is parsed, scored, recorded and serialized in stages that each take up to
seconds. While it is worked on, a task waits for the server's ``http.disconnect`` (the client
closed its connection); the work checks between stages and stops with :class:`ClientGone`: the
rest is not computed, the batch is not recorded (no one will learn that it was: a client that
retries with its ``Idempotency-Key`` records it once either way), and the request is counted
with status 499 (nginx's "client closed request"). A stage already running finishes: numpy
calls cannot be interrupted, and each stage is bounded by the request limits.

Small bodies (up to ``XENT_INLINE_BODY_BYTES``) are scored in well under a millisecond, less
than watching would cost, and are not watched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from starlette.requests import Request

__all__ = ["CLIENT_CLOSED", "ClientGone", "Departure", "watch_departure"]

#: The status a request is counted with when its client left before the answer (nginx's 499).
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client closed its connection before ``stage``; the work for it stopped there."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"client disconnected before {stage}")
        self.stage = stage


class Departure:
    """Whether the client of one request has gone; checked from any thread."""

    def __init__(self) -> None:
        self._gone = threading.Event()

    def leave(self) -> None:
        self._gone.set()

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    def check(self, stage: str) -> None:
        """Raise :class:`ClientGone` when the client has gone before ``stage``."""
        if self._gone.is_set():
            raise ClientGone(stage)


async def _wait_for_disconnect(request: Request, departure: Departure) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            departure.leave()
            return


@asynccontextmanager
async def watch_departure(request: Request, *, enabled: bool) -> AsyncIterator[Departure]:
    """A :class:`Departure` that turns ``gone`` when the client disconnects while the body of
    the ``async with`` runs (after the request body was read). Disabled: never gone."""
    departure = Departure()
    if not enabled:
        yield departure
        return
    watcher = asyncio.ensure_future(_wait_for_disconnect(request, departure))
    try:
        yield departure
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await watcher
