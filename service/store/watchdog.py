"""One thread that ends store calls past their deadline (cheaper than a timer thread per call).

:meth:`Watchdog.arm` registers a callback for a deadline and returns a token;
:meth:`Watchdog.disarm` cancels it. The thread sleeps until the earliest armed deadline and runs
the callbacks of those that were not disarmed in time. Arming and disarming cost a lock and a
heap operation, so the small-batch path pays microseconds, not a thread start.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog"]

log = logging.getLogger("xent.store")


class Watchdog:
    """Deadlines and their callbacks, served by one daemon thread started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` in ``seconds`` unless disarmed first; returns the token."""
        token = next(self._ids)
        with self._cond:
            self._armed[token] = callback
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="xent-store-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        """Cancel a callback that has not run yet (a no-op when it has)."""
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                due, token = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                callback = self._armed.pop(token, None)
            if callback is not None:
                try:
                    callback()
                except Exception:  # a callback must never end the watchdog
                    log.exception("store watchdog callback failed")
