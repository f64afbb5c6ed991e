"""The monitoring store (README, "Monitoring"): SQLite by default, PostgreSQL by URL.

``XENT_DATABASE_URL`` picks the database by its scheme (``sqlite:///path`` or
``postgresql://user@host/db``); without it the store is the SQLite file ``xent.db`` under
``XENT_DATA_DIR``. The service talks to the store only through :class:`Store`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from service.store.sql import FlaggedRow, SqlStore, StoredBatch, StreamInfo
from xentcore.summary import BatchSummary

__all__ = [
    "FlaggedRow",
    "ReconnectingStore",
    "Store",
    "StoreUnavailable",
    "StoredBatch",
    "StreamInfo",
    "open_store",
    "store_url",
]

log = logging.getLogger("xent.store")


class Store(Protocol):
    """What the service needs of a monitoring store."""

    def ping(self) -> bool:
        """True when the store answers (used by /readyz)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def record(
        self,
        *,
        stream: str,
        task: str,
        summary: BatchSummary,
        flagged: Sequence[FlaggedRow],
        idempotency_key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Write a batch and its flagged items atomically.

        True when written, False when the idempotency key was already recorded; raises on
        store errors.
        """
        ...

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        """The batches of a stream in [since, until), oldest first."""
        ...

    def stream_names(self) -> list[StreamInfo]:
        """Every stream, by name: last-seen epoch seconds, batch count and sorted tasks."""
        ...

    def flagged(
        self,
        stream: str,
        *,
        since: float | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Flagged items, newest first, and the next page's cursor."""
        ...


def store_url(database_url: str | None, data_dir: Any) -> str:
    """The store's SQLAlchemy URL: the setting, or the SQLite file under the data directory."""
    if database_url:
        return database_url
    return f"sqlite:///{data_dir}/xent.db"


def open_store(settings: Any) -> Store:
    """Open (and migrate) the store the settings name."""
    return SqlStore.from_url(store_url(settings.database_url, settings.data_dir))


class StoreUnavailable(RuntimeError):
    """The store could not be opened (yet)."""


class ReconnectingStore:
    """A :class:`Store` that opens lazily and keeps trying after a failed open.

    The service starts and scores even when the database is down at start-up; every use of the
    store then retries the open, at most once every ``retry_seconds``, so ``/readyz`` turns 200
    and batches are recorded again as soon as the database answers, without a restart. A use
    while it is closed raises :class:`StoreUnavailable` (callers treat it like any store error).
    """

    def __init__(self, opener: Callable[[], Store], *, retry_seconds: float = 5.0) -> None:
        self._opener = opener
        self._retry = retry_seconds
        self._store: Store | None = None
        self._last_try = -float("inf")
        self._lock = threading.Lock()

    def current(self) -> Store:
        """The open store, opening it if it is time to try again; raises StoreUnavailable."""
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None and time.monotonic() - self._last_try >= self._retry:
                self._last_try = time.monotonic()
                try:
                    self._store = self._opener()
                    log.info("monitoring store opened")
                except Exception:
                    log.exception(
                        "monitoring store failed to open; retrying in %.0f s", self._retry
                    )
            if self._store is None:
                raise StoreUnavailable("monitoring store unavailable")
            return self._store

    def ping(self) -> bool:
        try:
            return self.current().ping()
        except StoreUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def record(self, **kwargs: Any) -> bool:
        return self.current().record(**kwargs)

    def batches_in(
        self, stream: str, since: float | None = None, until: float | None = None
    ) -> list[StoredBatch]:
        return self.current().batches_in(stream, since, until)

    def stream_names(self) -> list[StreamInfo]:
        return self.current().stream_names()

    def flagged(self, stream: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str | None]:
        return self.current().flagged(stream, **kwargs)
